// Return-path page requests (QEMU REQ_PAGES_ID / REQ_PAGES, spec-notes §3.6) encoded straight into a
// preallocated buffer: the fault worker sends them on its hot path, so no allocation per request.
// Contiguous pages of one block are merged into one request (the source may send more than asked).
import { RpMessage } from '../protocol/index.js';

export class RequestEncoder {
  readonly buf: Buffer;
  length = 0;
  private lastBlock = '';
  private readonly nameBytes = new Map<string, Buffer>();

  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(capacity);
  }

  /** Room left for one more request (worst case: REQ_PAGES_ID with a 255-byte name). */
  get full(): boolean {
    return this.length + 4 + 13 + 255 > this.buf.length;
  }

  reset(): void {
    this.length = 0;
  }

  /** Append a request for `length` bytes at byte `start` of `block`. */
  add(block: string, start: number, length: number): void {
    const b = this.buf;
    let p = this.length;
    const hi = Math.floor(start / 0x1_0000_0000);
    const lo = start >>> 0;
    if (block !== this.lastBlock) {
      let name = this.nameBytes.get(block);
      // Block names are byte strings held as latin-1 (as the protocol module decodes and encodes them).
      if (!name) { name = Buffer.from(block, 'latin1'); this.nameBytes.set(block, name); }
      b.writeUInt16BE(RpMessage.REQ_PAGES_ID, p);
      b.writeUInt16BE(13 + name.length, p + 2);
      p += 4;
      b.writeUInt32BE(hi, p); b.writeUInt32BE(lo, p + 4); b.writeUInt32BE(length, p + 8);
      b[p + 12] = name.length;
      name.copy(b, p + 13);
      p += 13 + name.length;
      this.lastBlock = block;
    } else {
      b.writeUInt16BE(RpMessage.REQ_PAGES, p);
      b.writeUInt16BE(12, p + 2);
      p += 4;
      b.writeUInt32BE(hi, p); b.writeUInt32BE(lo, p + 4); b.writeUInt32BE(length, p + 8);
      p += 12;
    }
    this.length = p;
  }
}
