// Typed errors for the uffd layer. Every error carries the errno name as `code` so callers can switch on it,
// plus `done` (bytes the kernel completed before failing) for range ioctls.
import { strerror } from './libc.js';

/** errno values (Linux generic; identical on x86_64 and aarch64). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EPIPE: 32,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSUP: 95,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  EHWPOISON: 133,
} as const;
export type ErrnoName = keyof typeof Errno;

const namesByNumber = new Map<number, string>();
for (const [name, value] of Object.entries(Errno)) if (!namesByNumber.has(value)) namesByNumber.set(value, name);

/** 'EEXIST' for 17; 'E<n>' for numbers this table does not know. */
export function errnoName(errnum: number): string {
  return namesByNumber.get(errnum) ?? `E${errnum}`;
}

export interface UffdErrorDetails {
  /** The operation, e.g. 'UFFDIO_COPY'. */
  op: string;
  errno: number;
  /** Bytes the kernel completed before the error (range ioctls), 0 otherwise. */
  done?: number;
  addr?: number;
  len?: number;
  /** What to do about it (privileges, missing feature...). */
  hint?: string;
}

/** Base class: any failing userfaultfd syscall or ioctl. */
export class UffdError extends Error {
  override name = 'UffdError';
  readonly code: string;
  readonly errno: number;
  readonly op: string;
  readonly done: number;
  readonly addr?: number;
  readonly len?: number;
  readonly hint?: string;

  constructor(d: UffdErrorDetails) {
    const code = errnoName(d.errno);
    let msg = `${d.op} failed: ${code} (${strerror(d.errno)})`;
    if (d.addr !== undefined) msg += ` at 0x${d.addr.toString(16)}`;
    if (d.len !== undefined) msg += ` len ${d.len}`;
    if (d.done) msg += ` after ${d.done} bytes`;
    if (d.hint) msg += `. ${d.hint}`;
    super(msg);
    this.code = code;
    this.errno = d.errno;
    this.op = d.op;
    this.done = d.done ?? 0;
    this.addr = d.addr;
    this.len = d.len;
    this.hint = d.hint;
  }
}

/** EEXIST: the page is already populated (another resolver won, or a range overlaps a registration). */
export class UffdExistsError extends UffdError { override name = 'UffdExistsError'; }
/** EAGAIN: the mm changed under us (a REMOVE/UNMAP/REMAP/FORK event is unread); read events, then retry. */
export class UffdAgainError extends UffdError { override name = 'UffdAgainError'; }
/** ENOENT: e.g. UFFDIO_MOVE source page missing, or UFFDIO_CONTINUE with no page cache page. */
export class UffdNoEntryError extends UffdError { override name = 'UffdNoEntryError'; }
/** ESRCH: the target mm is gone (the faulting process exited). */
export class UffdNoProcessError extends UffdError { override name = 'UffdNoProcessError'; }
/** EINVAL: bad range, alignment, mode, or a feature/ioctl not enabled on this fd. */
export class UffdInvalidError extends UffdError { override name = 'UffdInvalidError'; }
/** EBUSY: e.g. MOVE of a pinned page, or registering a range with an incompatible VMA. */
export class UffdBusyError extends UffdError { override name = 'UffdBusyError'; }
/** ENOMEM: the kernel could not allocate, or the target mm is being torn down. */
export class UffdNoMemoryError extends UffdError { override name = 'UffdNoMemoryError'; }
/** EPERM: creation refused; the message says which knob to turn. */
export class UffdPermissionError extends UffdError { override name = 'UffdPermissionError'; }
/** A feature the caller required is not offered by this kernel. */
export class UffdFeatureError extends Error {
  override name = 'UffdFeatureError';
  readonly code = 'EFEATURE';
  constructor(readonly missing: string[], readonly available: bigint) {
    super(`userfaultfd feature(s) not supported by this kernel: ${missing.join(', ')} (kernel offers 0x${available.toString(16)})`);
  }
}

const classes: Record<number, new (d: UffdErrorDetails) => UffdError> = {
  [Errno.EEXIST]: UffdExistsError,
  [Errno.EAGAIN]: UffdAgainError,
  [Errno.ENOENT]: UffdNoEntryError,
  [Errno.ESRCH]: UffdNoProcessError,
  [Errno.EINVAL]: UffdInvalidError,
  [Errno.EBUSY]: UffdBusyError,
  [Errno.ENOMEM]: UffdNoMemoryError,
  [Errno.EPERM]: UffdPermissionError,
};

/** The most specific UffdError subclass for an errno. */
export function uffdError(d: UffdErrorDetails): UffdError {
  const Cls = classes[d.errno] ?? UffdError;
  return new Cls(d);
}

/** Error from a plain libc call outside the uffd ioctls (mmap, memfd_create, poll...). */
export class SyscallError extends Error {
  override name = 'SyscallError';
  readonly code: string;
  constructor(readonly syscall: string, readonly errno: number, detail?: string) {
    super(`${syscall} failed: ${errnoName(errno)} (${strerror(errno)})${detail ? `: ${detail}` : ''}`);
    this.code = errnoName(errno);
  }
}
