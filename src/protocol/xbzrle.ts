// XBZRLE delta encoding of one page (migration/xbzrle.c format): pairs of ULEB128 "small" lengths
// (≤ 14 bits): unchanged-run length, changed-run length, then the changed (new) bytes. A trailing
// unchanged run is omitted. Only the first unchanged run may be 0; every changed run is ≥ 1.
import { protocolError } from './errors.js';

const MAX_RUN = 0x3fff;

/** Reads one ULEB128-small value at s[i]; returns [value, bytes] or null when malformed. */
function readSmall(s: Uint8Array, i: number, end: number): number {
  const b0 = s[i];
  if ((b0 & 0x80) === 0) return b0 | (1 << 16);
  if (i + 1 >= end) return -1;
  const b1 = s[i + 1];
  if (b1 & 0x80) return -1;
  return ((b0 & 0x7f) | (b1 << 7)) | (2 << 16);
}

function writeSmall(out: Uint8Array, d: number, n: number): number {
  if (n < 0x80) {
    out[d] = n;
    return 1;
  }
  out[d] = (n & 0x7f) | 0x80;
  out[d + 1] = n >>> 7;
  return 2;
}

/**
 * Walks an encoded delta without applying it. Returns -1 when valid, otherwise the index of the
 * first bad byte and sets the reason in `why[0]` (used by the decoder to build its ProtocolError).
 */
export function xbzrleCheck(src: Uint8Array, pageSize: number, why?: string[]): number {
  const slen = src.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (slen - i < 2) return fail(why, i, 'at least 2 bytes before an unchanged-run length');
    let v = readSmall(src, i, slen);
    if (v < 0) return fail(why, i, 'a ULEB128 length of at most 2 bytes');
    let count = v & 0xffff;
    if (i > 0 && count === 0) return fail(why, i, 'a non-zero unchanged run (only the first may be 0)');
    i += v >>> 16;
    d += count;
    if (d > pageSize) return fail(why, i, `runs within the ${pageSize}-byte page`, true);
    if (slen - i < 2) return fail(why, i, 'at least 2 bytes before a changed-run length');
    v = readSmall(src, i, slen);
    if (v < 0) return fail(why, i, 'a ULEB128 length of at most 2 bytes');
    count = v & 0xffff;
    if (count === 0) return fail(why, i, 'a changed run of at least 1 byte');
    i += v >>> 16;
    if (d + count > pageSize) return fail(why, i, `runs within the ${pageSize}-byte page`, true);
    if (i + count > slen) return fail(why, i, 'the changed bytes inside the encoded data');
    d += count;
    i += count;
  }
  return -1;
}

function fail(why: string[] | undefined, i: number, expected: string, overflow = false): number {
  if (why) {
    why[0] = expected;
    why[1] = overflow ? 'overflow' : 'bad';
  }
  return i;
}

/**
 * Applies an encoded delta onto `page` in place (the receiver's current copy). Validates first, so a
 * bad delta leaves the page untouched. Throws ProtocolError (offset = index in the encoded data + base).
 */
export function xbzrleDecode(src: Uint8Array, page: Uint8Array, baseOffset = 0): number {
  const why: string[] = [];
  const bad = xbzrleCheck(src, page.length, why);
  if (bad >= 0) {
    throw protocolError(why[1] === 'overflow' ? 'XBZRLE_OVERFLOW' : 'BAD_XBZRLE', 'invalid XBZRLE data', baseOffset + bad, 'XBZRLE page', why[0]);
  }
  let i = 0;
  let d = 0;
  const slen = src.length;
  while (i < slen) {
    let v = readSmall(src, i, slen);
    i += v >>> 16;
    d += v & 0xffff;
    v = readSmall(src, i, slen);
    i += v >>> 16;
    const count = v & 0xffff;
    page.set(src.subarray(i, i + count), d);
    d += count;
    i += count;
  }
  return d;
}

/** Validates without applying; throws like xbzrleDecode. */
export function xbzrleValidate(src: Uint8Array, pageSize: number, baseOffset = 0): void {
  const why: string[] = [];
  const bad = xbzrleCheck(src, pageSize, why);
  if (bad >= 0) {
    throw protocolError(why[1] === 'overflow' ? 'XBZRLE_OVERFLOW' : 'BAD_XBZRLE', 'invalid XBZRLE data', baseOffset + bad, 'XBZRLE page', why[0]);
  }
}

/**
 * Encodes newPage against oldPage. Returns the encoded bytes, an empty array when the pages are equal
 * (QEMU then skips the page), or null when the encoding would not be smaller than `limit` bytes
 * (default one page: QEMU then sends a plain PAGE).
 */
export function xbzrleEncode(oldPage: Uint8Array, newPage: Uint8Array, limit = newPage.length): Uint8Array | null {
  const slen = newPage.length;
  if (oldPage.length !== slen) throw protocolError('ENCODE', 'old and new page differ in size', -1, 'xbzrleEncode', 'pages of equal size');
  if (slen > MAX_RUN) {
    // Runs are limited to 14 bits; QEMU never uses XBZRLE on pages above 16 KiB.
    throw protocolError('ENCODE', `page of ${slen} bytes`, -1, 'xbzrleEncode', 'a page of at most 16383 bytes');
  }
  const out = new Uint8Array(limit);
  let i = 0;
  let d = 0;
  while (i < slen) {
    let zrun = 0;
    while (i < slen && oldPage[i] === newPage[i]) {
      i++;
      zrun++;
    }
    if (i === slen) break; // trailing unchanged run is omitted
    const start = i;
    while (i < slen && oldPage[i] !== newPage[i]) i++;
    const nzrun = i - start;
    const need = (zrun < 0x80 ? 1 : 2) + (nzrun < 0x80 ? 1 : 2) + nzrun;
    if (d + need > limit) return null;
    d += writeSmall(out, d, zrun);
    d += writeSmall(out, d, nzrun);
    out.set(newPage.subarray(start, i), d);
    d += nzrun;
  }
  return out.subarray(0, d);
}
