// Chunk-boundary handling shared by every decoder. Subclasses parse one element at a time from one
// contiguous view; when an element straddles pushed chunks, only the bytes of that element are copied
// into a small carry buffer, so everything else (page payloads in particular) stays a view of the input.
// Exception: an element whose end must be scanned for (an opaque device section) tops the carry up in
// 64 KiB steps, so records in those few following bytes are views of the carry instead.
import { protocolError } from './errors.js';

/** Returned by step() when the element at p is not complete in [p, end). */
export const NEED = -1;

const EMPTY = new Uint8Array(0);
/** Greedy top-up for scanning elements (device sections) so a split footer is not found 1 byte at a time. */
const GREEDY_STEP = 64 * 1024;

export abstract class IncrementalDecoder<R> {
  protected out: R[] = [];
  /** Absolute stream offset of the element being parsed (= bytes consumed so far). */
  protected pos = 0;
  /**
   * Set by step() with NEED: total bytes the element needs from its first byte (a lower bound that
   * step() may raise on the next try). Must be capped by the subclass before being set.
   */
  protected need = 0;
  /** Set by step() with NEED when the element is scanned (no known length): top up greedily. */
  protected scanning = false;
  /** True during end(): steps may treat "no more bytes" as end of input. */
  protected atEnd = false;
  private carry: Uint8Array = EMPTY;
  private carryLen = 0;
  private finished = false;

  /** Decode one element at d[p..end) (d[p] is at absolute offset this.pos). Return the new p, or NEED. */
  protected abstract step(d: Uint8Array, p: number, end: number): number;
  /** Checks at end of input once every complete element has been decoded. */
  protected abstract finish(): void;
  /** Context string for a truncation error at end(). */
  protected abstract describe(): string;

  /** Bytes consumed (absolute offset of the next element). */
  get offset(): number {
    return this.pos;
  }

  push(chunk: Uint8Array): R[] {
    if (this.finished) {
      throw protocolError('TRAILING_DATA', 'data pushed after end()', this.pos, this.describe(), 'no more input');
    }
    this.out = [];
    let at = 0;
    const len = chunk.length;
    while (this.carryLen > 0 && at < len) {
      const want = Math.max(this.need - this.carryLen, this.scanning ? GREEDY_STEP : 1);
      const take = Math.min(want, len - at);
      this.append(chunk, at, take);
      at += take;
      if (this.carryLen < this.need) break;
      this.drainCarry();
    }
    if (at < len && this.carryLen === 0) {
      const used = this.run(chunk, at, len);
      at += used;
      if (at < len) this.append(chunk, at, len - at);
    }
    return this.out;
  }

  end(): R[] {
    if (this.finished) return [];
    this.out = [];
    this.atEnd = true;
    if (this.carryLen > 0) this.drainCarry();
    else if (this.wantsStepAtEnd()) this.run(EMPTY, 0, 0);
    this.finished = true;
    if (this.carryLen > 0) {
      throw protocolError('TRUNCATED', `input ends inside an element (${this.carryLen} of at least ${this.need} bytes)`, this.pos, this.describe(), 'the rest of the element');
    }
    this.finish();
    return this.out;
  }

  private drainCarry(): void {
    const buf = this.carry;
    const used = this.run(buf, 0, this.carryLen);
    if (used === 0) return;
    const rest = this.carryLen - used;
    // Records may hold views of the old carry, so the remainder moves to a fresh buffer.
    this.carry = EMPTY;
    this.carryLen = 0;
    if (rest > 0) this.append(buf, used, rest);
  }

  private run(d: Uint8Array, start: number, end: number): number {
    let p = start;
    for (;;) {
      this.need = 0;
      this.scanning = false;
      const q = this.step(d, p, end);
      if (q === NEED) break;
      this.pos += q - p;
      p = q;
      if (p >= end && !this.atEnd) break;
      if (p >= end && this.atEnd && !this.wantsStepAtEnd()) break;
    }
    return p - start;
  }

  /** Whether step() should still be called with no bytes left during end() (e.g. to close a package). */
  protected wantsStepAtEnd(): boolean {
    return false;
  }

  private append(src: Uint8Array, at: number, n: number): void {
    if (this.carryLen + n > this.carry.length) {
      const next = new Uint8Array(Math.max(this.carryLen + n, Math.min(this.carry.length * 2, this.carryLen + n + GREEDY_STEP), this.need));
      next.set(this.carry.subarray(0, this.carryLen));
      this.carry = next;
    }
    this.carry.set(src.subarray(at, at + n), this.carryLen);
    this.carryLen += n;
  }
}
