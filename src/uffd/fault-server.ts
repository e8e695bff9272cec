// A reusable in-process fault server: a worker thread runs a synchronous, allocation-free koffi loop
//   poll([uffd, stop eventfd]) → read a batch of messages → fill each faulting page from a page source →
//   UFFDIO_COPY (EEXIST = someone placed it first: wake the waiters, count it)
// while the main thread (or any other thread) touches the registered memory. The thread that touches the
// memory must never be the one resolving its faults: that is why the loop lives in a worker.
//
// Page sources (functions cannot cross a thread boundary, so they are named, not passed):
//   { kind: 'constant', byte }        every page filled with one byte (benchmarks)
//   { kind: 'pattern' }               fillPatternPage(page, index): deterministic bytes per page index
//   { kind: 'module', url, export }   a module the worker imports; its export fills (page, index)
//
// Stop protocol: stop() writes the stop eventfd; the loop leaves only when a read finds no message pending
// after the stop was seen, so every fault read is served first (none is stranded half-handled). A fault
// that starts after the loop has left is not served: stop only once nothing touches the region any more
// (or unregister it first).
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { Userfaultfd } from './userfaultfd.js';
import { UffdEventReader, Poller, createEventfd, eventfdWrite, closeFd } from './events.js';
import { UFFD_EVENT_PAGEFAULT } from './abi.js';
import { addressOf } from './memory.js';

const log = createDebug('postcopy:fault-server');
export const FAULT_SERVER_ROLE = 'postcopy-uffd/fault-server';
const EEXIST = 17;
const EAGAIN = 11;

export type PageSource =
  | { kind: 'constant'; byte: number }
  | { kind: 'pattern' }
  /** A module (file URL) exporting `fill(page: Uint8Array, index: number): void` under `exportName` (default 'fillPage'). */
  | { kind: 'module'; url: string; exportName?: string };

export interface FaultServerOptions {
  /** A handshaken uffd with the region registered MISSING. Made non-blocking if it is not (see ensureNonBlocking). */
  uffdFd: number;
  /** Start of the region: page index = (faulting page - base) / pageSize. */
  base: number;
  pageSize: number;
  source: PageSource;
  /** Messages per read() (default 64). */
  batch?: number;
}

export interface FaultServerStats {
  /** Page faults answered (EEXIST included). */
  served: number;
  /** read() calls that returned messages. */
  reads: number;
  /** Pages someone else placed first (woken, not an error). */
  eexist: number;
  /** UFFDIO_COPY failures other than EEXIST (EAGAIN included: the faulting thread is woken to fault again). */
  errors: number;
}

/** Deterministic content of page `index` (xorshift32 seeded by the index; cheap, no allocation). */
export function fillPatternPage(page: Uint8Array, index: number): void {
  let x = (index * 2654435761 + 1) >>> 0;
  const words = new Uint32Array(page.buffer, page.byteOffset, page.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
}

export interface FaultServerJob extends FaultServerOptions { role: typeof FAULT_SERVER_ROLE; stopFd: number }

/** The loop itself (runs in the worker; exported for tests that run it in a child process). */
export function serveFaults(job: FaultServerOptions & { stopFd: number }, fill: ((page: Uint8Array, index: number) => void) | null): FaultServerStats {
  const uffd = Userfaultfd.fromFd(job.uffdFd, 0n);
  // The reader makes the fd non-blocking: poll() on a blocking uffd says POLLERR and read() would block the stop.
  const reader = new UffdEventReader(job.uffdFd, job.batch ?? 64);
  const poller = new Poller([job.uffdFd, job.stopFd]);
  const ps = job.pageSize;
  const page = Buffer.alloc(ps, job.source.kind === 'constant' ? job.source.byte : 0);
  const src = addressOf(page);
  const stats: FaultServerStats = { served: 0, reads: 0, eexist: 0, errors: 0 };
  const mask = ps - 1;
  for (;;) {
    poller.wait(-1);
    const n = reader.read();
    if (n === 0) {
      // Leave only when nothing is pending: every fault read so far has been served.
      if (poller.ready(1)) break;
      continue;
    }
    stats.reads++;
    for (let i = 0; i < n; i++) {
      if (reader.kind(i) !== UFFD_EVENT_PAGEFAULT) continue;
      const addr = reader.address(i);
      const dst = addr - (addr & mask);
      if (fill) fill(page, (dst - job.base) / ps);
      const r = uffd.copyRaw(dst, src, ps, 0);
      if (r === -EEXIST) { stats.eexist++; uffd.wakeRaw(dst, ps); } else if (r < 0) {
        stats.errors++;
        // EAGAIN: the mm changed (an event is pending; this loop reads and skips it). Wake the thread so it
        // faults again and comes back as a new message, instead of sleeping forever on a fault we dropped.
        if (r === -EAGAIN) uffd.wakeRaw(dst, ps);
      }
      stats.served++;
    }
  }
  return stats;
}

export async function resolveFill(source: PageSource): Promise<((page: Uint8Array, index: number) => void) | null> {
  if (source.kind === 'constant') return null;
  if (source.kind === 'pattern') return fillPatternPage;
  const mod = await import(source.url) as Record<string, unknown>;
  const fn = mod[source.exportName ?? 'fillPage'];
  if (typeof fn !== 'function') throw new Error(`page source ${source.url} has no function export "${source.exportName ?? 'fillPage'}"`);
  return fn as (page: Uint8Array, index: number) => void;
}

/** A running fault server (one worker thread, one uffd). */
export class FaultServer {
  private stopped: Promise<FaultServerStats> | null = null;

  private constructor(private readonly worker: Worker, private readonly stopFd: number, private readonly result: Promise<FaultServerStats>) {}

  /** Start the worker; resolves once its loop is about to poll (modules loaded, page source ready). */
  static async start(opts: FaultServerOptions): Promise<FaultServer> {
    if (!Number.isInteger(opts.pageSize) || opts.pageSize <= 0 || (opts.pageSize & (opts.pageSize - 1)) !== 0) {
      throw new RangeError(`pageSize must be a power of two, got ${opts.pageSize}`);
    }
    const stopFd = createEventfd();
    const job: FaultServerJob = { ...opts, role: FAULT_SERVER_ROLE, stopFd };
    // The worker's entry is its own module: a page-source module may import this one (through index.js).
    const worker = new Worker(new URL('./fault-server-worker.js', import.meta.url), { workerData: job });
    let ready!: () => void;
    const isReady = new Promise<void>((r) => { ready = r; });
    const result = new Promise<FaultServerStats>((resolve, reject) => {
      worker.on('message', (m: { ready?: boolean; stats?: FaultServerStats; error?: string }) => {
        if (m.ready) ready();
        else if (m.stats) resolve(m.stats);
        else if (m.error) reject(new Error(`fault server: ${m.error}`));
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`fault server worker exited (code ${code}) before reporting`)));
    });
    result.catch(() => {});
    try {
      await Promise.race([isReady, result]);
    } catch (e) {
      closeFd(stopFd);
      throw e;
    }
    log('started on uffd %d (%s pages)', opts.uffdFd, opts.source.kind);
    return new FaultServer(worker, stopFd, result);
  }

  /** Ask the loop to leave (see the stop protocol above) and return its counts. Idempotent. */
  stop(): Promise<FaultServerStats> {
    if (!this.stopped) {
      eventfdWrite(this.stopFd);
      this.stopped = this.result.finally(() => {
        closeFd(this.stopFd);
        void this.worker.terminate();
      });
    }
    return this.stopped;
  }
}
