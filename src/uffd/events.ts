// Reading uffd messages in batches into one reusable buffer, with accessors that decode a message in place
// (no per-event object on the hot path), plus the eventfd/poll plumbing a fault loop waits on.
import {
  UFFD_MSG_SIZE, UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP,
  UFFD_PAGEFAULT_FLAG_WRITE, UFFD_PAGEFAULT_FLAG_WP, UFFD_PAGEFAULT_FLAG_MINOR,
  EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, POLLIN, POLLFD_SIZE, POLLERR, POLLHUP, POLLNVAL, O_NONBLOCK,
} from './abi.js';
import { errno, readFn, writeFn, pollFn, closeFn, libc } from './libc.js';
import { addressOf } from './memory.js';
import { Errno, SyscallError, UffdError, uffdError } from './errors.js';

const TWO32 = 4294967296;

export type UffdEventKind = 'pagefault' | 'fork' | 'remap' | 'remove' | 'unmap' | 'unknown';

export type UffdEvent =
  | { kind: 'pagefault'; address: number; flags: number; write: boolean; wp: boolean; minor: boolean; threadId: number }
  | { kind: 'fork'; ufd: number }
  | { kind: 'remap'; from: number; to: number; len: number }
  | { kind: 'remove'; start: number; end: number }
  | { kind: 'unmap'; start: number; end: number }
  | { kind: 'unknown'; event: number };

export {
  UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP,
};

const preadv2Fn = libc.func('preadv2', 'intptr_t', ['int', 'uintptr_t', 'int', 'int64_t', 'int']) as (
  fd: number, iov: number, n: number, offset: number, flags: number) => number;
const RWF_NOWAIT = 0x8;

/**
 * Does this uffd take per-call non-blocking reads (preadv2 RWF_NOWAIT; the file needs FMODE_NOWAIT)? Probed
 * with a 1-byte read, which consumes nothing: EINVAL (too short for a message) = yes, EOPNOTSUPP = no.
 */
function takesNoWait(fd: number, iov: Buffer): boolean {
  const probe = Buffer.alloc(16);
  probe.writeBigUInt64LE(iov.readBigUInt64LE(0), 0); // same buffer, 1 byte
  probe.writeBigUInt64LE(1n, 8);
  const r = preadv2Fn(fd, addressOf(probe), 1, -1, RWF_NOWAIT);
  return r < 0 && errno() === Errno.EINVAL;
}

/**
 * Batch reader over a userfaultfd. `read()` fills the buffer with up to `capacity` messages; the accessors
 * decode message i from the buffer; it returns 0 when nothing is pending.
 * A fault loop polls before it reads, and poll() on a blocking uffd answers POLLERR while the read() that
 * follows blocks (a stop request would never be seen). So by default the constructor makes the fd
 * non-blocking (`blocking: 'set-nonblocking'`, see ensureNonBlocking); 'throw' refuses a blocking fd with a
 * clear error instead, and 'allow' keeps it blocking for a reader that wants read() to wait (no poll).
 */
export class UffdEventReader {
  readonly capacity: number;
  /** Messages decoded by the last read(). */
  count = 0;
  readonly buffer: Buffer;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;

  constructor(readonly fd: number, capacity = 64, opts: { blocking?: 'set-nonblocking' | 'throw' | 'allow' } = {}) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 65536) throw new RangeError(`capacity must be 1..65536, got ${capacity}`);
    const policy = opts.blocking ?? 'set-nonblocking';
    if (policy !== 'allow') ensureNonBlocking(fd, policy === 'throw' ? 'throw' : 'set');
    this.capacity = capacity;
    const ab = new ArrayBuffer(capacity * UFFD_MSG_SIZE);
    this.buffer = Buffer.from(ab);
    this.u8 = new Uint8Array(ab);
    this.u32 = new Uint32Array(ab);
    this.iov = Buffer.alloc(16);
    this.iov.writeBigUInt64LE(BigInt(addressOf(this.buffer)), 0);
    this.iov.writeBigUInt64LE(BigInt(this.buffer.length), 8);
    this.iovAddr = addressOf(this.iov);
    this.nowait = takesNoWait(fd, this.iov);
  }

  private readonly iov: Buffer;
  private readonly iovAddr: number;
  private readonly nowait: boolean;

  /**
   * Read pending messages without ever waiting; returns their count (0 on EAGAIN/EINTR). Throws only on a
   * real error (EBADF...). Where the kernel takes RWF_NOWAIT on a uffd (6.x) this holds even on a blocking fd.
   */
  read(): number {
    if (this.nowait) return this.finish(preadv2Fn(this.fd, this.iovAddr, 1, -1, RWF_NOWAIT));
    return this.finish(readFn(this.fd, this.buffer, this.buffer.length));
  }

  /**
   * Wait for messages (the fd must be blocking, and then poll() on it no longer works: see the class
   * comment); returns their count, 0 when a signal interrupted the wait.
   */
  readBlocking(): number {
    return this.finish(readFn(this.fd, this.buffer, this.buffer.length));
  }

  /** Does read() stay non-blocking on a blocking fd (RWF_NOWAIT)? Needed before making the fd blocking. */
  get readsWithoutWaiting(): boolean {
    return this.nowait;
  }

  private finish(n: number): number {
    if (n < 0) {
      const e = errno();
      this.count = 0;
      if (e === Errno.EAGAIN || e === Errno.EINTR) return 0;
      throw uffdError({ op: 'read(userfaultfd)', errno: e });
    }
    // The kernel only returns whole messages.
    this.count = (n / UFFD_MSG_SIZE) | 0;
    return this.count;
  }

  /** Raw event code (UFFD_EVENT_*). */
  kind(i: number): number { return this.u8[i * UFFD_MSG_SIZE]; }
  isPagefault(i: number): boolean { return this.u8[i * UFFD_MSG_SIZE] === UFFD_EVENT_PAGEFAULT; }
  /** Pagefault address (page aligned unless EXACT_ADDRESS). */
  address(i: number): number { const w = i * 8; return this.u32[w + 5] * TWO32 + this.u32[w + 4]; }
  /** Pagefault flags (UFFD_PAGEFAULT_FLAG_*). */
  faultFlags(i: number): number { return this.u32[i * 8 + 2]; }
  isWrite(i: number): boolean { return (this.u32[i * 8 + 2] & UFFD_PAGEFAULT_FLAG_WRITE) !== 0; }
  isWp(i: number): boolean { return (this.u32[i * 8 + 2] & UFFD_PAGEFAULT_FLAG_WP) !== 0; }
  isMinor(i: number): boolean { return (this.u32[i * 8 + 2] & UFFD_PAGEFAULT_FLAG_MINOR) !== 0; }
  /** Faulting thread id (needs THREAD_ID; 0 otherwise). */
  threadId(i: number): number { return this.u32[i * 8 + 6]; }
  /** FORK: the child's new userfaultfd (already installed in this process). */
  forkUfd(i: number): number { return this.u32[i * 8 + 2]; }
  /** REMAP from / to / len; REMOVE and UNMAP start / end (same slots as remap from / to). */
  arg0(i: number): number { const w = i * 8; return this.u32[w + 3] * TWO32 + this.u32[w + 2]; }
  arg1(i: number): number { const w = i * 8; return this.u32[w + 5] * TWO32 + this.u32[w + 4]; }
  arg2(i: number): number { const w = i * 8; return this.u32[w + 7] * TWO32 + this.u32[w + 6]; }

  /** Message i as an object (allocates: for control paths, logs and tests). */
  event(i: number): UffdEvent {
    if (i < 0 || i >= this.count) throw new RangeError(`event ${i} out of range (count ${this.count})`);
    return decodeUffdMsg(this.u8, this.u32, i);
  }

  /** All messages of the last read() as objects. */
  events(): UffdEvent[] {
    const out: UffdEvent[] = [];
    for (let i = 0; i < this.count; i++) out.push(decodeUffdMsg(this.u8, this.u32, i));
    return out;
  }
}

function decodeUffdMsg(u8: Uint8Array, u32: Uint32Array, i: number): UffdEvent {
  const w = i * 8;
  const u64 = (k: number): number => u32[w + k + 1] * TWO32 + u32[w + k];
  const ev = u8[i * UFFD_MSG_SIZE];
  switch (ev) {
    case UFFD_EVENT_PAGEFAULT: {
      const flags = u32[w + 2];
      return { kind: 'pagefault', address: u64(4), flags, write: (flags & UFFD_PAGEFAULT_FLAG_WRITE) !== 0,
        wp: (flags & UFFD_PAGEFAULT_FLAG_WP) !== 0, minor: (flags & UFFD_PAGEFAULT_FLAG_MINOR) !== 0, threadId: u32[w + 6] };
    }
    case UFFD_EVENT_FORK: return { kind: 'fork', ufd: u32[w + 2] };
    case UFFD_EVENT_REMAP: return { kind: 'remap', from: u64(2), to: u64(4), len: u64(6) };
    case UFFD_EVENT_REMOVE: return { kind: 'remove', start: u64(2), end: u64(4) };
    case UFFD_EVENT_UNMAP: return { kind: 'unmap', start: u64(2), end: u64(4) };
    default: return { kind: 'unknown', event: ev };
  }
}

/** Decode one 32-byte uffd_msg from any buffer (tests, fuzzing). Never throws on content. */
export function decodeUffdMessage(bytes: Uint8Array, offset = 0): UffdEvent {
  if (offset < 0 || offset + UFFD_MSG_SIZE > bytes.length) throw new RangeError('uffd_msg needs 32 bytes');
  const copy = new Uint8Array(UFFD_MSG_SIZE);
  copy.set(bytes.subarray(offset, offset + UFFD_MSG_SIZE));
  return decodeUffdMsg(copy, new Uint32Array(copy.buffer), 0);
}

// ---------------------------------------------------------------------------------------------------------
// eventfd and poll

const eventfdFn = libc.func('int eventfd(unsigned int initval, int flags)') as (init: number, flags: number) => number;

/** An eventfd (close-on-exec; non-blocking by default) used to stop or nudge a fault loop. */
export function createEventfd(opts: { initial?: number; nonBlocking?: boolean; semaphore?: boolean } = {}): number {
  const flags = EFD_CLOEXEC | ((opts.nonBlocking ?? true) ? EFD_NONBLOCK : 0) | (opts.semaphore ? EFD_SEMAPHORE : 0);
  const fd = eventfdFn(opts.initial ?? 0, flags);
  if (fd < 0) throw new SyscallError('eventfd', errno());
  return fd;
}

const efdBuf = Buffer.from(new ArrayBuffer(8));
const efdU32 = new Uint32Array(efdBuf.buffer, efdBuf.byteOffset, 2);

/** Add `n` (default 1) to an eventfd counter. */
export function eventfdWrite(fd: number, n = 1): void {
  efdU32[0] = n >>> 0;
  efdU32[1] = (n / TWO32) >>> 0;
  if (writeFn(fd, efdBuf, 8) !== 8) throw new SyscallError('write(eventfd)', errno());
}

/** Read and reset the counter; 0 when non-blocking and nothing was written. */
export function eventfdRead(fd: number): number {
  if (readFn(fd, efdBuf, 8) !== 8) {
    const e = errno();
    if (e === Errno.EAGAIN) return 0;
    throw new SyscallError('read(eventfd)', e);
  }
  return efdU32[1] * TWO32 + efdU32[0];
}

const fcntlFn = libc.func('fcntl', 'int', ['int', 'int', 'int']) as (fd: number, cmd: number, arg: number) => number;
const F_GETFL = 3;
const F_SETFL = 4;

/** The open file description's status flags (F_GETFL). */
function fileStatusFlags(fd: number): number {
  const fl = fcntlFn(fd, F_GETFL, 0);
  if (fl < 0) throw new SyscallError('fcntl(F_GETFL)', errno(), `fd ${fd}`);
  return fl;
}

/**
 * Set or clear O_NONBLOCK on an fd (its open file description: shared with every dup and with the process
 * it came from). See ensureNonBlocking for why a polled userfaultfd needs it.
 */
export function setNonBlocking(fd: number, on = true): void {
  const fl = fileStatusFlags(fd);
  const want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  if (want !== fl && fcntlFn(fd, F_SETFL, want) < 0) throw new SyscallError('fcntl(F_SETFL)', errno(), `fd ${fd}`);
}

/** Is O_NONBLOCK set on `fd`'s open file description? */
export function isNonBlocking(fd: number): boolean {
  return (fileStatusFlags(fd) & O_NONBLOCK) !== 0;
}

/**
 * Make a uffd fit for a poll()-driven fault loop. poll() on a *blocking* userfaultfd always answers POLLERR
 * and the read() that follows blocks until a fault arrives: a loop that also waits for a stop eventfd would
 * hang there. An fd received from elsewhere (SCM_RIGHTS, pidfd_getfd, a FORK event of a blocking parent)
 * keeps its creator's flags, so `policy` says what to do when O_NONBLOCK is missing: 'set' it (the flag
 * lives on the open file description, shared with every holder — harmless for a uffd nobody else reads),
 * or 'throw' a UffdError that says so. Returns whether the fd was already non-blocking.
 */
export function ensureNonBlocking(fd: number, policy: 'set' | 'throw' = 'set'): boolean {
  if (isNonBlocking(fd)) return true;
  if (policy === 'throw') {
    throw new UffdError({
      op: 'poll(userfaultfd)', errno: Errno.EINVAL,
      hint: `uffd ${fd} is blocking: poll() would answer POLLERR and read() would block; create it with nonBlocking: true or set O_NONBLOCK`,
    });
  }
  setNonBlocking(fd, true);
  return false;
}

export function closeFd(fd: number): void {
  if (fd >= 0) closeFn(fd);
}

/**
 * poll(2) over a fixed set of fds with a preallocated pollfd array: `wait()` allocates nothing, so a fault
 * loop can call it per iteration. POLLERR/POLLHUP/POLLNVAL count as readiness (read() then reports it).
 * A userfaultfd must be O_NONBLOCK to be polled (the kernel answers POLLERR for a blocking one).
 */
export class Poller {
  private readonly buf: Buffer;
  private readonly i32: Int32Array;
  private readonly i16: Int16Array;

  constructor(readonly fds: readonly number[], events = POLLIN) {
    const ab = new ArrayBuffer(Math.max(1, fds.length) * POLLFD_SIZE);
    this.buf = Buffer.from(ab);
    this.i32 = new Int32Array(ab);
    this.i16 = new Int16Array(ab);
    fds.forEach((fd, k) => { this.i32[k * 2] = fd; this.i16[k * 4 + 2] = events; });
  }

  /** Wait up to timeoutMs (-1 = forever). Returns the number of ready fds, 0 on timeout or EINTR. */
  wait(timeoutMs: number): number {
    for (let k = 0; k < this.fds.length; k++) this.i16[k * 4 + 3] = 0;
    const r = pollFn(this.buf, this.fds.length, timeoutMs);
    if (r < 0) {
      const e = errno();
      if (e === Errno.EINTR) return 0;
      throw new SyscallError('poll', e);
    }
    return r;
  }

  /** Forget the last wait()'s results (when the caller skips a wait). */
  clear(): void {
    for (let k = 0; k < this.fds.length; k++) this.i16[k * 4 + 3] = 0;
  }

  /** revents of the k-th fd after wait(). */
  revents(k: number): number { return this.i16[k * 4 + 3]; }
  /** Is the k-th fd readable (or in error, which read() will report)? */
  ready(k: number): boolean { return (this.i16[k * 4 + 3] & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) !== 0; }
}

/** One-shot poll for readability: the fds that are ready (allocates; for control paths). */
export function pollIn(fds: readonly number[], timeoutMs: number): number[] {
  const p = new Poller(fds);
  if (p.wait(timeoutMs) === 0) return [];
  return fds.filter((_, k) => p.ready(k));
}
