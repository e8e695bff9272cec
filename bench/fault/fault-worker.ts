// The fault-serving loop of the bench (and the demo): a worker thread running a synchronous koffi loop
// poll([uffd, stop eventfd]) -> read up to 64 messages -> UFFDIO_COPY each page, allocation-free.
// workerData: { uffdFd, stopFd, pageSize, fill: 'constant' | 'generator', seed }. Posts { served, reads, eexist } when stopped.
import { parentPort, workerData } from 'node:worker_threads';
import { Userfaultfd, UffdEventReader, Poller, UFFD_EVENT_PAGEFAULT, addressOf, setNonBlocking } from '../../src/uffd/index.js';

export interface FaultWorkerData {
  uffdFd: number;
  stopFd: number;
  pageSize: number;
  /** Base address of the region: with a generator, page content depends on the page index. */
  base: number;
  /** 'constant': every page is 0xab (bench). 'generator': deterministic bytes per page index (demo). */
  fill: 'constant' | 'generator';
}
export interface FaultWorkerStats { served: number; reads: number; eexist: number; errors: number }

/** Deterministic content of page `index` (the demo's source of truth; cheap, no allocation). */
export function fillPage(page: Uint8Array, index: number): void {
  let x = (index * 2654435761 + 1) >>> 0;
  const words = new Uint32Array(page.buffer, page.byteOffset, page.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
}

const EEXIST = 17;

function serve(d: FaultWorkerData): FaultWorkerStats {
  setNonBlocking(d.uffdFd); // poll() on a blocking uffd always says POLLERR, and read() would block the stop
  const uffd = Userfaultfd.fromFd(d.uffdFd, 0n);
  const reader = new UffdEventReader(d.uffdFd, 64);
  const poller = new Poller([d.uffdFd, d.stopFd]);
  const page = Buffer.alloc(d.pageSize, 0xab);
  const src = addressOf(page);
  const stats: FaultWorkerStats = { served: 0, reads: 0, eexist: 0, errors: 0 };
  const mask = d.pageSize - 1;
  for (;;) {
    poller.wait(-1);
    const n = reader.read();
    if (n === 0) {
      // Stop only when nothing is pending, so a last fault can never be stranded.
      if (poller.ready(1)) break;
      continue;
    }
    stats.reads++;
    for (let i = 0; i < n; i++) {
      if (reader.kind(i) !== UFFD_EVENT_PAGEFAULT) continue;
      const addr = reader.address(i);
      const dst = addr - (addr & mask);
      if (d.fill === 'generator') fillPage(page, (dst - d.base) / d.pageSize);
      const r = uffd.copyRaw(dst, src, d.pageSize, 0);
      if (r === -EEXIST) { stats.eexist++; uffd.wakeRaw(dst, d.pageSize); } else if (r < 0) stats.errors++;
      stats.served++;
    }
  }
  return stats;
}

if (parentPort && workerData) {
  parentPort.postMessage({ ready: true });
  parentPort.postMessage({ stats: serve(workerData as FaultWorkerData) });
}
