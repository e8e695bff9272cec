// Worker-thread toucher: reads (or writes) pages of a registered range and records what it saw. It blocks
// in the kernel on each fault until the server (another thread) resolves it; results go through a
// SharedArrayBuffer because the server's loop keeps the parent's event loop busy.
import { workerData } from 'node:worker_threads';
import { viewAt } from '../../../src/uffd/memory.js';

export interface ToucherData {
  /** Guest address of page 0. */
  base: number;
  pageSize: number;
  pages: number[];
  /** Write a marker into the page after reading it (proves it is writable). */
  writeMarker?: number;
  /** Int32Array over it: [0] = done flag, [1 + i] = first u32 seen on pages[i], [1 + n + i] = last byte. */
  results: SharedArrayBuffer;
  /** Optional start barrier: waits until [0] of this becomes 1. */
  start?: SharedArrayBuffer;
}

const d = workerData as ToucherData;
const res = new Int32Array(d.results);
if (d.start) Atomics.wait(new Int32Array(d.start), 0, 0, 10_000);
const n = d.pages.length;
for (let i = 0; i < n; i++) {
  const v = viewAt(d.base + d.pages[i] * d.pageSize, d.pageSize);
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  res[1 + i] = dv.getUint32(0, true) | 0;
  res[1 + n + i] = v[d.pageSize - 1];
  if (d.writeMarker !== undefined) dv.setUint32(8, d.writeMarker, true);
}
Atomics.store(res, 0, 1);
Atomics.notify(res, 0);
