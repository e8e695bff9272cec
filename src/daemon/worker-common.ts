// What the session hands each worker thread (structured-cloneable), and the messages workers post back.
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
}

export interface FaultWorkerData extends WorkerShared {
  role: 'fault';
  /** Urgent connection (requests out, pages in), or -1 (exec / single channel: pages come on the main stream). */
  urgentFd: number;
  /** Where requests are written: urgentFd, or the main return path. */
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
  | { type: 'ready' }
  | { type: 'blocks'; names: string[] }
  | { type: 'state'; blob: Uint8Array }
  | { type: 'run' }
  | { type: 'all-present' }
  | { type: 'stream-end'; clean: boolean; detail: string }
  | { type: 'error'; code: string; message: string }
  | { type: 'done' };

export const STATE_SECTION = 'postcopy-uffd/state';
