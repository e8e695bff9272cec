// Child side of the wait-in-read test (runs under runInChild: if the wake signal failed to interrupt the
// blocking read, the worker would hang this process, which the parent's hard timeout kills).
import { Worker } from 'node:worker_threads';
import { Userfaultfd, UffdEventReader, setNonBlocking } from '../../../src/uffd/index.js';
import { wakeSignal, wakeThread } from '../../../src/uffd/wake-signal.js';

const waiter = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { UffdEventReader } = await import(workerData.events);
  const { gettidFn } = await import(workerData.libc);
  const reader = new UffdEventReader(workerData.fd, 8, { blocking: 'allow' });
  parentPort.postMessage({ tid: gettidFn() });
  const t0 = Date.now();
  const n = reader.readBlocking();
  parentPort.postMessage({ n, ms: Date.now() - t0 });
})();`;

export async function waitInRead(): Promise<{ skipped?: string; nowaitMs: number; nowaitCount: number; interrupted?: { n: number; ms: number }; signal: number | null }> {
  const uffd = Userfaultfd.open();
  setNonBlocking(uffd.fd, false);
  const reader = new UffdEventReader(uffd.fd, 8, { blocking: 'allow' });
  if (!reader.readsWithoutWaiting) return { skipped: 'this kernel refuses RWF_NOWAIT reads on a userfaultfd', nowaitMs: 0, nowaitCount: 0, signal: null };
  // On the blocking fd, read() must still return at once with nothing pending.
  const t0 = Date.now();
  const nowaitCount = reader.read();
  const nowaitMs = Date.now() - t0;
  const signal = wakeSignal();
  if (signal === null) return { skipped: 'no wake signal could be installed', nowaitMs, nowaitCount, signal };
  const w = new Worker(waiter, {
    eval: true,
    workerData: { fd: uffd.fd, events: new URL('../../../src/uffd/events.js', import.meta.url).href, libc: new URL('../../../src/uffd/libc.js', import.meta.url).href },
  });
  const interrupted = await new Promise<{ n: number; ms: number }>((resolve, reject) => {
    w.on('error', reject);
    w.on('message', (m: { tid?: number; n?: number; ms?: number }) => {
      if (m.tid !== undefined) setTimeout(() => wakeThread(m.tid!, signal), 150);
      else resolve({ n: m.n!, ms: m.ms! });
    });
  });
  await w.terminate();
  uffd.close();
  return { nowaitMs, nowaitCount, interrupted, signal };
}
