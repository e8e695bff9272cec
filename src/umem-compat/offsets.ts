// The June 2012 read()/write() payload: an array of u64 page offsets in host byte order. Encoded and decoded
// through a DataView with two u32 halves so hot paths never touch BigInt (offsets stay below 2^53).
import os from 'node:os';
import { UmemError } from './errors.js';
import { UMEM_OFFSET_BYTES } from './constants.js';

export const HOST_LITTLE_ENDIAN = os.endianness() === 'LE';
const TWO32 = 0x1_0000_0000;

/** Number of whole u64 slots a buffer holds; throws EINVAL when it cannot hold one (the driver's rule). */
export function offsetSlots(buf: Uint8Array, op: string): number {
  if (!(buf instanceof Uint8Array)) throw new UmemError('EINVAL', 'buffer is not a Uint8Array/Buffer', { op });
  if (buf.byteLength < UMEM_OFFSET_BYTES) {
    throw new UmemError('EINVAL', `buffer of ${buf.byteLength} bytes cannot hold one u64 page offset`, { op, length: buf.byteLength, expected: 'at least 8 bytes' });
  }
  return Math.floor(buf.byteLength / UMEM_OFFSET_BYTES);
}

export function dataViewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function putOffset(dv: DataView, slot: number, value: number): void {
  const lo = value % TWO32;
  const hi = (value - lo) / TWO32;
  const at = slot * UMEM_OFFSET_BYTES;
  if (HOST_LITTLE_ENDIAN) {
    dv.setUint32(at, lo, true);
    dv.setUint32(at + 4, hi, true);
  } else {
    dv.setUint32(at, hi, false);
    dv.setUint32(at + 4, lo, false);
  }
}

/** The u64 at `slot` as a Number; values ≥ 2^53 come back as Infinity (certainly beyond any device end). */
export function getOffset(dv: DataView, slot: number): number {
  const at = slot * UMEM_OFFSET_BYTES;
  const lo = HOST_LITTLE_ENDIAN ? dv.getUint32(at, true) : dv.getUint32(at + 4, false);
  const hi = HOST_LITTLE_ENDIAN ? dv.getUint32(at + 4, true) : dv.getUint32(at, false);
  if (hi >= 0x20_0000) return Infinity;
  return hi * TWO32 + lo;
}

/** Encode offsets into a fresh Buffer (convenience for tests and callers building write() payloads). */
export function encodeOffsets(offsets: readonly number[]): Buffer {
  const buf = Buffer.alloc(offsets.length * UMEM_OFFSET_BYTES);
  const dv = dataViewOf(buf);
  offsets.forEach((o, i) => putOffset(dv, i, o));
  return buf;
}

/** Decode a whole read()/write() payload (length must be a multiple of 8). */
export function decodeOffsets(buf: Uint8Array): number[] {
  if (buf.byteLength % UMEM_OFFSET_BYTES) {
    throw new UmemError('EINVAL', `payload of ${buf.byteLength} bytes is not a multiple of 8`, { op: 'decodeOffsets', length: buf.byteLength });
  }
  const dv = dataViewOf(buf);
  const out: number[] = [];
  for (let i = 0; i < buf.byteLength / UMEM_OFFSET_BYTES; i++) out.push(getOffset(dv, i));
  return out;
}
