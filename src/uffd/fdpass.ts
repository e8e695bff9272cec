// File descriptors over Unix sockets (SCM_RIGHTS) with a JSON payload: how a destination process hands its
// userfaultfd + memfd + region description to the daemon. Every socket call goes through koffi so that the
// ancillary data never passes through libuv (libuv reads with read(2), which would silently drop it).
//
// Frame (one sendmsg; the fds ride on its first byte):
//   u32 magic "PCFD" | u16 version | u16 fd count | u32 payload bytes | u32 reserved (0) | JSON payload (UTF-8)
// Works on SOCK_SEQPACKET (preferred: one frame = one message, truncation is visible) and SOCK_STREAM
// (the header is read first, then exactly the payload). Received fds are close-on-exec and are closed again
// whenever the frame turns out to be bad, so a hostile peer cannot leak fds into us.
// Raw mode (sendBytesWithFds / RawFdReceiver / recvBytesWithFds[Async]) sends and receives bare bytes with
// the fds instead: the postcopy-daemon control socket's JSON line and Firecracker's JSON array.
import type net from 'node:net';
import createDebug from 'debug';
import { libc, errno, strerror, koffi, closeFn, pollFn } from './libc.js';
import { errnoName } from './errors.js';

const log = createDebug('postcopy:fdpass');

// Linux constants (identical on x86_64 and aarch64).
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_TYPE = 3;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const EINTR = 4;
const EAGAIN = 11;
const EINPROGRESS = 115;
const F_DUPFD_CLOEXEC = 1030;

/** The kernel's per-message limit on passed fds (SCM_MAX_FD). */
export const MAX_FDS_PER_MESSAGE = 253;
/** Default and hard limits on the JSON payload. */
export const DEFAULT_MAX_PAYLOAD = 64 * 1024;
export const HARD_MAX_PAYLOAD = 16 * 1024 * 1024;

const FRAME_MAGIC = 0x44464350; // "PCFD" little-endian
const FRAME_VERSION = 1;
const HEADER_BYTES = 16;

// LP64 layouts (x86_64 and aarch64): struct msghdr is 56 bytes, struct iovec 16, struct cmsghdr 16 + data.
const MSGHDR_BYTES = 56;
const CMSG_HDR_BYTES = 16;
const cmsgAlign = (n: number): number => (n + 7) & ~7;
const cmsgSpace = (n: number): number => CMSG_HDR_BYTES + cmsgAlign(n);

const sendmsgFn = libc.func('intptr_t sendmsg(int fd, void *msg, int flags)');
const recvmsgFn = libc.func('intptr_t recvmsg(int fd, void *msg, int flags)');
const socketFn = libc.func('int socket(int domain, int type, int protocol)');
const socketpairFn = libc.func('int socketpair(int domain, int type, int protocol, void *sv)');
const bindFn = libc.func('int bind(int fd, void *addr, uint32_t len)');
const listenFn = libc.func('int listen(int fd, int backlog)');
const accept4Fn = libc.func('int accept4(int fd, void *addr, void *len, int flags)');
const connectFn = libc.func('int connect(int fd, void *addr, uint32_t len)');
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int name, void *val, void *len)');
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)');
const unlinkFn = libc.func('int unlink(const char *path)');

export type FdPassErrorCode =
  | 'EOF' // peer closed before a frame started
  | 'TRUNCATED' // frame cut short (peer closed mid-frame, or a datagram larger than our buffer)
  | 'CTRUNC' // more fds than we accept (MSG_CTRUNC): the extras were dropped by the kernel
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'FD_COUNT_MISMATCH'
  | 'PAYLOAD_TOO_LARGE'
  | 'BAD_PAYLOAD'
  | 'TOO_MANY_FDS'
  | 'ETIMEDOUT'
  | 'ABORTED'
  | 'BAD_ARGUMENT'
  | string; // errno names from failing syscalls (e.g. 'ECONNREFUSED', 'EPIPE')

export class FdPassError extends Error {
  override readonly name = 'FdPassError';
  constructor(
    readonly code: FdPassErrorCode,
    message: string,
    readonly details: { errno?: number; op?: string; expected?: unknown; got?: unknown } = {},
  ) {
    super(`${code}: ${message}`);
  }
}

// Socket errnos errors.ts does not name.
const SOCKET_ERRNO_NAMES: Record<number, string> = {
  88: 'ENOTSOCK', 90: 'EMSGSIZE', 98: 'EADDRINUSE', 104: 'ECONNRESET', 107: 'ENOTCONN', 111: 'ECONNREFUSED',
  115: 'EINPROGRESS',
};

function sysError(op: string, code: number, hint = ''): FdPassError {
  const name = SOCKET_ERRNO_NAMES[code] ?? errnoName(code);
  return new FdPassError(name, `${op} failed: ${strerror(code)}${hint ? ` (${hint})` : ''}`, { errno: code, op });
}

function closeQuietly(fds: readonly number[]): void {
  for (const fd of fds) if (fd >= 0) closeFn(fd);
}

// ---------------------------------------------------------------------------------------------------------
// poll on one fd

/** poll(2) one fd; returns revents (0 on timeout). Retries EINTR with the remaining time. */
function pollOne(fd: number, events: number, timeoutMs: number): number {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(events, 4);
  const deadline = timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
  for (;;) {
    const left = deadline === Infinity ? -1 : Math.max(0, Math.ceil(deadline - Date.now()));
    const r = pollFn(pfd, 1, left) as number;
    if (r >= 0) return r === 0 ? 0 : pfd.readInt16LE(6);
    const e = errno();
    if (e !== EINTR) throw sysError('poll', e);
  }
}

function deadlineOf(timeoutMs: number | undefined): number {
  return timeoutMs === undefined || timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
}
function msLeft(deadline: number): number {
  return deadline === Infinity ? -1 : Math.max(0, Math.ceil(deadline - Date.now()));
}

// ---------------------------------------------------------------------------------------------------------
// msghdr / cmsg layout

function buildMsghdr(iov: Buffer, control: Buffer | null): { msg: Buffer; keep: Buffer[] } {
  const iovec = Buffer.alloc(16);
  iovec.writeBigUInt64LE(BigInt(koffi.address(iov) as bigint), 0);
  iovec.writeBigUInt64LE(BigInt(iov.length), 8);
  const msg = Buffer.alloc(MSGHDR_BYTES);
  msg.writeBigUInt64LE(BigInt(koffi.address(iovec) as bigint), 16);
  msg.writeBigUInt64LE(1n, 24);
  if (control && control.length > 0) {
    msg.writeBigUInt64LE(BigInt(koffi.address(control) as bigint), 32);
    msg.writeBigUInt64LE(BigInt(control.length), 40);
  }
  // `keep` holds every buffer the kernel reads through a raw address until the call returns.
  return { msg, keep: [iov, iovec, ...(control ? [control] : [])] };
}

/** Parse every cmsg in a received control buffer; returns the SCM_RIGHTS fds in order. */
function parseRights(control: Buffer, controllen: number): number[] {
  const fds: number[] = [];
  let off = 0;
  while (off + CMSG_HDR_BYTES <= controllen) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < CMSG_HDR_BYTES || off + len > controllen) break;
    const level = control.readInt32LE(off + 8);
    const type = control.readInt32LE(off + 12);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR_BYTES; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    }
    off += cmsgAlign(len);
  }
  return fds;
}

function socketType(fd: number): number {
  const val = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  if ((getsockoptFn(fd, SOL_SOCKET, SO_TYPE, val, len) as number) < 0) throw sysError('getsockopt(SO_TYPE)', errno(), 'is this a socket?');
  return val.readInt32LE(0);
}

// ---------------------------------------------------------------------------------------------------------
// Sync send / receive on an fd (blocking or non-blocking: EAGAIN is waited out with poll)

export interface SendOptions {
  /** Refuse payloads whose JSON is larger than this (default 64 KiB, at most 16 MiB). */
  maxPayloadBytes?: number;
  /** Give up when the socket stays full this long (default 5 s). */
  timeoutMs?: number;
}

export interface RecvOptions {
  /** Accept at most this many fds (default 16, at most 253). More → CTRUNC, and all received fds are closed. */
  maxFds?: number;
  /** Accept at most this many payload bytes (default 64 KiB, at most 16 MiB). */
  maxPayloadBytes?: number;
  /** Wait at most this long for a frame to start (default: forever). 0 = only what is already queued. */
  timeoutMs?: number;
  /** Once a frame has started on a stream socket, wait at most this long for the rest (default 5 s). */
  frameTimeoutMs?: number;
}

export interface FdMessage {
  /** Received fds, close-on-exec, in the order the sender listed them. The caller owns (and closes) them. */
  fds: number[];
  payload: unknown;
}

function encodeFrame(fds: readonly number[], payload: unknown, maxPayload: number): Buffer {
  checkFds(fds);
  let json: string | undefined;
  try {
    json = JSON.stringify(payload ?? null);
  } catch (e) {
    throw new FdPassError('BAD_PAYLOAD', `payload is not JSON-serialisable: ${(e as Error).message}`);
  }
  const body = Buffer.from(json ?? 'null', 'utf8');
  if (body.length > maxPayload) {
    throw new FdPassError('PAYLOAD_TOO_LARGE', `payload is ${body.length} bytes, limit ${maxPayload}`, { expected: maxPayload, got: body.length });
  }
  const frame = Buffer.alloc(HEADER_BYTES + body.length);
  frame.writeUInt32LE(FRAME_MAGIC, 0);
  frame.writeUInt16LE(FRAME_VERSION, 4);
  frame.writeUInt16LE(fds.length, 6);
  frame.writeUInt32LE(body.length, 8);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

function limit(value: number | undefined, def: number, max: number, what: string): number {
  const v = value ?? def;
  if (!Number.isInteger(v) || v < 0 || v > max) throw new FdPassError('BAD_ARGUMENT', `${what} must be an integer in [0, ${max}], got ${v}`);
  return v;
}

/**
 * Send `fds` and a JSON `payload` as one frame. The fds stay open in the caller (the kernel duplicates them
 * into the message). Blocks (with poll) while the socket is full.
 */
export function sendFds(sockFd: number, fds: readonly number[], payload: unknown, opts: SendOptions = {}): void {
  const maxPayload = limit(opts.maxPayloadBytes, DEFAULT_MAX_PAYLOAD, HARD_MAX_PAYLOAD, 'maxPayloadBytes');
  const frame = encodeFrame(fds, payload, maxPayload);
  sendAllWithControl(sockFd, frame, rightsControl(fds), opts.timeoutMs ?? 5000);
  log('sent %d fds + %d payload bytes on fd %d', fds.length, frame.length - HEADER_BYTES, sockFd);
}

type RecvOutcome = { kind: 'message'; message: FdMessage } | { kind: 'again' };

/** Read exactly buf.length bytes into buf (stream sockets, after a frame has started). */
function readExact(sockFd: number, buf: Buffer, frameDeadline: number, what: string): void {
  let got = 0;
  while (got < buf.length) {
    const control = Buffer.alloc(cmsgSpace(4 * 8));
    const { msg, keep } = buildMsghdr(buf.subarray(got), control);
    const r = Number(recvmsgFn(sockFd, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    void keep;
    if (r > 0) {
      // Fds can only ride on a frame's first byte; any found mid-frame come from a misbehaving peer: close them.
      const stray = parseRights(control, Number(msg.readBigUInt64LE(40)));
      if (stray.length > 0) {
        log('closing %d stray fds received inside a frame', stray.length);
        closeQuietly(stray);
      }
      got += r;
      continue;
    }
    if (r === 0) throw new FdPassError('TRUNCATED', `peer closed after ${got} of ${buf.length} ${what} bytes`, { expected: buf.length, got });
    const e = errno();
    if (e === EINTR) continue;
    if (e !== EAGAIN) throw sysError('recvmsg', e);
    const left = msLeft(frameDeadline);
    if (left === 0 || pollOne(sockFd, POLLIN, left) === 0) {
      throw new FdPassError('TRUNCATED', `timed out after ${got} of ${buf.length} ${what} bytes`, { expected: buf.length, got });
    }
  }
}

/** One non-blocking attempt to receive a frame. */
function tryRecvOnce(sockFd: number, opts: RecvOptions): RecvOutcome {
  const maxFds = limit(opts.maxFds, 16, MAX_FDS_PER_MESSAGE, 'maxFds');
  const maxPayload = limit(opts.maxPayloadBytes, DEFAULT_MAX_PAYLOAD, HARD_MAX_PAYLOAD, 'maxPayloadBytes');
  const stream = socketType(sockFd) === SOCK_STREAM;
  // Datagram-like sockets: read the whole frame at once (+1 byte so oversize shows as MSG_TRUNC even if the
  // kernel did not flag it). Streams: read the header only, so we never consume the next frame's bytes.
  const first = Buffer.alloc(stream ? HEADER_BYTES : HEADER_BYTES + maxPayload + 1);
  const control = Buffer.alloc(cmsgSpace(4 * Math.max(1, maxFds)));
  const { msg, keep } = buildMsghdr(first, control);
  let r: number;
  for (;;) {
    r = Number(recvmsgFn(sockFd, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    if (r >= 0) break;
    const e = errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return { kind: 'again' };
    throw sysError('recvmsg', e);
  }
  void keep;
  const fds = parseRights(control, Number(msg.readBigUInt64LE(40)));
  const flags = msg.readInt32LE(48);
  try {
    if (r === 0 && fds.length === 0) throw new FdPassError('EOF', 'peer closed the socket before sending a frame');
    if (flags & MSG_CTRUNC) {
      throw new FdPassError('CTRUNC', `sender passed more fds than the ${maxFds} accepted (MSG_CTRUNC); extras were dropped`, { expected: maxFds, got: fds.length });
    }
    let header = first.subarray(0, Math.min(r, HEADER_BYTES));
    if (header.length < HEADER_BYTES) {
      if (!stream) throw new FdPassError('TRUNCATED', `message of ${r} bytes is shorter than the ${HEADER_BYTES}-byte header`, { expected: HEADER_BYTES, got: r });
      const full = Buffer.alloc(HEADER_BYTES);
      header.copy(full);
      readExact(sockFd, full.subarray(header.length), deadlineOf(opts.frameTimeoutMs ?? 5000), 'header');
      header = full;
    }
    const magic = header.readUInt32LE(0);
    if (magic !== FRAME_MAGIC) {
      throw new FdPassError('BAD_MAGIC', `not an fd-passing frame: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x${FRAME_MAGIC.toString(16)} ("PCFD")`, { expected: FRAME_MAGIC, got: magic });
    }
    const version = header.readUInt16LE(4);
    if (version !== FRAME_VERSION) throw new FdPassError('BAD_VERSION', `frame version ${version}, this side speaks ${FRAME_VERSION}`, { expected: FRAME_VERSION, got: version });
    const fdCount = header.readUInt16LE(6);
    const payloadLen = header.readUInt32LE(8);
    if (payloadLen > maxPayload) {
      throw new FdPassError('PAYLOAD_TOO_LARGE', `frame announces ${payloadLen} payload bytes, limit ${maxPayload}`, { expected: maxPayload, got: payloadLen });
    }
    if (fdCount !== fds.length) {
      throw new FdPassError('FD_COUNT_MISMATCH', `frame announces ${fdCount} fds, ${fds.length} arrived`, { expected: fdCount, got: fds.length });
    }
    let body: Buffer;
    if (stream) {
      body = Buffer.alloc(payloadLen);
      readExact(sockFd, body, deadlineOf(opts.frameTimeoutMs ?? 5000), 'payload');
    } else {
      if (flags & MSG_TRUNC || r > HEADER_BYTES + payloadLen) {
        throw new FdPassError('TRUNCATED', `message longer than its header says (${r} bytes read, header says ${HEADER_BYTES + payloadLen})`, { expected: HEADER_BYTES + payloadLen, got: r });
      }
      if (r < HEADER_BYTES + payloadLen) {
        throw new FdPassError('TRUNCATED', `message has ${r - HEADER_BYTES} of ${payloadLen} payload bytes`, { expected: payloadLen, got: r - HEADER_BYTES });
      }
      body = first.subarray(HEADER_BYTES, HEADER_BYTES + payloadLen);
    }
    let payload: unknown;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch (e) {
      throw new FdPassError('BAD_PAYLOAD', `payload is not valid JSON: ${(e as Error).message}`);
    }
    log('received %d fds + %d payload bytes on fd %d', fds.length, payloadLen, sockFd);
    return { kind: 'message', message: { fds, payload } };
  } catch (e) {
    closeQuietly(fds);
    throw e;
  }
}

/**
 * Receive one frame: the fds (close-on-exec, owned by the caller) and the JSON payload. Waits with poll
 * (blocking this thread) up to `timeoutMs` (default forever). Bad frames throw FdPassError after closing
 * every fd that arrived with them.
 */
export function recvFds(sockFd: number, opts: RecvOptions = {}): FdMessage {
  const deadline = deadlineOf(opts.timeoutMs);
  for (;;) {
    const out = tryRecvOnce(sockFd, opts);
    if (out.kind === 'message') return out.message;
    const left = msLeft(deadline);
    const rev = left === 0 ? 0 : pollOne(sockFd, POLLIN, left);
    if (rev === 0) throw new FdPassError('ETIMEDOUT', `no frame within ${opts.timeoutMs} ms`);
    if (rev & POLLNVAL) throw new FdPassError('EBADF', `fd ${sockFd} is not open`);
  }
}

/** Non-blocking receive: a frame if one is queued, else null. */
export function tryRecvFds(sockFd: number, opts: RecvOptions = {}): FdMessage | null {
  const out = tryRecvOnce(sockFd, opts);
  return out.kind === 'message' ? out.message : null;
}

// ---------------------------------------------------------------------------------------------------------
// Raw mode: bytes + fds with no PCFD frame. The postcopy-daemon control socket speaks a bare JSON line
// (docs/migration-protocol.md) and Firecracker sends a bare JSON array with its uffd; both ride one sendmsg with the fds
// on the first byte. The receiver takes fds from the first recvmsg that returns data only (later fds are a
// misbehaving peer's: closed), stops at a delimiter or a caller-defined end, and closes every fd it took
// whenever the message turns out bad, is cut short, or is abandoned.

function rightsControl(fds: readonly number[]): Buffer | null {
  if (fds.length === 0) return null;
  const control = Buffer.alloc(cmsgSpace(4 * fds.length));
  control.writeBigUInt64LE(BigInt(CMSG_HDR_BYTES + 4 * fds.length), 0);
  control.writeInt32LE(SOL_SOCKET, 8);
  control.writeInt32LE(SCM_RIGHTS, 12);
  fds.forEach((fd, i) => control.writeInt32LE(fd, CMSG_HDR_BYTES + 4 * i));
  return control;
}

function checkFds(fds: readonly number[]): void {
  if (!Array.isArray(fds) || fds.some((fd) => !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff)) {
    throw new FdPassError('BAD_ARGUMENT', `fds must be non-negative integers, got ${JSON.stringify(fds)}`);
  }
  if (fds.length > MAX_FDS_PER_MESSAGE) {
    throw new FdPassError('TOO_MANY_FDS', `${fds.length} fds in one message; the kernel allows ${MAX_FDS_PER_MESSAGE}`, { expected: MAX_FDS_PER_MESSAGE, got: fds.length });
  }
}

/** sendmsg all of `bytes`, the control message (fds) on the first chunk; EAGAIN waited out with poll. */
function sendAllWithControl(sockFd: number, bytes: Uint8Array, control: Buffer | null, timeoutMs: number): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const deadline = deadlineOf(timeoutMs);
  let sent = 0;
  while (sent < buf.length) {
    // The fds go with the first chunk only; a stream socket may accept the bytes in pieces.
    const { msg, keep } = buildMsghdr(buf.subarray(sent), sent === 0 ? control : null);
    const r = Number(sendmsgFn(sockFd, msg, MSG_NOSIGNAL | MSG_DONTWAIT));
    void keep;
    if (r >= 0) {
      sent += r;
      continue;
    }
    const e = errno();
    if (e === EINTR) continue;
    if (e !== EAGAIN) throw sysError('sendmsg', e, e === 90 ? 'message larger than the socket buffer: use a stream socket or a smaller payload' : '');
    const left = msLeft(deadline);
    if (left === 0 || pollOne(sockFd, POLLOUT, left) === 0) {
      throw new FdPassError('ETIMEDOUT', `socket stayed full for ${timeoutMs} ms after ${sent} of ${buf.length} bytes`);
    }
  }
}

/**
 * Raw mode: send `bytes` as they are (no frame) with `fds` as SCM_RIGHTS on the first byte, in one sendmsg
 * when the socket takes it whole. Blocks (with poll) while the socket is full, up to `timeoutMs` (5 s).
 */
export function sendBytesWithFds(sockFd: number, fds: readonly number[], bytes: Uint8Array, opts: { timeoutMs?: number } = {}): void {
  checkFds(fds);
  if (bytes.length === 0) throw new FdPassError('BAD_ARGUMENT', 'raw mode needs at least one byte to carry the fds');
  sendAllWithControl(sockFd, bytes, rightsControl(fds), opts.timeoutMs ?? 5000);
  log('sent %d fds + %d raw bytes on fd %d', fds.length, bytes.length, sockFd);
}

export interface RawRecvOptions {
  /** Accept at most this many fds (default 16, at most 253). More → CTRUNC, and all received fds are closed. */
  maxFds?: number;
  /** Accept at most this many bytes before the message is complete (default 64 KiB, at most 16 MiB). */
  maxBytes?: number;
  /** The message ends with this byte (default '\n'), included in `bytes`. Ignored when `complete` is given. */
  delimiter?: number;
  /**
   * Decides where the message ends: its length once `received` holds a complete message, undefined while
   * more bytes are needed. May throw to reject the bytes (the fds are closed and the error passed on).
   */
  complete?: (received: Buffer) => number | undefined;
}

export interface RawFdMessage {
  /** Fds that came with the first bytes (close-on-exec). The caller owns (and closes) them. */
  fds: number[];
  /** The message, delimiter included. */
  bytes: Buffer;
  /** Bytes received after the message's end (a stream peer that sent more): the caller's to handle. */
  rest: Buffer;
}

/**
 * Incremental raw-mode receiver on a (typically non-blocking) socket: `poll()` never blocks; call it when
 * the fd is readable (see recvBytesWithFds / recvBytesWithFdsAsync for the waiting). One instance per
 * message.
 */
export class RawFdReceiver {
  private readonly data: Buffer;
  private got = 0;
  private fds: number[] = [];
  private firstData = true;
  private readonly maxFds: number;
  private readonly control: Buffer;
  private readonly complete: (received: Buffer) => number | undefined;

  constructor(readonly sockFd: number, opts: RawRecvOptions = {}) {
    this.maxFds = limit(opts.maxFds, 16, MAX_FDS_PER_MESSAGE, 'maxFds');
    this.data = Buffer.alloc(limit(opts.maxBytes, DEFAULT_MAX_PAYLOAD, HARD_MAX_PAYLOAD, 'maxBytes'));
    this.control = Buffer.alloc(cmsgSpace(4 * Math.max(1, this.maxFds)));
    const delim = opts.delimiter ?? 0x0a;
    this.complete = opts.complete ?? ((b) => { const i = b.indexOf(delim); return i < 0 ? undefined : i + 1; });
  }

  /** Bytes and fds received so far (for messages). */
  get progress(): string {
    return `${this.got} bytes, ${this.fds.length} fds`;
  }

  /** The message when complete, null when more bytes are needed (EAGAIN). Throws FdPassError (fds closed). */
  poll(): RawFdMessage | null {
    try {
      for (;;) {
        if (!this.recvOnce()) return null;
        const received = this.data.subarray(0, this.got);
        const end = this.complete(received);
        if (end !== undefined) {
          const bytes = Buffer.from(received.subarray(0, end));
          const rest = Buffer.from(received.subarray(end));
          log('received %d fds + %d raw bytes on fd %d', this.fds.length, bytes.length, this.sockFd);
          return { fds: this.fds.splice(0), bytes, rest };
        }
      }
    } catch (e) {
      this.abandon();
      throw e;
    }
  }

  /** Close whatever fds arrived (timeout, error, giving up). */
  abandon(): void {
    closeQuietly(this.fds.splice(0));
  }

  /** One recvmsg; false on EAGAIN. */
  private recvOnce(): boolean {
    if (this.got >= this.data.length) {
      throw new FdPassError('PAYLOAD_TOO_LARGE', `message not complete within ${this.data.length} bytes`, { expected: this.data.length, got: this.got });
    }
    const { msg, keep } = buildMsghdr(this.data.subarray(this.got), this.control);
    let r: number;
    for (;;) {
      r = Number(recvmsgFn(this.sockFd, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
      if (r >= 0) break;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      throw sysError('recvmsg', e);
    }
    void keep;
    const fds = parseRights(this.control, Number(msg.readBigUInt64LE(40)));
    const flags = msg.readInt32LE(48);
    if (this.firstData && r > 0) this.fds.push(...fds);
    else if (fds.length > 0) {
      // Fds ride on the first byte; any found later come from a misbehaving peer: close them.
      log('closing %d stray fds received after the first bytes', fds.length);
      closeQuietly(fds);
    }
    if (flags & MSG_CTRUNC) {
      throw new FdPassError('CTRUNC', `sender passed more fds than the ${this.maxFds} accepted (MSG_CTRUNC); extras were dropped`, { expected: this.maxFds, got: fds.length });
    }
    if (r === 0) {
      if (this.got === 0 && this.fds.length === 0) throw new FdPassError('EOF', 'peer closed the socket without sending anything');
      throw new FdPassError('TRUNCATED', `peer closed after ${this.got} bytes of an incomplete message`, { got: this.got });
    }
    this.firstData = false;
    this.got += r;
    return true;
  }
}

/** Raw-mode receive, waiting in poll (this thread blocks) up to `timeoutMs` (default forever). */
export function recvBytesWithFds(sockFd: number, opts: RawRecvOptions & { timeoutMs?: number } = {}): RawFdMessage {
  const rx = new RawFdReceiver(sockFd, opts);
  const deadline = deadlineOf(opts.timeoutMs);
  for (;;) {
    const m = rx.poll();
    if (m) return m;
    const left = msLeft(deadline);
    const rev = left === 0 ? 0 : pollOne(sockFd, POLLIN, left);
    if (rev === 0 || rev & POLLNVAL) {
      const p = rx.progress;
      rx.abandon();
      if (rev & POLLNVAL) throw new FdPassError('EBADF', `fd ${sockFd} is not open`);
      throw new FdPassError('ETIMEDOUT', `no complete message within ${opts.timeoutMs} ms (${p} so far)`, { got: p });
    }
  }
}

/** Raw-mode receive without blocking the event loop (waitFd between non-blocking attempts). */
export async function recvBytesWithFdsAsync(sockFd: number, opts: RawRecvOptions & WaitOptions = {}): Promise<RawFdMessage> {
  const rx = new RawFdReceiver(sockFd, opts);
  const deadline = deadlineOf(opts.timeoutMs);
  try {
    for (;;) {
      const m = rx.poll();
      if (m) return m;
      const left = msLeft(deadline);
      const timedOut = (): FdPassError => new FdPassError('ETIMEDOUT', `no complete message within ${opts.timeoutMs} ms (${rx.progress} so far)`, { got: rx.progress });
      if (left === 0) throw timedOut();
      await waitFd(sockFd, 'readable', { ...opts, timeoutMs: left < 0 ? undefined : left }).catch((e: FdPassError) => {
        if (e.code === 'ETIMEDOUT') throw timedOut();
        if (e.code === 'ABORTED') throw new FdPassError('ABORTED', `receive aborted (${rx.progress} so far)`, { got: rx.progress });
        throw e;
      });
    }
  } catch (e) {
    rx.abandon();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sockets made with koffi (non-blocking, close-on-exec), and event-loop-friendly waiting

export type UnixSocketType = 'seqpacket' | 'stream';
const typeCode = (t: UnixSocketType | undefined): number => (t === 'stream' ? SOCK_STREAM : SOCK_SEQPACKET);

function sockaddrUn(path: string): Buffer {
  // A leading '@' (or NUL) names an abstract socket: no file, vanishes with its last fd.
  const abstract = path.startsWith('@') || path.startsWith('\0');
  const name = Buffer.from(abstract ? path.slice(1) : path, 'utf8');
  const max = 107; // sun_path is 108 bytes: a filesystem path needs its trailing NUL, an abstract name its leading one
  if (name.length === 0 || name.length > max) throw new FdPassError('BAD_ARGUMENT', `unix socket path must be 1..${max} bytes, got ${name.length}: ${path}`);
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, abstract ? 3 : 2);
  return addr.subarray(0, abstract ? 3 + name.length : 2 + name.length + 1);
}

/** A connected pair of Unix sockets (non-blocking, close-on-exec unless asked otherwise). */
export function unixSocketPair(type: UnixSocketType = 'seqpacket', opts: { closeOnExec?: boolean; nonBlocking?: boolean } = {}): [number, number] {
  const sv = Buffer.alloc(8);
  const flags = (opts.closeOnExec === false ? 0 : SOCK_CLOEXEC) | (opts.nonBlocking === false ? 0 : SOCK_NONBLOCK);
  if ((socketpairFn(AF_UNIX, typeCode(type) | flags, 0, sv) as number) < 0) throw sysError('socketpair', errno());
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** Bind + listen on a Unix socket path (an existing socket file there is replaced when `replace`). */
export function listenUnix(path: string, opts: { type?: UnixSocketType; backlog?: number; replace?: boolean } = {}): number {
  const addr = sockaddrUn(path);
  const fd = socketFn(AF_UNIX, typeCode(opts.type) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw sysError('socket', errno());
  if (opts.replace && !path.startsWith('@')) unlinkFn(path);
  if ((bindFn(fd, addr, addr.length) as number) < 0) {
    const e = errno();
    closeFn(fd);
    throw sysError('bind', e, e === 98 ? `${path} exists: remove it or pass { replace: true }` : path);
  }
  if ((listenFn(fd, opts.backlog ?? 16) as number) < 0) {
    const e = errno();
    closeFn(fd);
    throw sysError('listen', e);
  }
  return fd;
}

/** Accept one connection if one is pending (non-blocking, close-on-exec fd), else null. */
export function tryAcceptUnix(listenFd: number): number | null {
  for (;;) {
    const fd = accept4Fn(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC) as number;
    if (fd >= 0) return fd;
    const e = errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return null;
    throw sysError('accept4', e);
  }
}

/** Connect to a Unix socket path; the returned fd is non-blocking and close-on-exec. */
export function connectUnix(path: string, opts: { type?: UnixSocketType; timeoutMs?: number } = {}): number {
  const addr = sockaddrUn(path);
  const fd = socketFn(AF_UNIX, typeCode(opts.type) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw sysError('socket', errno());
  const deadline = deadlineOf(opts.timeoutMs ?? 5000);
  try {
    for (;;) {
      if ((connectFn(fd, addr, addr.length) as number) === 0) return fd;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EINPROGRESS) {
        if (pollOne(fd, POLLOUT, msLeft(deadline)) === 0) throw new FdPassError('ETIMEDOUT', `connect(${path}) timed out`);
        return fd;
      }
      // A full backlog makes a non-blocking Unix connect fail with EAGAIN: retry briefly until the deadline.
      if (e === EAGAIN) {
        if (msLeft(deadline) === 0) throw new FdPassError('ETIMEDOUT', `connect(${path}): listener backlog full for ${opts.timeoutMs ?? 5000} ms`);
        pollOne(-1, 0, 2); // a 2 ms sleep (poll on no fd)
        continue;
      }
      throw sysError('connect', e, path);
    }
  } catch (err) {
    closeFn(fd);
    throw err;
  }
}

export interface WaitOptions {
  /** Give up after this long (default: wait forever). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Longest sleep between readiness checks (default 10 ms; checks start at 0.5 ms and back off). */
  maxPollIntervalMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Wait until `fd` is readable (or writable) without blocking the event loop. libuv cannot watch the fd for
 * us without also reading from it, so we poll(fd, 0) on a short, backing-off timer. Control-plane latency
 * is a few ms at worst, which is fine for a handshake; the fault path never uses this.
 */
export async function waitFd(fd: number, what: 'readable' | 'writable', opts: WaitOptions = {}): Promise<void> {
  const events = what === 'readable' ? POLLIN : POLLOUT;
  const deadline = deadlineOf(opts.timeoutMs);
  let interval = 0.5;
  for (;;) {
    if (opts.signal?.aborted) throw new FdPassError('ABORTED', `wait for fd ${fd} to be ${what} aborted`);
    const rev = pollOne(fd, events, 0);
    if (rev & POLLNVAL) throw new FdPassError('EBADF', `fd ${fd} is not open`);
    if (rev & (events | POLLERR | POLLHUP)) return;
    if (msLeft(deadline) === 0) throw new FdPassError('ETIMEDOUT', `fd ${fd} not ${what} within ${opts.timeoutMs} ms`);
    await sleep(interval);
    interval = Math.min(interval * 2, opts.maxPollIntervalMs ?? 10);
  }
}

/** One end of a connected Unix socket, for use from the event loop. Owns its fd. */
export class FdChannel {
  private closed = false;
  constructor(readonly fd: number) {}

  /** Connect to a listening path (see FdServer). */
  static connect(path: string, opts: { type?: UnixSocketType; timeoutMs?: number } = {}): FdChannel {
    return new FdChannel(connectUnix(path, opts));
  }

  /** Two connected channels (e.g. keep one, give the other's fd to a child through stdio). */
  static pair(type: UnixSocketType = 'seqpacket'): [FdChannel, FdChannel] {
    const [a, b] = unixSocketPair(type);
    return [new FdChannel(a), new FdChannel(b)];
  }

  /**
   * Take over the fd of a net.Socket (a dup; the net.Socket is destroyed). Only safe while libuv has not
   * read from it: a socket from `net.createServer({ pauseOnConnect: true })` that was never resumed.
   */
  static adopt(socket: net.Socket): FdChannel {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) throw new FdPassError('BAD_ARGUMENT', 'net.Socket has no fd (not connected, or not a Unix/TCP handle)');
    const own = fcntlFn(fd, F_DUPFD_CLOEXEC, 0) as number;
    if (own < 0) throw sysError('fcntl(F_DUPFD_CLOEXEC)', errno());
    socket.destroy();
    return new FdChannel(own);
  }

  async send(fds: readonly number[], payload: unknown, opts: SendOptions & WaitOptions = {}): Promise<void> {
    this.assertOpen();
    await waitFd(this.fd, 'writable', opts);
    sendFds(this.fd, fds, payload, opts);
  }

  async recv(opts: RecvOptions & WaitOptions = {}): Promise<FdMessage> {
    this.assertOpen();
    const deadline = deadlineOf(opts.timeoutMs);
    for (;;) {
      const msg = tryRecvFds(this.fd, opts);
      if (msg) return msg;
      const left = msLeft(deadline);
      if (left === 0) throw new FdPassError('ETIMEDOUT', `no frame within ${opts.timeoutMs} ms`);
      await waitFd(this.fd, 'readable', { ...opts, timeoutMs: left < 0 ? undefined : left });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFn(this.fd);
  }

  private assertOpen(): void {
    if (this.closed) throw new FdPassError('EBADF', 'channel is closed');
  }
}

/** A listening Unix socket whose connections are FdChannels; accept() does not block the event loop. */
export class FdServer {
  private closed = false;
  private constructor(readonly fd: number, readonly path: string) {}

  static listen(path: string, opts: { type?: UnixSocketType; backlog?: number; replace?: boolean } = {}): FdServer {
    return new FdServer(listenUnix(path, opts), path);
  }

  async accept(opts: WaitOptions = {}): Promise<FdChannel> {
    const deadline = deadlineOf(opts.timeoutMs);
    for (;;) {
      if (this.closed) throw new FdPassError('EBADF', 'server is closed');
      const fd = tryAcceptUnix(this.fd);
      if (fd !== null) return new FdChannel(fd);
      const left = msLeft(deadline);
      if (left === 0) throw new FdPassError('ETIMEDOUT', `no connection on ${this.path} within ${opts.timeoutMs} ms`);
      await waitFd(this.fd, 'readable', { ...opts, timeoutMs: left < 0 ? undefined : left });
    }
  }

  /** Close the socket and remove its path. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFn(this.fd);
    if (!this.path.startsWith('@')) unlinkFn(this.path);
  }
}
