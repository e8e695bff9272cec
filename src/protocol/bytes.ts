// Big-endian field readers/writers over Uint8Array (no DataView allocation on the hot path).
import { protocolError } from './errors.js';

export function be16(d: Uint8Array, p: number): number {
  return (d[p] << 8) | d[p + 1];
}
export function be32(d: Uint8Array, p: number): number {
  return ((d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]) >>> 0;
}
/** High 32 bits of a be64 (for checks before combining). */
export const be64hi = be32;
/** be64 as a Number; values ≥ 2^53 throw (no wire field we accept gets near that). */
export function be64(d: Uint8Array, p: number, abs: number, context: string): number {
  const hi = be32(d, p);
  if (hi >= 0x200000) {
    throw protocolError('BAD_LENGTH', '64-bit field too large', abs, context, 'a value below 2^53');
  }
  return hi * 0x100000000 + be32(d, p + 4);
}
export function be64big(d: Uint8Array, p: number): bigint {
  return (BigInt(be32(d, p)) << 32n) | BigInt(be32(d, p + 4));
}

export function put16(d: Uint8Array, p: number, v: number): void {
  d[p] = v >>> 8;
  d[p + 1] = v;
}
export function put32(d: Uint8Array, p: number, v: number): void {
  d[p] = v >>> 24;
  d[p + 1] = v >>> 16;
  d[p + 2] = v >>> 8;
  d[p + 3] = v;
}
export function put64(d: Uint8Array, p: number, v: number): void {
  const hi = Math.floor(v / 0x100000000);
  put32(d, p, hi);
  put32(d, p + 4, v >>> 0);
}

/** Latin-1 decode: QEMU names are byte strings; latin1 maps every byte to one char so encode(decode(x)) == x. */
export function latin1(d: Uint8Array, p: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(d[p + i]);
  return s;
}
export function latin1Bytes(s: string, context: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw protocolError('ENCODE', `name ${JSON.stringify(s)} is not a byte string`, -1, context, 'latin-1 characters');
    out[i] = c;
  }
  return out;
}

/** Small growable writer for headers and commands. */
export class ByteWriter {
  buf: Uint8Array;
  len = 0;
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
  }
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): this {
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }
  u16(v: number): this {
    this.room(2);
    put16(this.buf, this.len, v);
    this.len += 2;
    return this;
  }
  u32(v: number): this {
    this.room(4);
    put32(this.buf, this.len, v);
    this.len += 4;
    return this;
  }
  u64(v: number): this {
    this.room(8);
    put64(this.buf, this.len, v);
    this.len += 8;
    return this;
  }
  u64big(v: bigint): this {
    this.u32(Number((v >> 32n) & 0xffffffffn));
    return this.u32(Number(v & 0xffffffffn));
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }
  /** u8 length + name (QEMU's counted string); names over 255 bytes are refused. */
  counted(name: string, context: string): this {
    const b = latin1Bytes(name, context);
    if (b.length > 255 || b.length === 0) {
      throw protocolError('ENCODE', `name ${JSON.stringify(name)} has ${b.length} bytes`, -1, context, '1..255 bytes');
    }
    return this.u8(b.length).bytes(b);
  }
  done(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
