// What the session hands each worker thread (structured-cloneable), and the messages workers post back.
import { Worker as WorkerCtor, parentPort, workerData } from 'node:worker_threads';
import { ProtocolError } from '../protocol/index.js';
import type { UmemRegionSpec } from '../umem-compat/index.js';
import type { PlacementMode } from './regions.js';

export interface WorkerShared {
  uffd: number;
  memfd: number; // -1 when none
  mode: PlacementMode;
  regions: UmemRegionSpec[];
  named: boolean[];
  pageSize: number;
  pageState: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  /** eventfd the stream worker writes after placing pages while faults are outstanding (wakes the fault worker). */
  nudgeFd: number;
}

export interface FaultWorkerData extends WorkerShared {
  role: 'fault';
  /**
   * Urgent connection (requests out, pages in), or -1: exec / single channel (pages come on the main
   * stream), or not connected yet (the session publishes it later in the C.urgentFd stats cell + nudge).
   */
  urgentFd: number;
  /** Where requests are written until an urgent connection is adopted: urgentFd, or the main return path. */
  requestFd: number;
  requestIsSocket: boolean;
  stopFd: number;
}

export interface StreamWorkerData extends WorkerShared {
  role: 'stream';
  /** Main stream, read with blocking recv/read. */
  mainFd: number;
  mainIsSocket: boolean;
  /** Return path for PONG (same fd as mainFd on sockets; the command's stdin for exec:). */
  returnFd: number;
  returnIsSocket: boolean;
  /** Idstr of the state section. */
  stateSection: string;
  recvBytes: number;
}

export type WorkerMessage =
  /** `at`: epoch ms (performance.timeOrigin based) when the worker decoded it. */
  | { type: 'blocks'; names: string[]; at: number }
  | { type: 'state'; blob: Uint8Array; at: number }
  | { type: 'run' }
  | { type: 'all-present' }
  | { type: 'stream-end'; clean: boolean; detail: string }
  | { type: 'error'; code: string; message: string }
  | { type: 'done' };

export const STATE_SECTION = 'postcopy-uffd/state';

/** A fault worker and a stream worker, started before they are needed (module + koffi load takes ~100 ms+). */
export interface WorkerPair {
  fault: import('node:worker_threads').Worker;
  stream: import('node:worker_threads').Worker;
}

export function spawnWorkerPair(): WorkerPair {
  const make = (file: string, role: string): import('node:worker_threads').Worker => {
    const w = new WorkerCtor(new URL(file, import.meta.url), { workerData: { role } });
    w.unref();
    return w;
  };
  return { fault: make('./fault-worker.js', 'fault'), stream: make('./stream-worker.js', 'stream') };
}

/** What a worker reports when its job throws: a bad stream from the source is named as such. */
export function workerError(e: unknown): WorkerMessage {
  const err = e as Error & { code?: string };
  if (err instanceof ProtocolError) return { type: 'error', code: 'PROTOCOL', message: `bad migration stream from the source: ${err.message}` };
  return { type: 'error', code: err?.code ?? 'INTERNAL', message: err?.message ?? String(e) };
}

/**
 * Worker side of spawnWorkerPair(): in a worker spawned for `role`, run the job that arrives as the first
 * message (modules and koffi are loaded by then), report 'done' or the error, and let the thread end.
 */
export function serveWorkerJob<T>(role: string, run: (job: T) => void): void {
  const port = parentPort;
  if (!port || (workerData as { role?: string } | null)?.role !== role) return;
  port.once('message', (job: T | typeof RETIRE) => {
    if ((job as typeof RETIRE).retire === true) { port.close(); return; }
    try {
      run(job as T);
      port.postMessage({ type: 'done' } satisfies WorkerMessage);
    } catch (e) {
      port.postMessage(workerError(e));
    }
    port.close();
  });
}

/** The message that tells a pre-spawned worker it will get no job: it ends by itself once loaded. */
export const RETIRE = { retire: true } as const;

/**
 * End a pre-spawned worker that got no job. Never terminate() it outright: a worker still loading its
 * modules may be inside a koffi call, and terminating it there aborts the whole process (koffi's napi_throw
 * FatalError). It ends by itself once loaded; terminate() only if it has not within `ms`.
 */
export async function retireWorker(w: import('node:worker_threads').Worker, ms = 3000): Promise<void> {
  if (w.threadId < 0) return; // already gone
  const exited = new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    w.once('exit', () => { clearTimeout(t); resolve(true); });
  });
  try { w.postMessage(RETIRE); } catch { /* already gone */ }
  if (!(await exited)) await w.terminate();
}
