// Worker thread that touches registered memory (it blocks in faults; the resolver is another thread).
// workerData: { addr, pageSize, pages: number[], op: 'read' | 'write', writeValue?, doneCounter? }
// doneCounter (SharedArrayBuffer, Int32 slot 0) is incremented when the worker finished, so a resolver
// looping synchronously (its event loop is blocked) can tell when to stop.
// Posts { tid, values: number[] } where values[k] is the first u32 of pages[k] after the touch.
import { parentPort, workerData } from 'node:worker_threads';
import { koffi, gettidFn } from '../../../src/uffd/libc.js';

const { addr, pageSize, pages, op, writeValue, doneCounter } = workerData as {
  addr: number; pageSize: number; pages: number[]; op: 'read' | 'write'; writeValue?: number; doneCounter?: SharedArrayBuffer;
};
const tid = gettidFn();
parentPort!.postMessage({ kind: 'started', tid });
const values: number[] = [];
for (const p of pages) {
  const u32 = new Uint32Array(koffi.view(addr + p * pageSize, 4) as ArrayBuffer);
  if (op === 'write') u32[0] = writeValue ?? p + 1;
  values.push(u32[0]);
}
parentPort!.postMessage({ kind: 'done', tid, values });
if (doneCounter) Atomics.add(new Int32Array(doneCounter), 0, 1);
