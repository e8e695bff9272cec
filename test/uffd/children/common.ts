// Shared pieces of the child-process scenarios: start a toucher worker, serve faults on the calling thread
// with a deadline (never blocks forever), fill pages with a recognisable pattern.
import { Worker } from 'node:worker_threads';
import { Userfaultfd, UffdEventReader, Poller, pageSize, type UffdEvent } from '../../../src/uffd/index.js';

export interface Toucher {
  worker: Worker;
  /** Resolves with the worker's 'done' message. */
  done: Promise<{ tid: number; values: number[] }>;
  started: Promise<{ tid: number }>;
}

export function startToucher(addr: number, pages: number[], op: 'read' | 'write', writeValue?: number, psize = pageSize,
  doneCounter?: SharedArrayBuffer): Toucher {
  const worker = new Worker(new URL('./toucher.js', import.meta.url), { workerData: { addr, pageSize: psize, pages, op, writeValue, doneCounter } });
  let resolveStarted!: (v: { tid: number }) => void;
  const started = new Promise<{ tid: number }>((r) => { resolveStarted = r; });
  const done = new Promise<{ tid: number; values: number[] }>((resolve, reject) => {
    worker.on('message', (m) => {
      if (m.kind === 'started') resolveStarted(m);
      if (m.kind === 'done') resolve(m);
    });
    worker.on('error', reject);
  });
  return { worker, done, started };
}

/**
 * Serve events until `handle` returns true `count` times or the deadline passes. `handle` gets the reader
 * and the index; returning true counts the event as handled. Throws on timeout (with what was seen).
 */
export function serve(uffd: Userfaultfd, count: number, handle: (r: UffdEventReader, i: number) => boolean, timeoutMs = 5000,
  reader = new UffdEventReader(uffd.fd)): UffdEvent[] {
  const poller = new Poller([uffd.fd]);
  const seen: UffdEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  let handled = 0;
  while (handled < count) {
    if (Date.now() > deadline) throw new Error(`served ${handled}/${count} events before the deadline; seen ${JSON.stringify(seen.slice(-5))}`);
    if (poller.wait(20) === 0) continue;
    const n = reader.read();
    for (let i = 0; i < n; i++) {
      seen.push(reader.event(i));
      if (handle(reader, i)) handled++;
    }
  }
  return seen;
}

/** A page-sized Buffer whose u32 words all equal `value`. */
export function patternPage(value: number, size = pageSize): Buffer {
  const b = Buffer.alloc(size);
  new Uint32Array(b.buffer, b.byteOffset, size / 4).fill(value);
  return b;
}

/** Sleep without the event loop (the resolver thread never awaits while a fault is pending). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Did the worker post 'done' within ms? (Polls its promise without blocking the thread for long.) */
export async function settledWithin<T>(p: Promise<T>, ms: number): Promise<boolean> {
  let settled = false;
  void p.then(() => { settled = true; }, () => { settled = true; });
  await new Promise((r) => setTimeout(r, ms));
  return settled;
}
