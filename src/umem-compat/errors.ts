// Typed errors of the umem-compatible API. `code` follows the errno the 2012 driver would have returned
// (EINVAL for a bad offset or size, EAGAIN for a non-blocking read with nothing pending, EBUSY, ENOSYS...),
// plus details that say what was wrong.
export type UmemErrorCode =
  | 'EINVAL' // bad size / offset beyond the end / misaligned buffer
  | 'EAGAIN' // non-blocking read with no request pending, or the kernel kept answering EAGAIN past the retry budget
  | 'EINTR' // a blocking read was interrupted (interrupt()) or timed out
  | 'EBUSY' // makeVmaAnonymous with pages still absent
  | 'EBADF' // the device is closed
  | 'ENOTSUP' // the kernel lacks a feature this backend needs
  | 'EIO'; // an ioctl failed with an unexpected errno (see `errnoName`)

export interface UmemErrorDetails {
  op: string;
  /** Offending page offset (device page index), when there is one. */
  offset?: number;
  /** Number of pages of the device, for offset errors. */
  pageCount?: number;
  /** Buffer length in bytes, for size errors. */
  length?: number;
  /** Underlying errno name for EIO (e.g. 'ESRCH' when the guest process is gone). */
  errnoName?: string;
  /** Human-readable expectation, e.g. 'a multiple of 8 bytes, at least 8'. */
  expected?: string;
}

export class UmemError extends Error {
  override name = 'UmemError';
  readonly code: UmemErrorCode;
  readonly op: string;
  readonly offset?: number;
  readonly pageCount?: number;
  readonly length?: number;
  readonly errnoName?: string;
  readonly expected?: string;

  constructor(code: UmemErrorCode, message: string, d: UmemErrorDetails) {
    super(`${d.op}: ${code}: ${message}`);
    this.code = code;
    this.op = d.op;
    this.offset = d.offset;
    this.pageCount = d.pageCount;
    this.length = d.length;
    this.errnoName = d.errnoName;
    this.expected = d.expected;
  }
}
