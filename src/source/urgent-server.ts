// Main-thread half of the worker-served urgent channel (urgent-worker.ts): takes the urgent socket away from
// libuv (readStop; the worker uses a blocking dup of its fd), shares the sent bitmap, and turns the worker's
// messages into the session's callbacks. Used for tcp/unix pure on-demand (-n) migrations of memfd-less or
// memfd regions alike (pages are sent from the region's own mapping, same address space).
import { Worker } from 'node:worker_threads';
import type net from 'node:net';
import createDebug from 'debug';
import { libc } from '../uffd/libc.js';
import { addressOf } from '../uffd/memory.js';
import { dupFd, setBlocking, shutdownFd, SHUT_RD } from '../daemon/sockets.js';
import type { PageMap } from './page-map.js';
import { U, type UrgentWorkerData, type UrgentWorkerMessage } from './urgent-worker.js';
import { settleWithin } from './worker-exit.js';

const log = createDebug('postcopy:source:urgent');
const closeFn = libc.func('int close(int fd)') as (fd: number) => number;

export interface UrgentServerEvents {
  allSent(): void;
  returnPath(bytes: Uint8Array): void;
  badRequest(message: string, details: { block: string; start: number; length: number }): void;
  closed(errno: number): void;
}

export class UrgentServer {
  private readonly worker: Worker;
  private readonly cells: Int32Array;
  private readonly fd: number;
  private finished = false;
  private readonly total: number;

  /** Can this migration use it? Needs a socket with an fd and a SharedArrayBuffer-backed sent bitmap. */
  static usable(sock: net.Socket | undefined, map: PageMap): boolean {
    const fd = (sock as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
    return typeof fd === 'number' && fd >= 0 && map.sent.buffer instanceof SharedArrayBuffer && map.sentCount === 0;
  }

  constructor(sock: net.Socket, map: PageMap, resend: boolean, private readonly events: UrgentServerEvents) {
    const handle = (sock as unknown as { _handle: { fd: number; readStop(): number } })._handle;
    // libuv must not read the socket any more: the worker owns its input from now on.
    sock.pause();
    handle.readStop();
    this.fd = dupFd(handle.fd);
    setBlocking(this.fd, true);
    this.total = map.totalPages;
    this.cells = new Int32Array(new SharedArrayBuffer(U.count * 4));
    const blocks = map.blocks.map((b) => ({
      name: b.name, firstPage: b.firstPage, pages: b.pages, size: b.size, base: addressOf(b.region.view(0, map.pageSize)),
    }));
    const data: UrgentWorkerData = {
      role: 'urgent-source', fd: this.fd, pageSize: map.pageSize, blocks, sent: map.sent.buffer as SharedArrayBuffer,
      cells: this.cells.buffer as SharedArrayBuffer, resend, total: map.totalPages,
    };
    this.worker = new Worker(new URL('./urgent-worker.js', import.meta.url), { workerData: data });
    this.worker.unref();
    this.worker.on('message', (m: UrgentWorkerMessage) => this.onMessage(m));
    this.worker.on('error', (e) => { log('urgent worker error: %s', e.message); this.events.closed(-1); });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  private readonly exited: Promise<void>;

  /** Resolves once the worker thread is gone (at most ~2 s after finish()/destroy()). */
  whenExited(): Promise<void> {
    return settleWithin(this.exited, 2000);
  }

  /** Pages the main thread marked sent (inline pages): lets the worker tell when everything is sent. */
  publishMainSent(count: number): boolean {
    Atomics.store(this.cells, U.mainSent, count);
    return count + Atomics.load(this.cells, U.newlySent) === this.total;
  }

  /** Pages sent first by the worker (not counted in PageMap.sentCount). */
  get newlySent(): number { return Atomics.load(this.cells, U.newlySent); }
  get pagesUrgent(): number { return Atomics.load(this.cells, U.pagesUrgent); }
  get pagesResent(): number { return Atomics.load(this.cells, U.resent); }
  get requests(): number { return Atomics.load(this.cells, U.requests); }
  get bytes(): number { return Atomics.load(this.cells, U.bytesHi) * 0x4000_0000 + Atomics.load(this.cells, U.bytesLo); }

  /** Every page is sent: the worker sends EOS on the urgent channel and exits. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.wakeWorker();
  }

  /** Hard stop (failure, or the end of the migration): the socket is being destroyed anyway. */
  destroy(): void {
    this.finished = true;
    this.wakeWorker();
  }

  /** Unblock the worker's recv; never after our dup is closed (the fd number may belong to someone else by then). */
  private wakeWorker(): void {
    if (!this.fdClosed) shutdownFd(this.fd, SHUT_RD);
  }

  private fdClosed = false;

  private onMessage(m: UrgentWorkerMessage): void {
    switch (m.type) {
      case 'all-sent': this.events.allSent(); return;
      case 'rp': this.events.returnPath(m.bytes); return;
      case 'bad-request': this.events.badRequest(m.message, m); return;
      case 'closed':
        this.fdClosed = true;
        closeFn(this.fd);
        if (!this.finished) this.events.closed(m.errno);
        return;
      default:
    }
  }
}
