// The control socket (docs/migration-protocol.md "Control socket"): the destination process connects, hands over its
// userfaultfd (+ memfd) and a JSON region table in one sendmsg, then receives the state blob, and finally
// `complete` or `error` lines. The daemon holds a pidfd of the process so it can SIGKILL exactly that
// process (never a recycled pid) when the migration cannot finish: a fault must not hang forever and a page
// the source had must never be replaced by zeros.
import net from 'node:net';
import fs from 'node:fs';
import createDebug from 'debug';
import { libc, errno, closeFn, syscall6 } from '../uffd/libc.js';
import { SYS } from '../uffd/abi.js';
import { FdChannel, FdPassError, RawFdReceiver, recvBytesWithFds, recvBytesWithFdsAsync, type RawRecvOptions } from '../uffd/fdpass.js';
import { pidfdOpen } from '../uffd/pidfd.js';
import { DaemonError } from './errors.js';
import { parseHello, type ControlHello } from './regions.js';

const log = createDebug('postcopy:daemon:control');

const sendFn = libc.func('intptr_t send(int fd, const void *buf, size_t len, int flags)');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int name, _Inout_ uint8_t *val, _Inout_ uint32_t *len)');
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const MAX_HELLO_BYTES = 64 * 1024;
const MAX_FDS = 8;
const PCFD_MAGIC = Buffer.from('PCFD', 'latin1');

export interface HelloMessage {
  fds: number[];
  payload: unknown;
}

/** Raw-mode receive options for a hello, and the payload parsed when `complete` found the end. */
function helloParser(): { opts: RawRecvOptions; payload(): unknown } {
  let payload: unknown;
  return {
    opts: {
      maxFds: MAX_FDS, maxBytes: MAX_HELLO_BYTES,
      complete: (buf) => {
        const r = tryParse(buf);
        if (!r) return undefined;
        payload = r.payload;
        return r.end;
      },
    },
    payload: () => payload,
  };
}

/**
 * Receives the hello with fdpass.ts's raw mode: fds ride on the first byte; the payload is either a bare JSON
 * document (docs/migration-protocol.md's line, or Firecracker's array without newline) or fdpass.ts's "PCFD" frame.
 * `poll()` never blocks; it returns the message once the JSON is complete. Received fds are closed on any
 * failure; errors are DaemonErrors that say what the client did wrong.
 */
export class HelloReceiver {
  private readonly rx: RawFdReceiver;
  private readonly parser = helloParser();

  constructor(fd: number) {
    this.rx = new RawFdReceiver(fd, this.parser.opts);
  }

  /** Bytes and fds received so far (for messages). */
  get progress(): string {
    return this.rx.progress;
  }

  /** The hello when complete, null when more bytes are needed. Throws DaemonError (fds closed). */
  poll(): HelloMessage | null {
    try {
      const m = this.rx.poll();
      return m ? { fds: m.fds, payload: this.parser.payload() } : null;
    } catch (e) {
      throw helloError(e, 0);
    }
  }

  /** Close whatever fds arrived (timeout, error). */
  abandon(): void {
    this.rx.abandon();
  }
}

/** fdpass errors in the words of the control protocol. */
function helloError(e: unknown, timeoutMs: number): Error {
  if (!(e instanceof FdPassError)) return e as Error;
  const soFar = typeof e.details.got === 'string' ? ` (${e.details.got} so far)` : '';
  switch (e.code) {
    case 'EOF': return new DaemonError('BAD_HELLO', 'control client closed the connection without sending anything');
    case 'TRUNCATED': return new DaemonError('BAD_HELLO', `control client closed after ${String(e.details.got)} bytes of an incomplete handshake`);
    case 'CTRUNC': return new DaemonError('BAD_HELLO', `control client passed more than ${MAX_FDS} fds`);
    case 'PAYLOAD_TOO_LARGE': return new DaemonError('BAD_HELLO', `control message larger than ${MAX_HELLO_BYTES} bytes`);
    case 'ETIMEDOUT': return new DaemonError('HANDSHAKE_TIMEOUT', `control client sent no complete handshake within ${timeoutMs} ms${soFar}`);
    case 'ABORTED': return new DaemonError('STOPPED', `control client sent no complete handshake before the daemon stopped${soFar}`);
    default: return new DaemonError('BAD_HELLO', `receiving the control message failed: ${e.message}`);
  }
}

/** Blocking receive of the hello (this thread waits in poll; for tools and tests, never the daemon). */
export function recvHello(fd: number, timeoutMs: number): HelloMessage {
  const h = helloParser();
  try {
    const m = recvBytesWithFds(fd, { ...h.opts, timeoutMs });
    return { fds: m.fds, payload: h.payload() };
  } catch (e) {
    throw helloError(e, timeoutMs);
  }
}

/**
 * Receive the hello without blocking the event loop (the daemon's path: a silent client stalls nobody).
 * `signal` gives up early (daemon stopping); the fds received so far are closed either way.
 */
export async function recvHelloAsync(fd: number, timeoutMs: number, signal?: AbortSignal): Promise<HelloMessage> {
  const h = helloParser();
  try {
    const m = await recvBytesWithFdsAsync(fd, { ...h.opts, timeoutMs, signal });
    return { fds: m.fds, payload: h.payload() };
  } catch (e) {
    throw helloError(e, timeoutMs);
  }
}

/**
 * The complete JSON in `buf` and where it ends, undefined when more bytes are needed; throws on bytes that
 * can never parse.
 */
function tryParse(buf: Buffer): { payload: unknown; end: number } | undefined {
  let body = buf;
  if (buf.length >= 4 && buf.subarray(0, 4).equals(PCFD_MAGIC)) {
    if (buf.length < 16) return undefined;
    const n = buf.readUInt32LE(8);
    if (n > MAX_HELLO_BYTES) throw new DaemonError('BAD_HELLO', `control frame announces ${n} payload bytes, limit ${MAX_HELLO_BYTES}`);
    if (buf.length < 16 + n) return undefined;
    body = buf.subarray(16, 16 + n);
  } else {
    const first = buf.find((c) => c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09);
    if (first !== undefined && first !== 0x7b /* { */ && first !== 0x5b /* [ */) {
      throw new DaemonError('BAD_HELLO', `control message is not JSON (starts with byte 0x${first.toString(16)})`);
    }
  }
  const text = body.toString('utf8');
  try {
    return { payload: JSON.parse(text), end: body === buf ? buf.length : 16 + body.length };
  } catch (e) {
    // A newline ends the message: if it still does not parse, it never will.
    if (text.includes('\n')) throw new DaemonError('BAD_HELLO', `control message is not valid JSON: ${(e as Error).message}`);
    return undefined;
  }
}

/** Pid of the peer of a Unix socket (SO_PEERCRED), or 0. */
export function peerPid(fd: number): number {
  const cred = new Uint8Array(12);
  const len = [12];
  if ((getsockoptFn(fd, SOL_SOCKET, SO_PEERCRED, cred, len) as number) < 0) return 0;
  return Buffer.from(cred.buffer, cred.byteOffset, 12).readInt32LE(0);
}

/** One attached destination process. */
export class ControlClient {
  readonly hello: ControlHello;
  readonly uffdFd: number;
  /** -1 when the client sent no memfd (Firecracker, missing mode). */
  readonly memfdFd: number;
  /** The process to stop on failure (hello.pid, else the socket peer). */
  readonly pid: number;
  private pidfd = -1;
  private readonly socket: net.Socket;
  private closed = false;
  private exitListeners: ((why: string) => void)[] = [];

  constructor(fd: number, msg: HelloMessage) {
    if (msg.fds.length === 0) {
      throw new DaemonError('NO_FDS', 'control client sent no file descriptor: expected its userfaultfd (and memfd) as SCM_RIGHTS on the handshake message');
    }
    this.hello = parseHello(msg.payload);
    this.uffdFd = msg.fds[0];
    this.memfdFd = msg.fds.length > 1 ? msg.fds[1] : -1;
    for (const extra of msg.fds.slice(2)) closeFn(extra);
    if (this.hello.mode === 'minor' && this.memfdFd < 0) {
      throw new DaemonError('NO_FDS', 'mode "minor" needs the memfd as the second fd, but only one fd arrived');
    }
    this.pid = this.hello.pid ?? peerPid(fd);
    if (this.pid > 0) {
      try { this.pidfd = pidfdOpen(this.pid); } catch (e) { log('pidfd_open(%d) failed: %s', this.pid, (e as Error).message); }
    }
    // Past the handshake nothing carries fds, so libuv may own the socket now (writes + close detection).
    this.socket = new net.Socket({ fd, readable: true, writable: true });
    this.socket.on('data', () => { /* the process sends nothing after the hello; ignore */ });
    this.socket.on('error', (e) => log('control socket error: %s', e.message));
    this.socket.on('close', () => {
      const was = this.closed;
      this.closed = true;
      if (!was) for (const l of this.exitListeners) l(`destination process ${this.pid || '?'} closed the control connection (exited?)`);
    });
  }

  /** Called once if the process goes away (control connection closed) before close(). */
  onExit(listener: (why: string) => void): void {
    this.exitListeners.push(listener);
  }

  get alive(): boolean {
    return !this.closed;
  }

  private write(data: Buffer | string): Promise<void> {
    if (this.closed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  sendState(blob: Uint8Array): Promise<void> {
    const head = JSON.stringify({ type: 'state', length: blob.length }) + '\n';
    return this.write(Buffer.concat([Buffer.from(head), blob]));
  }

  sendComplete(stats: unknown): Promise<void> {
    return this.write(JSON.stringify({ type: 'complete', stats }) + '\n');
  }

  sendError(message: string): Promise<void> {
    return this.write(JSON.stringify({ type: 'error', message }) + '\n');
  }

  /** SIGKILL the process (through its pidfd when we have one). */
  kill(): void {
    if (this.pidfd >= 0 && SYS) {
      const r = Number(syscall6(SYS.pidfd_send_signal, this.pidfd, 9, 0, 0, 0, 0));
      if (r === 0) { log('killed pid %d via pidfd', this.pid); return; }
      log('pidfd_send_signal failed: errno %d', errno());
    }
    if (this.pid > 0) {
      try { process.kill(this.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }

  /** Close our copies of the fds and the connection (after the final message is flushed). */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.socket.destroy(); resolve(); }, 1000);
        this.socket.end(() => { clearTimeout(t); this.socket.destroy(); resolve(); });
      });
    }
    closeFn(this.uffdFd);
    if (this.memfdFd >= 0) closeFn(this.memfdFd);
    if (this.pidfd >= 0) { closeFn(this.pidfd); this.pidfd = -1; }
  }
}

/**
 * Accepts control clients on a Unix stream socket path. Every connection does its handshake on its own
 * (a silent or broken client never delays a good one); good clients queue for accept(), bad ones get an
 * error line and are dropped (reported through `onReject`).
 */
export class ControlServer {
  private readonly ready: ControlClient[] = [];
  private waiters: ((c: ControlClient) => void)[] = [];
  /** Aborts handshakes still in progress when the server closes (they get an error line, not silence). */
  private readonly closing = new AbortController();
  onReject: (e: Error) => void = (e) => log('client rejected: %s', e.message);

  private constructor(readonly path: string, private readonly server: net.Server, private readonly handshakeTimeoutMs: number) {
    server.on('connection', (s) => { void this.handshake(s); });
  }

  static async listen(path: string, opts: { handshakeTimeoutMs?: number } = {}): Promise<ControlServer> {
    // A stale socket file from a previous run would make bind fail: remove it if nothing listens there.
    if (fs.existsSync(path)) {
      const st = fs.lstatSync(path);
      if (!st.isSocket()) throw new DaemonError('BAD_OPTION', `--control ${path} exists and is not a socket`);
      const inUse = await new Promise<boolean>((resolve) => {
        const c = net.connect(path, () => { c.destroy(); resolve(true); });
        c.on('error', () => resolve(false));
      });
      if (inUse) throw new DaemonError('BAD_OPTION', `--control ${path}: another daemon is listening there`);
      fs.unlinkSync(path);
    }
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new DaemonError('BAD_OPTION', `cannot listen on control socket ${path}: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    return new ControlServer(path, server, opts.handshakeTimeoutMs ?? 10_000);
  }

  private async handshake(sock: net.Socket): Promise<void> {
    const fd = FdChannel.adopt(sock).fd; // dup + destroy: libuv never reads the fds away from us
    let msg: HelloMessage | undefined;
    try {
      msg = await recvHelloAsync(fd, this.handshakeTimeoutMs, this.closing.signal);
      const client = new ControlClient(fd, msg);
      log('client pid %d: mode %s, %d regions, uffd fd %d, memfd fd %d', client.pid, client.hello.mode, client.hello.regions.length, client.uffdFd, client.memfdFd);
      const w = this.waiters.shift();
      if (w) w(client); else this.ready.push(client);
    } catch (e) {
      const err = e as Error;
      try {
        const line = Buffer.from(JSON.stringify({ type: 'error', message: err.message }) + '\n');
        sendFn(fd, line, line.length, 0x4040 /* MSG_NOSIGNAL | MSG_DONTWAIT */);
      } catch { /* best effort */ }
      closeFn(fd);
      for (const f of msg?.fds ?? []) closeFn(f);
      this.onReject(err);
    }
  }

  /** Next attached process (skipping any that died while queued). Rejects when `signal` aborts. */
  async accept(opts: { signal?: AbortSignal } = {}): Promise<ControlClient> {
    for (;;) {
      const queued = this.ready.shift();
      const client = queued ?? await new Promise<ControlClient>((resolve, reject) => {
        const w = (c: ControlClient): void => { opts.signal?.removeEventListener('abort', onAbort); resolve(c); };
        const onAbort = (): void => { this.waiters = this.waiters.filter((x) => x !== w); reject(new DaemonError('STOPPED', 'aborted')); };
        if (opts.signal?.aborted) { onAbort(); return; }
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(w);
      });
      if (client.alive) return client;
      log('dropping client pid %d: it went away while queued', client.pid);
      await client.close();
    }
  }

  close(): void {
    this.server.close();
    this.closing.abort();
    for (const c of this.ready.splice(0)) void c.close();
    try { fs.unlinkSync(this.path); } catch { /* gone */ }
  }
}
