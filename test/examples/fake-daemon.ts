// A stand-in for postcopy-daemon that needs no source and no fault loop: it accepts the destination process
// on the real control-socket code (src/daemon/control.ts), places EVERY page before the process runs
// (UFFDIO_COPY/ZEROPAGE in missing mode; memfd write + UFFDIO_CONTINUE in minor mode), unregisters, then
// sends the state blob and `complete`. It tests the process side of the handshake end to end; the real
// daemon's fault path is tested with the daemon.
import { ControlServer, type ControlClient } from '../../src/daemon/control.js';
import { Userfaultfd } from '../../src/uffd/userfaultfd.js';
import { mapFd } from '../../src/uffd/memory.js';

const CHUNK = 1 << 20;

/** copied / zero are page counts. */
export interface PlaceResult { copied: number; zero: number; mode: string; regionSize: number; regionName: string }

/** Place all of `memory` (the source's pages) into the client's single region. */
export function placeAll(client: ControlClient, memory: Uint8Array, srcAddr: number): PlaceResult {
  const r = client.hello.regions[0];
  if (client.hello.regions.length !== 1 || r.size !== memory.length) {
    throw new Error(`expected one region of ${memory.length} bytes, got ${JSON.stringify(client.hello.regions)}`);
  }
  const uffd = Userfaultfd.fromFd(client.uffdFd);
  let copied = 0, zero = 0;
  if (client.hello.mode === 'missing') {
    // Page by page: all-zero pages with UFFDIO_ZEROPAGE (what a ZERO record becomes), the rest copied.
    const PAGE = 4096;
    for (let off = 0; off < r.size; off += PAGE) {
      if (memory.subarray(off, off + PAGE).every((b) => b === 0)) {
        uffd.zeropage(r.base + off, PAGE);
        zero++;
      } else {
        uffd.copy(r.base + off, srcAddr + off, PAGE);
        copied++;
      }
    }
  } else {
    const map = mapFd(client.memfdFd, r.size, { offset: r.offset ?? 0, shared: true });
    try {
      map.view(0, r.size).set(memory);
      for (let off = 0; off < r.size; off += CHUNK) uffd.continue(r.base + off, Math.min(CHUNK, r.size - off));
      copied = r.size / 4096;
    } finally {
      map.unmap();
    }
  }
  uffd.unregister(r.base, r.size);
  return { copied, zero, mode: client.hello.mode, regionSize: r.size, regionName: r.name ?? '' };
}

export { ControlServer };
