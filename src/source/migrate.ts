// migrate(): the outgoing side of a post-copy migration (issue 4, docs/migration-protocol.md).
//
// Timeline: connect (tcp/unix: main then urgent; exec: one pipe) → header, configuration, OPEN_RETURN_PATH,
// POSTCOPY_ADVISE, "ram" SECTION_START with the block list → PING, wait for the destination's PONG (it is
// ready; the workload still runs) → [the workload stops: state()] → state section, POSTCOPY_RUN (the
// destination runs now; nothing before this point depends on memory size) → PING; on its PONG → requested
// pages on the urgent channel (exec: inline ahead of the next background chunk) while every page not yet sent
// streams in SECTION_PART chunks → SECTION_END + EOF (+ EOS on urgent) → wait for SHUT from the destination.
import type { Readable, Writable } from 'node:stream';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import createDebug from 'debug';
import { ReturnPathDecoder } from '../protocol/index.js';
import { QEMU_VM_EOF, QEMU_VM_SECTION_END, QEMU_VM_SECTION_PART } from '../protocol/constants.js';
import type { ReturnPathMessage } from '../protocol/types.js';
import { MigrationError } from './errors.js';
import { errnoName } from '../uffd/errors.js';
import { PageMap, type BlockInfo, type SourceRegion } from './page-map.js';
import { PageReader } from './page-reader.js';
import { BatchSender, type SlotWriter } from './batch-sender.js';
import { ChannelState, maxRecordBytes, writeEos, writeFooter, writePageRecord, writePageRecordIov, writeSectionHeader, type RecordCounters } from './records.js';
import { encodePing, encodePrelude, encodeStateAndRun, RAM_SECTION_ID, READY_PING_VALUE, RUN_PING_VALUE } from './prelude.js';
import { openTransport, type Transport } from './transport.js';
import { UrgentServer } from './urgent-server.js';
import { parseMigrationUri } from './uri.js';

const log = createDebug('postcopy:source');

export type StateProvider = Uint8Array | (() => Uint8Array | Promise<Uint8Array>);

export interface MigrateOptions {
  /** The memory to migrate: one RAM block per region (name = block idstr). */
  regions: readonly SourceRegion[];
  /**
   * The application's execution state. A function is called once the connection and the block list are set
   * up: stop the workload there and return its state, so the downtime does not include connecting.
   */
  state: StateProvider;
  /** -p. Only post-copy is implemented (the switch happens at once); false is rejected. Default true. */
  postcopy?: boolean;
  /** false = -n: on-demand only; EOS once every page has been requested. Default true. */
  background?: boolean;
  /** -m: the background scan restarts just after the last requested page (+forward). Default false. */
  restartAfterRequest?: boolean;
  /** Extra pages sent after each requested range (prefault). Default 0. */
  forward?: number;
  /** Extra pages sent before each requested range (prefault). Default 0. */
  backward?: number;
  /**
   * Answer a request for a page that already went out in the background stream again on the urgent channel
   * (the copy in the stream may still be queued behind megabytes). QEMU 7.2 does not; default false: measured
   * on 1 GiB with a random toucher racing the stream, re-sending made the urgent channel carry ~2–4× more
   * pages and cost more CPU than waiting for the copy already in flight (median 1.97 s vs 1.36 s, 5 runs each).
   * Never over exec: one pipe, so the earlier copy is already ahead of any answer.
   */
  resendRequested?: boolean;
  /** Target page size. Default 4096. */
  pageSize?: number;
  /** Bytes per background chunk (one SECTION_PART). Default 1 MiB (exec: 256 KiB). */
  batchBytes?: number;
  /** Background chunks queued in the transport at once. Default 4 (exec: 2). */
  maxInflight?: number;
  /**
   * tcp/unix: a worker thread writev()s background chunks straight from the region's memory (record headers
   * + page pointers; no batch copy). Default true; false keeps copied batches written through the socket.
   */
  scatterGather?: boolean;
  /** Find memfd holes with lseek(SEEK_DATA) and send them as ZERO without reading. Default true. */
  detectHoles?: boolean;
  /** Machine name in the CONFIGURATION section. Default "postcopy-uffd". */
  machine?: string;
  signal?: AbortSignal;
  onProgress?: (p: MigrationProgress) => void;
  /** Minimum interval between onProgress calls. Default 100 ms. */
  progressIntervalMs?: number;
  connectTimeoutMs?: number;
  /**
   * After the block list the source sends PING and stops the workload only on the destination's PONG (it is
   * ready to forward the state at once; the workload keeps running meanwhile). Give up after this long
   * (TIMEOUT; the workload was never stopped). Default 30 s.
   */
  readyTimeoutMs?: number;
  /** Give up waiting for the destination's SHUT after the last page this long (default: wait; use signal). */
  shutTimeoutMs?: number;
}

export interface MigrationProgress {
  pagesSent: number;
  pagesTotal: number;
  pagesUrgent: number;
  bytes: number;
  elapsedMs: number;
}

export interface MigrationStats {
  uri: string;
  pageSize: number;
  pagesTotal: number;
  /** Pages sent by the background scan. */
  pagesBackground: number;
  /** Requested pages sent on the urgent channel (or inline in exec mode), re-sends included. */
  pagesUrgent: number;
  /** Pages sent because of forward/backward around a request. */
  pagesPrefault: number;
  /** Requested pages that had already gone out in the background stream and were sent again. */
  pagesResent: number;
  /** ZERO records (all channels). */
  pagesZero: number;
  requests: number;
  bytesMain: number;
  bytesUrgent: number;
  bytesTotal: number;
  /** performance.timeOrigin-based epoch ms when the workload was stopped (state() called / migrate() entered). */
  downtimeStart: number;
  /** Epoch ms when the state section and POSTCOPY_RUN were handed to the transport. */
  stateSentAt: number;
  /** Stop → state + RUN written (the source's share of the downtime), ms. */
  handoverMs: number;
  connectMs: number;
  /** Block list sent → the destination's PONG (ready for the state); the workload still runs. */
  readyMs: number;
  /** State + RUN sent → the destination's PONG (it has the state; background pages start then). */
  runAckMs: number;
  /** RUN → last page handed to the transport, ms. */
  streamMs: number;
  /** RUN → SHUT received, ms. */
  completionMs: number;
  totalMs: number;
  /** Background + urgent payload bytes / streamMs, MB/s (10^6). */
  throughputMBps: number;
  shutStatus: number;
}

/**
 * Bytes per SECTION_PART of the sending thread (its batches are slices of one part). Long parts keep the
 * stream a plain run of page records for the destination's scatter receive (framing only every 32 MiB).
 */
const PART_BYTES = 32 << 20;
const now = (): number => performance.timeOrigin + performance.now();

interface UrgentRange {
  block: BlockInfo;
  next: number;
  end: number;
  /** Requested pages (true) are sent even when already sent; prefault pages only when unsent. */
  requested: boolean;
}

export async function migrate(uri: string, options: MigrateOptions): Promise<MigrationStats> {
  const tEnter = now();
  const opts = checkOptions(options);
  const parsed = parseMigrationUri(uri);
  const map = new PageMap(opts.regions, opts.pageSize);
  const reader = new PageReader(map, { detectHoles: opts.detectHoles });
  const exec = parsed.kind === 'exec';
  const batchBytes = opts.batchBytes ?? (exec ? 256 << 10 : 1 << 20);
  const maxInflight = opts.maxInflight ?? (exec ? 2 : 4);
  const recMax = maxRecordBytes(map.pageSize);
  if (batchBytes < recMax + 32) throw new MigrationError('BAD_OPTIONS', `batchBytes must be at least ${recMax + 32}`);
  if (opts.signal?.aborted) throw new MigrationError('ABORTED', 'migration aborted before it started');

  // Spawned before connecting: the worker loads while the connection and the prelude are set up.
  const sender = !exec && opts.scatterGather !== false && opts.background !== false ? new BatchSender(maxInflight, batchBytes) : undefined;
  let transport: Transport;
  try {
    transport = await openTransport(parsed, { signal: opts.signal, connectTimeoutMs: opts.connectTimeoutMs });
  } catch (e) {
    await sender?.stop();
    throw e;
  }
  const tConnected = now();
  const session = new Session(uri, opts, map, reader, transport, batchBytes, maxInflight);
  session.sender = sender;
  session.stats.connectMs = tConnected - tEnter;
  return session.run(typeof opts.state === 'function' ? undefined : tEnter);
}

function checkOptions(o: MigrateOptions): MigrateOptions {
  if (!o || typeof o !== 'object') throw new MigrationError('BAD_OPTIONS', 'migrate(uri, options): options object required');
  if (o.postcopy === false) throw new MigrationError('BAD_OPTIONS', 'only post-copy migration is implemented: postcopy must be true (-p)');
  for (const k of ['forward', 'backward'] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new MigrationError('BAD_OPTIONS', `${k} must be an integer ≥ 0, got ${v}`);
  }
  if (!(o.state instanceof Uint8Array) && typeof o.state !== 'function') throw new MigrationError('BAD_OPTIONS', 'state must be a Uint8Array or a function returning one');
  if (o.restartAfterRequest && o.background === false) throw new MigrationError('BAD_OPTIONS', 'restartAfterRequest (-m) needs the background transfer (drop -n)');
  return o;
}

class Session {
  readonly stats: MigrationStats;
  private readonly mainOut: Writable;
  private readonly mainIn: Readable;
  private readonly urgent?: net.Socket;
  private readonly mainChan: ChannelState;
  private readonly urgentChan: ChannelState;
  private readonly rpMain = new ReturnPathDecoder();
  private readonly rpUrgent = new ReturnPathDecoder();
  private readonly queue: UrgentRange[] = [];
  private readonly pool: Buffer[] = [];
  private inflight = 0;
  private cursor = 0;
  /** Bytes in the SECTION_PART the sending thread's slots are filling; -1: no part open. */
  private partBytes = -1;
  private urgentBlocked = false;
  private sendingDone = false;
  private finished = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private shut: { resolve: (status: number) => void; reject: (e: Error) => void } | undefined;
  private shutStatus: number | undefined;
  /** Waiting for the PONG to the readiness PING (see waitReady). */
  private ready: { value: number; resolve: () => void; reject: (e: Error) => void } | undefined;
  private lastProgress = 0;
  private readonly bg: RecordCounters = { pages: 0, zero: 0, bytes: 0 };
  private readonly urg: RecordCounters = { pages: 0, zero: 0, bytes: 0 };
  private readonly pre: RecordCounters = { pages: 0, zero: 0, bytes: 0 };
  private tRun = 0;
  /** Re-send requested pages that already went out: only useful with a separate urgent channel (exec has one pipe, the earlier copy is ahead). */
  private readonly resend: boolean;
  /** Scatter-gather background sender (tcp/unix); background chunks go through it once it is loaded. */
  sender: BatchSender | undefined;
  /** Urgent requests served by a worker thread (tcp/unix -n): see urgent-server.ts. */
  private urgentServer: UrgentServer | undefined;
  private urgentServerCounted = false;

  constructor(
    uri: string,
    private readonly opts: MigrateOptions,
    private readonly map: PageMap,
    private readonly reader: PageReader,
    private readonly transport: Transport,
    private readonly batchBytes: number,
    private readonly maxInflight: number,
  ) {
    this.mainChan = new ChannelState(map.pageSize);
    this.urgentChan = new ChannelState(map.pageSize);
    this.mainOut = transport.mainOut;
    this.mainIn = transport.mainIn;
    this.urgent = transport.urgent;
    this.resend = opts.resendRequested === true && transport.urgent !== undefined;
    this.stats = {
      uri, pageSize: map.pageSize, pagesTotal: map.totalPages, pagesBackground: 0, pagesUrgent: 0, pagesPrefault: 0,
      pagesResent: 0, pagesZero: 0, requests: 0, bytesMain: 0, bytesUrgent: 0, bytesTotal: 0, downtimeStart: 0,
      stateSentAt: 0, handoverMs: 0, connectMs: 0, readyMs: 0, runAckMs: 0, streamMs: 0, completionMs: 0, totalMs: 0, throughputMBps: 0, shutStatus: -1,
    };
  }

  async run(stoppedAt: number | undefined): Promise<MigrationStats> {
    const tStart = now() - this.stats.connectMs;
    const onAbort = (): void => this.fail(new MigrationError('ABORTED', 'migration aborted'));
    this.opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.listen();
    try {
      this.writeMain(encodePrelude(this.map, { machine: this.opts.machine }));
      this.stats.readyMs = await this.waitPong(READY_PING_VALUE);
      // The workload stops here (a state function) or stopped before migrate() (a buffer).
      const downtimeStart = stoppedAt ?? now();
      const state = typeof this.opts.state === 'function' ? await this.opts.state() : this.opts.state;
      if (!(state instanceof Uint8Array)) throw new MigrationError('BAD_OPTIONS', 'the state function must return a Uint8Array');
      this.checkFailed();
      this.writeMain(encodeStateAndRun(state));
      this.tRun = now();
      this.stats.downtimeStart = downtimeStart;
      this.stats.stateSentAt = this.tRun;
      this.stats.handoverMs = this.tRun - downtimeStart;
      log('state (%d bytes) + RUN sent %s ms after the stop', state.length, this.stats.handoverMs.toFixed(3));
      // Background pages start once the destination has taken the state (PONG after RUN): until then the
      // links and both hosts' CPUs stay free for the state's way to the process (requests are served).
      this.stats.runAckMs = await this.waitPong(RUN_PING_VALUE);

      await this.pump();
      this.stats.streamMs = now() - this.tRun;
      const status = await this.waitShut();
      this.stats.shutStatus = status;
      this.stats.completionMs = now() - this.tRun;
      this.finished = true;
      this.transport.destroy();
      await this.workersGone();
      if (status !== 0) throw new MigrationError('DESTINATION_FAILED', `the destination reported failure (SHUT ${status}) after receiving every page`, { status });
    } catch (e) {
      this.fail(e as Error);
      await this.workersGone();
      throw this.failure ?? e;
    } finally {
      this.opts.signal?.removeEventListener('abort', onAbort);
    }
    const s = this.stats;
    s.pagesBackground = this.bg.pages;
    s.pagesUrgent = this.urg.pages;
    const us = this.urgentServer;
    if (us) { s.pagesUrgent += us.pagesUrgent; s.pagesResent += us.pagesResent; s.requests += us.requests; s.bytesUrgent += us.bytes; }
    s.pagesPrefault = this.pre.pages;
    s.pagesZero = this.bg.zero + this.urg.zero + this.pre.zero;
    s.bytesTotal = s.bytesMain + s.bytesUrgent;
    s.totalMs = now() - tStart;
    s.throughputMBps = s.streamMs > 0 ? (this.map.sentCount * this.map.pageSize) / 1e3 / s.streamMs : 0;
    this.progress(true);
    return s;
  }

  // ---- return path ----

  private listen(): void {
    this.mainIn.on('data', (chunk: Buffer) => this.onReturnPath(this.rpMain, chunk, 'main'));
    this.mainIn.on('end', () => this.onClosed('main'));
    this.mainIn.on('error', (e: Error) => this.onTransportError(e, 'main'));
    if ((this.mainOut as unknown) !== this.mainIn) this.mainOut.on('error', (e: Error) => this.onTransportError(e, 'main (out)'));
    if (this.urgent && !this.startUrgentServer(this.urgent)) {
      this.urgent.on('data', (chunk: Buffer) => this.onReturnPath(this.rpUrgent, chunk, 'urgent'));
      this.urgent.on('end', () => this.onClosed('urgent'));
      this.urgent.on('error', (e: Error) => this.onTransportError(e, 'urgent'));
    }
  }

  private onReturnPath(decoder: ReturnPathDecoder, chunk: Buffer, channel: string): void {
    if (this.failure || this.finished) return;
    let msgs: ReturnPathMessage[];
    try {
      msgs = decoder.push(chunk);
    } catch (e) {
      // A malformed page request is a bad request; anything else is garbage on the return path.
      const isRequest = /REQ_PAGES/.test(String((e as { context?: unknown }).context ?? ''));
      this.fail(new MigrationError(isRequest ? 'BAD_REQUEST' : 'BAD_RETURN_PATH', `${isRequest ? 'bad page request' : 'garbage'} on the ${channel} return path: ${(e as Error).message}`, { channel }, { cause: e }));
      return;
    }
    try {
      for (const m of msgs) this.onMessage(m, channel);
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    if (this.queue.length > 0) this.serveUrgent();
  }

  private onMessage(m: ReturnPathMessage, channel: string): void {
    switch (m.kind) {
      case 'req-pages': {
        const { block, first, count } = this.map.resolveRequest(m.block, m.start, m.length);
        this.stats.requests++;
        if (this.sendingDone) return; // every page is on its way already
        this.enqueue(block, first, count);
        return;
      }
      case 'shut':
        log('SHUT(%d) on the %s channel', m.status, channel);
        this.shutStatus = m.status;
        if (this.shut) this.shut.resolve(m.status);
        else if (m.status !== 0) this.fail(new MigrationError('DESTINATION_FAILED', `the destination gave up (SHUT ${m.status}) before the migration completed`, { status: m.status }));
        return;
      case 'pong':
        if (this.ready?.value === m.value) this.ready.resolve();
        return;
      default:
        log('ignoring return-path message %s on %s', m.kind, channel);
    }
  }

  private onClosed(channel: string): void {
    if (this.finished || this.failure) return;
    if (channel === 'urgent' && this.sendingDone) return;
    if (this.shutStatus !== undefined) return;
    this.fail(new MigrationError(this.sendingDone ? 'NO_SHUT' : 'TRANSPORT_CLOSED',
      this.sendingDone
        ? `the destination closed the ${channel} channel without SHUT after every page was sent (${this.transport.describe()})`
        : `the destination closed the ${channel} channel mid-migration: ${this.map.sentCount}/${this.map.totalPages} pages sent (${this.transport.describe()})`,
      { channel, pagesSent: this.map.sentCount }));
  }

  private onTransportError(e: Error, channel: string): void {
    if (this.finished || this.failure) return;
    // SHUT(0) after every page went out: the destination is done and may hang up while our tail drains.
    if (this.shutStatus === 0 && this.map.allSent) { log('%s channel: %s after SHUT(0), ignored', channel, e.message); return; }
    const code = (e as NodeJS.ErrnoException).code;
    this.fail(new MigrationError('TRANSPORT_ERROR', `${channel} channel failed mid-migration (${code ?? e.message}) with ${this.map.sentCount}/${this.map.totalPages} pages sent (${this.transport.describe()})`, { channel, errno: code, pagesSent: this.map.sentCount }, { cause: e }));
  }

  /** Stop the sending threads and wait until they are gone, so the process can exit safely afterwards. */
  private async workersGone(): Promise<void> {
    this.urgentServer?.destroy();
    await Promise.all([this.sender?.stop(), this.urgentServer?.whenExited()]);
  }

  private fail(e: Error): void {
    if (this.failure || this.finished) return;
    this.failure = e;
    log('migration failed: %s', e.message);
    this.sender?.stop();
    this.urgentServer?.destroy();
    this.transport.destroy();
    this.wake?.();
    this.shut?.reject(e);
    this.ready?.reject(e);
  }

  private checkFailed(): void {
    if (this.failure) throw this.failure;
  }

  // ---- urgent pages ----

  /** Queue a validated request: the requested pages first, then forward, then backward prefault pages. */
  private enqueue(block: BlockInfo, first: number, count: number): void {
    const blockEnd = block.firstPage + block.pages;
    this.queue.push({ block, next: first, end: first + count, requested: true });
    const fwd = this.opts.forward ?? 0;
    const bwd = this.opts.backward ?? 0;
    const fEnd = Math.min(blockEnd, first + count + fwd);
    if (fEnd > first + count) this.queue.push({ block, next: first + count, end: fEnd, requested: false });
    const bStart = Math.max(block.firstPage, first - bwd);
    if (bStart < first) this.queue.push({ block, next: bStart, end: first, requested: false });
    if (this.opts.restartAfterRequest) this.cursor = fEnd;
  }

  /**
   * Write queued request pages into `buf` from `pos` (up to `cap`) on channel `chan`. Returns the new position;
   * consumed ranges leave the queue.
   */
  private fillUrgent(buf: Buffer, pos: number, cap: number, chan: ChannelState): number {
    const { map, reader } = this;
    const recMax = maxRecordBytes(map.pageSize);
    const sent = map.sent;
    while (this.queue.length > 0) {
      const r = this.queue[0];
      const counters = r.requested ? this.urg : this.pre;
      while (r.next < r.end) {
        const p = r.next;
        const already = sent[p] === 1;
        if (already && !(r.requested && this.resend)) { r.next++; continue; }
        if (pos + recMax > cap) return pos;
        pos = writePageRecord(buf, pos, chan, map, reader, r.block, p, counters);
        if (already) this.stats.pagesResent++;
        else { sent[p] = 1; map.sentCount++; }
        r.next++;
      }
      this.queue.shift();
    }
    return pos;
  }

  /**
   * tcp/unix pure on-demand: hand the urgent socket to a worker thread that answers requests with blocking
   * recv + writev from the region's memory (no event loop on the fault path). Not with background pages,
   * -m or forward/backward prefault (the main thread's scan and queue handle those). Returns false when unused.
   */
  private startUrgentServer(sock: net.Socket): boolean {
    const o = this.opts;
    if (o.background !== false || o.restartAfterRequest || (o.forward ?? 0) > 0 || (o.backward ?? 0) > 0 || !UrgentServer.usable(sock, this.map)) return false;
    this.urgentServer = new UrgentServer(sock, this.map, this.resend, {
      allSent: () => this.countUrgentServer(),
      returnPath: (bytes) => this.onReturnPath(this.rpUrgent, Buffer.from(bytes), 'urgent'),
      badRequest: (message, details) => this.fail(new MigrationError('BAD_REQUEST', `bad page request on the urgent return path: ${message}`, details)),
      closed: (errno) => (errno > 0 ? this.onTransportError(Object.assign(new Error(errnoName(errno)), { code: errnoName(errno) }), 'urgent') : this.onClosed('urgent')),
    });
    log('urgent requests served by a worker thread');
    return true;
  }

  /** Every page is sent (worker's + ours): fold the worker's count into the page map once. */
  private countUrgentServer(): void {
    if (this.urgentServerCounted || !this.urgentServer) return;
    this.urgentServerCounted = true;
    this.map.sentCount += this.urgentServer.newlySent;
    this.wake?.();
  }

  /** tcp/unix: answer queued requests on the urgent socket now, in ≤ batch-sized writes, honouring drain. */
  private serveUrgent(): void {
    const sock = this.urgent;
    if (!sock || this.urgentServer) { this.wake?.(); return; } // exec (or the urgent worker owns the socket): the pump sends them inline
    while (this.queue.length > 0 && !this.urgentBlocked && !this.failure) {
      const buf = Buffer.allocUnsafe(Math.min(this.batchBytes, estimate(this.queue, this.map.pageSize)));
      const len = this.fillUrgent(buf, 0, buf.length, this.urgentChan);
      if (len === 0) continue;
      this.stats.bytesUrgent += len;
      if (!sock.write(buf.subarray(0, len))) {
        this.urgentBlocked = true;
        sock.once('drain', () => { this.urgentBlocked = false; this.serveUrgent(); });
      }
    }
    this.progress(false);
    if (this.map.allSent) this.wake?.();
  }

  // ---- background ----

  private acquire(): Buffer {
    return this.pool.pop() ?? Buffer.allocUnsafeSlow(this.batchBytes);
  }

  private waitWake(): Promise<void> {
    return new Promise((resolve) => { this.wake = () => { this.wake = undefined; resolve(); }; });
  }

  /** Background loop (and exec's inline urgent pages) until every page is sent; then the stream's tail. */
  private async pump(): Promise<void> {
    const { map } = this;
    const background = this.opts.background !== false;
    const exec = !this.urgent;
    const recMax = maxRecordBytes(map.pageSize);
    for (;;) {
      this.checkFailed();
      if (this.sender && (await this.senderTurn(recMax))) continue;
      if (this.inflight >= this.maxInflight) { await this.waitWake(); continue; }
      const hasUrgent = (exec || this.urgentServer !== undefined) && this.queue.length > 0;
      if (map.allSent && !hasUrgent) break;
      if (!hasUrgent && !background) { await this.waitWake(); continue; }
      const buf = this.acquire();
      const cap = buf.length - 13; // EOS + footer
      let pos = writeSectionHeader(buf, 0, QEMU_VM_SECTION_PART, RAM_SECTION_ID);
      const start = pos;
      let inlineUrgent = 0;
      if (hasUrgent) {
        pos = this.fillUrgent(buf, pos, cap, this.mainChan);
        inlineUrgent = pos - start;
      }
      if (background) pos = this.fillBackground(buf, pos, cap, recMax);
      if (pos === start) { this.pool.push(buf); continue; }
      pos = writeEos(buf, pos);
      pos = writeFooter(buf, pos, RAM_SECTION_ID);
      // Inline urgent records count once, as urgent bytes (not in bytesMain as well).
      this.stats.bytesUrgent += inlineUrgent;
      this.sendBatch(buf, pos, inlineUrgent);
      if (this.urgentServer?.publishMainSent(map.sentCount)) this.countUrgentServer();
      this.progress(false);
      // Let the event loop read requests between chunks even when the socket takes everything at once.
      if (this.inflight < this.maxInflight) await new Promise<void>((r) => setImmediate(r));
    }
    if (this.sender?.isStarted) {
      // The worker's chunks go first; only then may libuv write on the socket again.
      await this.sender.idle();
      this.checkSender();
      this.checkFailed();
    }
    this.sendingDone = true;
    this.queue.length = 0;
    // Tail: SECTION_END ram (EOS, footer), EOF; EOS on the urgent channel.
    const tail = Buffer.alloc(19);
    let p = writeSectionHeader(tail, 0, QEMU_VM_SECTION_END, RAM_SECTION_ID);
    p = writeEos(tail, p);
    p = writeFooter(tail, p, RAM_SECTION_ID);
    tail[p++] = QEMU_VM_EOF;
    this.writeMain(tail.subarray(0, p));
    if (this.urgentServer) this.urgentServer.finish(); // the worker sends the urgent channel's EOS
    else if (this.urgent) {
      const eos = Buffer.alloc(8);
      writeEos(eos, 0);
      this.urgent.write(eos);
      this.stats.bytesUrgent += eos.length;
    }
    log('all %d pages sent (%d background, %d urgent, %d prefault, %d zero)', map.totalPages, this.bg.pages, this.urg.pages, this.pre.pages, this.bg.zero + this.urg.zero + this.pre.zero);
  }

  /**
   * One step of the scatter-gather background path; false when the copying path should run this turn (the
   * worker is still loading). Hands the socket over once libuv has nothing queued on it.
   */
  private async senderTurn(recMax: number): Promise<boolean> {
    const sender = this.sender!;
    if (!sender.isStarted) {
      if (!sender.ready) return false;
      const fd = (this.mainOut as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== 'number' || fd < 0) { void sender.stop(); this.sender = undefined; return false; }
      if (this.inflight > 0) { await this.waitWake(); return true; }
      if (this.mainOut.writableLength > 0) { await new Promise<void>((r) => setTimeout(r, 1)); return true; }
      sender.start(fd);
      log('background chunks now go out by writev from the sending thread');
    }
    this.checkSender();
    if (sender.inflight >= this.maxInflight) { await sender.waitProgress(); return true; }
    // The loop ends once every page is sent (the tail waits for the worker), after closing an open part.
    if (this.map.allSent && this.partBytes < 0) return false;
    const slot = sender.nextSlot();
    const buf = slot.small;
    const opening = this.partBytes < 0;
    let pos = opening ? writeSectionHeader(buf, 0, QEMU_VM_SECTION_PART, RAM_SECTION_ID) : 0;
    const start = pos;
    pos = this.fillBackground(buf, pos, buf.length - 13, recMax, slot);
    if (pos === start && !this.map.allSent) return true; // nothing to send now (a part opened here was never sent)
    if (opening) this.partBytes = 0;
    this.partBytes += slot.bytes + (pos - start);
    if (this.partBytes >= PART_BYTES || this.map.allSent) {
      pos = writeEos(buf, pos);
      pos = writeFooter(buf, pos, RAM_SECTION_ID);
      this.partBytes = -1;
    }
    slot.flushSmall(pos);
    this.stats.bytesMain += slot.bytes;
    sender.submit(slot);
    this.progress(false);
    // Let the event loop read requests between chunks.
    await new Promise<void>((r) => setImmediate(r));
    return true;
  }

  private checkSender(): void {
    const e = this.sender?.error ?? 0;
    if (e === 0) return;
    const err = Object.assign(new Error(`sending a background chunk failed: ${this.sender!.describeError()}`), { code: e > 0 ? errnoName(e) : 'EIO' });
    this.onTransportError(err, 'main');
    this.checkFailed();
  }

  /** `slot`: scatter-gather batch (headers into buf = slot.small, pages as iovecs); else pages are copied into buf. */
  private fillBackground(buf: Buffer, pos: number, cap: number, recMax: number, slot?: SlotWriter): number {
    const { map, reader } = this;
    const sent = map.sent;
    const total = map.totalPages;
    let p = map.nextUnsent(this.cursor);
    if (p < 0) return pos;
    let block = map.blockOfPage(p);
    let blockEnd = block.firstPage + block.pages;
    const chan = this.mainChan;
    const counters = this.bg;
    const limit = this.batchBytes - recMax;
    while (pos + recMax <= cap && (slot === undefined || (slot.room >= 2 && slot.bytes + pos <= limit))) {
      if (p >= blockEnd) { block = map.blockOfPage(p); blockEnd = block.firstPage + block.pages; }
      pos = slot === undefined ? writePageRecord(buf, pos, chan, map, reader, block, p, counters) : writePageRecordIov(slot, pos, chan, map, reader, block, p, counters);
      sent[p] = 1;
      map.sentCount++;
      p++;
      if (p >= total || sent[p] !== 0) {
        p = map.nextUnsent(p);
        if (p < 0) break;
      }
    }
    this.cursor = p < 0 ? 0 : p;
    return pos;
  }

  /** `urgentBytes`: inline urgent records inside the batch, already counted in bytesUrgent. */
  private sendBatch(buf: Buffer, len: number, urgentBytes = 0): void {
    this.inflight++;
    this.stats.bytesMain += len - urgentBytes;
    this.mainOut.write(buf.subarray(0, len), (err) => {
      this.inflight--;
      if (err) { this.onTransportError(err, 'main'); return; }
      this.pool.push(buf);
      this.wake?.();
    });
  }

  private writeMain(bytes: Uint8Array): void {
    this.stats.bytesMain += bytes.length;
    this.mainOut.write(bytes);
  }

  /**
   * PING `value`, resolve with the ms until its PONG. READY_PING_VALUE follows the block list: whatever the
   * destination still sets up (accepting, attaching the process, starting its workers) happens while the
   * workload runs, not in the downtime. RUN_PING_VALUE follows state + RUN (see prelude.ts).
   */
  private waitPong(value: number): Promise<number> {
    const t0 = now();
    const ms = this.opts.readyTimeoutMs ?? 30_000;
    const what = value === READY_PING_VALUE
      ? 'after the block list (is a destination process attached to postcopy-daemon?); the workload was not stopped'
      : 'after the state and RUN';
    this.writeMain(encodePing(value));
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new MigrationError('TIMEOUT', `the destination did not answer PING within ${ms} ms ${what} (${this.transport.describe()})`)), ms);
      const done = (): void => { clearTimeout(timer); this.ready = undefined; };
      this.ready = {
        value,
        resolve: () => { done(); const dt = now() - t0; log('PONG 0x%s after %s ms', value.toString(16), dt.toFixed(3)); resolve(dt); },
        reject: (e) => { done(); reject(e); },
      };
      if (this.failure) this.ready.reject(this.failure);
    });
  }

  private waitShut(): Promise<number> {
    if (this.shutStatus !== undefined) return Promise.resolve(this.shutStatus);
    this.checkFailed();
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => { if (timer) clearTimeout(timer); this.shut = undefined; };
      this.shut = { resolve: (s) => { done(); resolve(s); }, reject: (e) => { done(); reject(e); } };
      const ms = this.opts.shutTimeoutMs;
      if (ms !== undefined && ms > 0) {
        timer = setTimeout(() => this.fail(new MigrationError('TIMEOUT', `no SHUT from the destination within ${ms} ms after the last page (${this.transport.describe()})`)), ms);
      }
    });
  }

  private progress(force: boolean): void {
    const cb = this.opts.onProgress;
    if (!cb) return;
    const t = now();
    if (!force && t - this.lastProgress < (this.opts.progressIntervalMs ?? 100)) return;
    this.lastProgress = t;
    try {
      cb({ pagesSent: this.map.sentCount, pagesTotal: this.map.totalPages, pagesUrgent: this.urg.pages, bytes: this.stats.bytesMain + this.stats.bytesUrgent, elapsedMs: this.tRun ? t - this.tRun : 0 });
    } catch (e) {
      log('onProgress threw: %s', (e as Error).message);
    }
  }
}

/** Upper bound of the bytes the queued ranges need (for sizing one urgent write). */
function estimate(queue: UrgentRange[], pageSize: number): number {
  let pages = 0;
  for (const r of queue) { pages += r.end - r.next; if (pages > 4096) break; }
  return Math.max(pages, 1) * maxRecordBytes(pageSize) + 16;
}
