// COMPRESS_PAGE bodies: QEMU's compress threads deflateReset() one z_stream per page, so every page is
// an independent zlib stream (with zlib header) that must inflate to exactly one target page.
import { deflateSync, inflateSync } from 'node:zlib';
import { protocolError } from './errors.js';

/** zlib's compressBound(): the largest a deflate of n bytes can get (QEMU's length limit). */
export function compressBound(n: number): number {
  return n + (n >>> 12) + (n >>> 14) + (n >>> 25) + 13;
}

/** Inflates one page; throws BAD_COMPRESSED_PAGE unless the stream gives exactly pageSize bytes. */
export function inflatePage(data: Uint8Array, pageSize: number, offset = -1, context = 'COMPRESS_PAGE'): Uint8Array {
  let page: Buffer;
  try {
    // One byte of slack so "more than a page" is seen as such rather than silently cut.
    page = inflateSync(data, { maxOutputLength: pageSize + 1 });
  } catch (e) {
    throw protocolError('BAD_COMPRESSED_PAGE', `zlib: ${(e as Error).message}`, offset, context, `a zlib stream inflating to ${pageSize} bytes`);
  }
  if (page.length !== pageSize) {
    throw protocolError('BAD_COMPRESSED_PAGE', `zlib output is ${page.length} bytes`, offset, context, `exactly ${pageSize} bytes`);
  }
  return page;
}

/** Deflates one page the way QEMU does (fresh zlib stream, given level). */
export function compressPage(page: Uint8Array, level = 1): Buffer {
  return deflateSync(page, { level });
}
