// TypeScript side of `npm run bench:fault` (spawned by run.ts, one process per measurement):
//   node dist/bench/fault/ts_fault.js fault -n PAGES   main thread touches, a worker serves (src/uffd/fault-server.ts)
//   node dist/bench/fault/ts_fault.js bulk -s MIB      UFFDIO_COPY 4K/64K/2M chunks + memcpy bandwidth
// Prints one JSON object, same fields as fault_ref.c.
import { performance } from 'node:perf_hooks';
import {
  Userfaultfd, mapAnonymous, addressOf, pageSize, FaultServer,
} from '../../src/uffd/index.js';
import { memcpyAt } from '../../src/uffd/libc.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

async function runFault(pages: number): Promise<void> {
  const region = mapAnonymous(pages * pageSize, { noReserve: true });
  const uffd = Userfaultfd.open({ nonBlocking: true, features: [] });
  uffd.register(region.addr, region.length, { missing: true });
  const server = await FaultServer.start({ uffdFd: uffd.fd, base: region.addr, pageSize, source: { kind: 'constant', byte: 0xab } });

  const view = region.view();
  const lat = new Float64Array(pages);
  const t0 = performance.now();
  for (let p = 0; p < pages; p++) {
    const a = performance.now();
    view[p * pageSize] = 1; // blocks in the kernel until the worker has copied the page
    lat[p] = performance.now() - a;
  }
  const totalMs = performance.now() - t0;
  const s = await server.stop();
  lat.sort();
  console.log(JSON.stringify({
    impl: 'ts', mode: 'fault', faults: pages, served: s.served, reads: s.reads, totalMs,
    meanUs: (totalMs * 1000) / pages, p50Us: lat[pages >> 1] * 1000, p99Us: lat[Math.floor(pages * 0.99)] * 1000,
    faultsPerSec: pages / (totalMs / 1000),
  }));
  uffd.close(); region.unmap();
  if (s.served !== pages) process.exitCode = 1;
}

function runBulk(mib: number): void {
  const len = mib * 1024 * 1024;
  const src = Buffer.alloc(2 * 1024 * 1024, 0x5a);
  const srcAddr = addressOf(src);
  const copy: Record<string, { gbPerSec: number; usPerIoctl: number }> = {};
  for (const chunk of [4096, 65536, 2 * 1024 * 1024]) {
    const dst = mapAnonymous(len, { noReserve: true });
    const uffd = Userfaultfd.open({ features: [] });
    uffd.register(dst.addr, len, { missing: true });
    const t0 = performance.now();
    for (let off = 0; off < len; off += chunk) {
      if (uffd.copyRaw(dst.addr + off, srcAddr, chunk, 0) !== chunk) throw new Error(`UFFDIO_COPY failed at ${off}`);
    }
    const s = (performance.now() - t0) / 1000;
    copy[chunk] = { gbPerSec: len / s / 1e9, usPerIoctl: (s * 1e6) / (len / chunk) };
    uffd.close(); dst.unmap();
  }
  const dst = mapAnonymous(len, { noReserve: true });
  const pass = (): number => {
    const t0 = performance.now();
    for (let off = 0; off < len; off += src.length) memcpyAt(dst.addr + off, srcAddr, src.length);
    return (performance.now() - t0) / 1000;
  };
  const fresh = pass();
  const warm = pass();
  dst.unmap();
  console.log(JSON.stringify({ impl: 'ts', mode: 'bulk', bytes: len, copy, memcpyFreshGbPerSec: len / fresh / 1e9, memcpyPrefaultedGbPerSec: len / warm / 1e9 }));
}

const mode = process.argv[2];
if (mode === 'fault') await runFault(arg('-n', 65536));
else if (mode === 'bulk') runBulk(arg('-s', 1024));
else { console.error('usage: ts_fault.js fault -n PAGES | bulk -s MIB'); process.exit(2); }
