// Scatter receive for the main stream's background pages (DESIGN §3). In a background pass the stream is a
// long run of CONTINUE PAGE records: an 8-byte header, then the page. When the stream sits at a record
// boundary inside such a run, one readv() puts each header into a small header slot and each page into the
// next page slot of a contiguous area, so a run of pages is placed with one UFFDIO_COPY straight from where
// the kernel received it: no staging memcpy, no copy call per page. Units that turn out to be something
// else (a ZERO record, the EOS that ends a section part, the framing after it) are copied back into stream
// order and handed to the ordinary decoding path, which validates them exactly as before.
import { libc, errno } from '../uffd/libc.js';
import { addressOf } from '../uffd/memory.js';

const readvFn = libc.func('readv', 'intptr_t', ['int', 'uintptr_t', 'int']) as (fd: number, iov: number, n: number) => number;
const EINTR = 4;
/** One header + one page slot per unit; IOV_MAX (1024) bounds the units of one readv at 512. */
const MAX_UNITS = 512;
const HEADER = 8;

export class ScatterReceiver {
  /** Bytes of one unit on the wire: header + page. */
  readonly unitBytes: number;
  readonly units: number;
  /** Header slot i at [8i, 8i+8). */
  readonly headers: Buffer;
  /** Page slot i at pagesAddr + i·pageSize (contiguous, so consecutive pages form one run). */
  readonly pages: Buffer;
  readonly pagesAddr: number;
  private readonly iov: Buffer;
  private readonly iovAddr: number;

  constructor(private readonly pageSize: number, units = 256) {
    if (!(units >= 1 && units <= MAX_UNITS)) throw new RangeError(`scatter units must be 1..${MAX_UNITS}, got ${units}`);
    this.units = units;
    this.unitBytes = HEADER + pageSize;
    this.headers = Buffer.allocUnsafeSlow(units * HEADER);
    this.pages = Buffer.allocUnsafeSlow(units * pageSize);
    this.pagesAddr = addressOf(this.pages);
    this.iov = Buffer.allocUnsafeSlow(units * 2 * 16);
    this.iovAddr = addressOf(this.iov);
    const headersAddr = addressOf(this.headers);
    for (let i = 0; i < units; i++) {
      this.iov.writeBigUInt64LE(BigInt(headersAddr + i * HEADER), i * 32);
      this.iov.writeBigUInt64LE(BigInt(HEADER), i * 32 + 8);
      this.iov.writeBigUInt64LE(BigInt(this.pagesAddr + i * pageSize), i * 32 + 16);
      this.iov.writeBigUInt64LE(BigInt(pageSize), i * 32 + 24);
    }
  }

  /**
   * Put the first `len` (< unitBytes) bytes of unit 0 from src[from..]: a record the previous receive cut
   * short, so that it completes in its slot.
   */
  prime(src: Buffer, from: number, len: number): void {
    const h = Math.min(len, HEADER);
    src.copy(this.headers, 0, from, from + h);
    if (len > HEADER) src.copy(this.pages, 0, from + HEADER, from + len);
  }

  /**
   * One readv() filling the slots from stream byte `have` of unit 0 (0, or what prime() put there): bytes
   * received (> 0), 0 at EOF, or -errno. Works on sockets and pipes.
   */
  receive(fd: number, have = 0): number {
    let first = 0; // iovec the read starts at
    let base = 0;
    let len = 0;
    if (have > 0) {
      first = have < HEADER ? 0 : 1;
      base = Number(this.iov.readBigUInt64LE(first * 16));
      len = Number(this.iov.readBigUInt64LE(first * 16 + 8));
      const skip = have < HEADER ? have : have - HEADER;
      this.iov.writeBigUInt64LE(BigInt(base + skip), first * 16);
      this.iov.writeBigUInt64LE(BigInt(len - skip), first * 16 + 8);
    }
    try {
      for (;;) {
        const r = readvFn(fd, this.iovAddr + first * 16, this.units * 2 - first);
        if (r >= 0) return r;
        const e = errno();
        if (e !== EINTR) return -e;
      }
    } finally {
      if (have > 0) {
        this.iov.writeBigUInt64LE(BigInt(base), first * 16);
        this.iov.writeBigUInt64LE(BigInt(len), first * 16 + 8);
      }
    }
  }

  /** Header of unit i, high and low 32 bits (big-endian on the wire). */
  headerHigh(i: number): number {
    return this.headers.readUInt32BE(i * HEADER);
  }

  headerLow(i: number): number {
    return this.headers.readUInt32BE(i * HEADER + 4);
  }

  /** Copy stream bytes [from, to) of the slots back into stream order at out[0..]; returns the length. */
  linearize(from: number, to: number, out: Buffer): number {
    let o = 0;
    for (let pos = from; pos < to;) {
      const unit = Math.floor(pos / this.unitBytes);
      const at = pos - unit * this.unitBytes;
      const end = Math.min(to, (unit + 1) * this.unitBytes);
      if (at < HEADER) {
        const n = Math.min(HEADER - at, end - pos);
        o += this.headers.copy(out, o, unit * HEADER + at, unit * HEADER + at + n);
        pos += n;
        continue;
      }
      const start = unit * this.pageSize + (at - HEADER);
      o += this.pages.copy(out, o, start, start + (end - pos));
      pos = end;
    }
    return o;
  }
}
