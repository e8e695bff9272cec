// One migration on the destination: a control client (the destination process's uffd + memfd + regions)
// and the source's channels. Starts the stream and fault workers, forwards the state blob, watches for
// completion, stalls and failures, and ends it cleanly (unregister, complete, SHUT(0)) or safely (error
// to the process + SIGKILL, SHUT(1)): a page the source had is never replaced by zeros and nothing waits
// forever.
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import createDebug from 'debug';
import { UmemDevice } from '../umem-compat/index.js';
import { createEventfd, eventfdWrite, closeFd } from '../uffd/events.js';
import { addressOf, pageSize as hostPageSize } from '../uffd/memory.js';
import { DaemonError } from './errors.js';
import { F, C, SharedStats, snapshot, type MigrationStats } from './stats.js';
import type { ControlClient } from './control.js';
import type { MigrationChannels } from './listener.js';
import { encodeReturnPathShut } from '../protocol/index.js';
import { sendNoWait, hasInput } from './sockets.js';
import { wakeThread } from '../uffd/wake-signal.js';
import { STATE_SECTION, spawnWorkerPair, retireWorker, type FaultWorkerData, type StreamWorkerData, type WorkerMessage, type WorkerShared, type WorkerPair } from './worker-common.js';

const log = createDebug('postcopy:daemon:session');

export interface SessionOptions {
  /** --flags (bit 0: touch arrived pages; moot with userfaultfd placement). */
  flags?: number;
  /** A fault unanswered this long, or no state blob this long after the source connected → failure. */
  stallTimeoutMs?: number;
  /** How long to wait for the source's urgent connection after the main one. */
  urgentWaitMs?: number;
  /** Receive size of the stream worker. */
  recvBytes?: number;
  onProgress?: (present: number, total: number, s: SharedStats) => void;
  /** Workers started ahead of time (spawnWorkerPair()); started here when absent. */
  workers?: WorkerPair;
  /** Abort = stop the daemon: the migration fails (the process cannot run without its pages). */
  signal?: AbortSignal;
}

export interface SessionResult {
  ok: boolean;
  stats: MigrationStats;
  error?: DaemonError;
}

/** Workers whose 'exit' already fired: a listener added later would never hear it. */
const exitedWorkers = new WeakSet<Worker>();

function waitExit(w: Worker | null, ms: number): Promise<boolean> {
  if (!w || exitedWorkers.has(w)) return Promise.resolve(true);
  return new Promise((resolve) => {
    let done = false;
    const t = setTimeout(() => { if (!done) { done = true; resolve(false); } }, ms);
    w.once('exit', () => { if (!done) { done = true; clearTimeout(t); resolve(true); } });
  });
}

export async function runSession(client: ControlClient, ch: MigrationChannels, opts: SessionOptions = {}): Promise<SessionResult> {
  const hello = client.hello;
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  if ((opts.flags ?? 0) & 1) log('--flags bit 0 (touch arrived pages) is moot: placement already maps each page in the process');
  const device = UmemDevice.attach({
    uffd: client.uffdFd, memfd: client.memfdFd >= 0 ? client.memfdFd : undefined, regions: hello.regions,
    mode: hello.mode, pageSize: hostPageSize, eventReader: false, ownsFds: false,
  });
  const total = device.pageCount;
  const stats = new SharedStats();
  const stopFd = createEventfd();
  const nudgeFd = createEventfd();
  const shared: WorkerShared = {
    uffd: client.uffdFd, memfd: client.memfdFd, mode: hello.mode, regions: hello.regions, named: hello.named,
    pageSize: device.pageSize, pageState: device.pageState.buffer, stats: stats.buffer, nudgeFd,
  };
  const t0 = ch.acceptedAt;
  // The source sends its state only after our PONG, which needs this session: its wait starts here even when
  // its connection was accepted long before the process attached.
  const stateWaitFrom = Math.max(t0, performance.now());
  let tState: number | null = null;
  let stateArrivedAt: number | null = null;
  let stateDeliveredAt: number | null = null;
  const epoch = (): number => performance.timeOrigin + performance.now();
  let tComplete: number | null = null;
  let streamEnded = false;
  let finished = false;
  let faultWorker: Worker | null = null;
  let blockNames: string[] | null = null;
  let resolveEnd!: (r: { ok: boolean; error?: DaemonError }) => void;
  const ended = new Promise<{ ok: boolean; error?: DaemonError }>((r) => { resolveEnd = r; });
  const fail = (e: DaemonError): void => { if (!finished) { finished = true; resolveEnd({ ok: false, error: e }); } };
  const succeed = (): void => { if (!finished) { finished = true; tComplete = performance.now(); resolveEnd({ ok: true }); } };

  const onWorkerMessage = (who: string) => (m: WorkerMessage): void => {
    switch (m.type) {
      case 'blocks':
        blockNames = m.names;
        if (faultWorker) releaseFaultWorker();
        return;
      case 'state':
        log('state blob: %d bytes', m.blob.length);
        stateArrivedAt = m.at;
        void client.sendState(m.blob).then(() => { tState = performance.now(); stateDeliveredAt = epoch(); });
        return;
      case 'all-present':
        if (stats.present >= total) succeed();
        return;
      case 'stream-end':
        streamEnded = true;
        log('main stream ended (%s, %s)', m.clean ? 'EOF' : 'no EOF', m.detail);
        if (stats.present >= total) { succeed(); return; }
        // Urgent pages may still be in flight: give them a moment, then it is a failure (never zero-fill).
        setTimeout(() => {
          if (stats.present < total) {
            fail(new DaemonError('SOURCE_LOST', m.clean
              ? `source ended the migration stream with ${total - stats.present} of ${total} pages never sent`
              : `source disconnected (${m.detail}) before all pages arrived: ${stats.present} of ${total} present`));
          }
        }, 1000);
        return;
      case 'error':
        fail(new DaemonError(m.code as DaemonError['code'], m.message));
        return;
      default:
        return;
    }
  };

  const pair = opts.workers ?? spawnWorkerPair();
  const spawnWorker = (w: Worker, data: FaultWorkerData | StreamWorkerData): Worker => {
    w.once('exit', () => exitedWorkers.add(w));
    w.ref();
    w.postMessage(data);
    w.on('message', onWorkerMessage(data.role));
    w.on('error', (e) => fail(new DaemonError('INTERNAL', `${data.role} worker crashed: ${e.message}`)));
    w.on('exit', (code) => { if (code !== 0 && !finished) fail(new DaemonError('INTERNAL', `${data.role} worker exited with code ${code}`)); });
    return w;
  };

  const releaseFaultWorker = (): void => {
    faultWorker!.postMessage({ type: 'blocks', names: blockNames });
    Atomics.store(stats.cells, C.blocksBound, 1);
    Atomics.notify(stats.cells, C.blocksBound);
  };

  if (!client.alive) fail(new DaemonError('PROCESS_DIED', `destination process ${client.pid || '?'} exited before the source connected`));
  const onAbort = (): void => fail(new DaemonError('STOPPED', 'postcopy-daemon was stopped (signal) mid-migration'));
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  client.onExit((why) => fail(new DaemonError('PROCESS_DIED', `${why} mid-migration (${stats.present} of ${total} pages present)`)));

  // The stream worker reads its own dup of the main fd so closing one side never races the other.
  const streamWorker = spawnWorker(pair.stream, {
    ...shared, role: 'stream', mainFd: ch.mainFd, mainIsSocket: ch.mainIsSocket, returnFd: ch.returnFd,
    returnIsSocket: ch.returnIsSocket, stateSection: STATE_SECTION, recvBytes: opts.recvBytes ?? 4 << 20,
  });
  // Serve faults at once, requests on the main return path (QEMU's own place for REQ_PAGES; the source
  // answers on whichever channel it has). The urgent connection, when the source opens one, is handed to
  // the running fault worker (shared cell + nudge): no window without fault service while we wait for it.
  faultWorker = spawnWorker(pair.fault, {
    ...shared, role: 'fault', urgentFd: -1, requestFd: ch.returnFd, requestIsSocket: ch.returnIsSocket, stopFd,
  });
  void ch.urgent.then((urgentFd) => {
    if (finished || urgentFd < 0) return;
    Atomics.store(stats.cells, C.urgentFd, urgentFd + 1);
    eventfdWrite(nudgeFd, 1);
  });

  // Progress, stall detection; and input on the urgent socket while the fault worker waits in read() on the
  // uffd (pages the source sent unasked, or its EOF): the wake signal makes it look.
  const timer = setInterval(() => {
    const urgentFd = Atomics.load(stats.cells, C.urgentFd) - 1;
    if (urgentFd >= 0 && Atomics.load(stats.cells, C.faultIdle) === 1 && hasInput(urgentFd)) wakeFaultWorker(stats);
    const present = stats.present;
    opts.onProgress?.(present, total, stats);
    const now = Date.now();
    const oldest = stats.v[F.oldestOutstandingMs];
    if (oldest > 0 && now - oldest > stallMs) {
      fail(new DaemonError('STALLED', `the source has not answered a page request for ${Math.round((now - oldest) / 1000)} s (${present} of ${total} pages present)`));
    }
    if (tState === null && performance.now() - stateWaitFrom > stallMs && !streamEnded) {
      fail(new DaemonError('STALLED', `no state blob from the source within ${Math.round(stallMs / 1000)} s of the migration's start (process attached, source connected)`));
    }
  }, 100);

  const result = await ended;
  clearInterval(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  const totalTimeMs = (tComplete ?? performance.now()) - t0;
  // SHUT is best effort and must never block this (the main) thread on a source that stopped reading.
  const sendReturn = (msg: Uint8Array): void => { sendNoWait(ch.returnFd, addressOf(msg), msg.length, ch.returnIsSocket); };

  // Stop the fault worker (it may wait for the block list, in poll, or in read() on the uffd).
  Atomics.store(stats.cells, C.stop, 1);
  Atomics.store(stats.cells, C.blocksBound, -1);
  Atomics.notify(stats.cells, C.blocksBound);
  eventfdWrite(stopFd, 1);
  const faultStopped = faultWorker ? stopWaitingWorker(faultWorker, stats) : Promise.resolve(true);
  if (!result.ok) {
    const msg = result.error!.message;
    log('migration failed: %s', msg);
    await client.sendError(msg);
    client.kill();
    try { sendReturn(encodeReturnPathShut(1)); } catch { /* source gone */ }
    ch.interrupt();
  } else {
    try { sendReturn(encodeReturnPathShut(0)); } catch { /* source gone */ }
  }
  if (!(await faultStopped)) {
    // Still in a system call after 3 s of wake signals (it should never be): terminate() completes only
    // when that call returns, so do not wait for it.
    log('fault worker did not stop within 3 s; leaving it');
    void faultWorker!.terminate();
  }
  if (!faultWorker) await retireWorker(pair.fault);
  // The source closes after SHUT; if it does not, cut the stream so the blocked receive returns.
  if (!(await waitExit(streamWorker, result.ok ? 3000 : 1000))) {
    ch.interrupt();
    if (!(await waitExit(streamWorker, 2000))) await streamWorker.terminate();
  }
  if (result.ok) {
    try { device.makeVmaAnonymous(); } catch (e) { log('unregister failed: %s', (e as Error).message); }
  }
  device.close();
  closeFd(stopFd);
  closeFd(nudgeFd);
  const s = snapshot(stats, {
    pagesTotal: total, pagesPresent: stats.present,
    // The daemon's share of the downtime: the source stops only after our PONG, so the block list no longer
    // marks the stop; from the state section's arrival to the blob written to the process.
    downtimeMs: stateDeliveredAt === null || stateArrivedAt === null ? null : Math.max(0, stateDeliveredAt - stateArrivedAt), stateDeliveredAt, totalTimeMs,
    pageSize: device.pageSize, mode: hello.mode, transport: ch.transport, ok: result.ok, error: result.error?.message,
  });
  if (result.ok) await client.sendComplete(s);
  await client.close();
  ch.close();
  return { ok: result.ok, stats: s, error: result.error };
}

/** Send the fault worker its wake signal (it waits in read() on the uffd). */
function wakeFaultWorker(stats: SharedStats): void {
  const sig = Atomics.load(stats.cells, C.wakeSignal);
  const tid = Atomics.load(stats.cells, C.faultTid);
  if (sig > 0 && tid > 0) wakeThread(tid, sig);
}

/**
 * After a stop request: until the fault worker exits (≤ 3 s), wake it whenever it sits in read() on the uffd
 * — repeatedly, since it may have checked the stop flag just before it went in. True once it exited.
 */
async function stopWaitingWorker(worker: Worker, stats: SharedStats): Promise<boolean> {
  let exited = false;
  const done = waitExit(worker, 3000).then((ok) => { exited = ok; return ok; });
  while (!exited) {
    if (Atomics.load(stats.cells, C.faultIdle) === 1) wakeFaultWorker(stats);
    if (await Promise.race([done, new Promise<null>((r) => setTimeout(() => r(null), 5))]) !== null) break;
  }
  return exited;
}
