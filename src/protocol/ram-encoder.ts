// Encoder for "ram" v4 records with QEMU's per-channel CONTINUE rule. Page bodies are never copied:
// page()/encode() return [header, the caller's page view]; pageInto() writes into a caller buffer;
// recordInto() is the allocation-free hot-path variant (PAGE or ZERO straight into a send buffer).
import {
  DEFAULT_TARGET_PAGE_SIZE,
  ENCODING_FLAG_XBZRLE,
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from './constants.js';
import { ByteWriter, latin1Bytes, put16, put32 } from './bytes.js';
import { protocolError } from './errors.js';
import { checkTargetPageSize } from './ram-channel.js';
import { compressBound, compressPage } from './compress.js';
import { xbzrleCheck, xbzrleEncode } from './xbzrle.js';
import type { EncoderOptions, IoVec, RamBlockInfo, RamRecord } from './types.js';

const copyBytes = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

export class RamRecordEncoder {
  readonly pageSize: number;
  private readonly pageSizeField: boolean;
  private readonly guestAddress: boolean;
  private readonly level: number;
  private lastBlock: string | null = null;
  private lastNameBytes: Uint8Array | null = null;
  private blocks: Map<string, RamBlockInfo> | null = null;
  /** idstr bytes per block name, encoded once (recordInto allocates nothing per record). */
  private readonly nameCache = new Map<string, Uint8Array>();

  constructor(opts: EncoderOptions = {}) {
    this.pageSize = checkTargetPageSize(opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE);
    this.pageSizeField = opts.memSizePageSize ?? true;
    this.guestAddress = opts.memSizeGuestAddress ?? false;
    this.level = opts.compressLevel ?? 1;
  }

  /** Forget the channel's last block (new connection): the next page record names its block. */
  resetContinue(): void {
    this.lastBlock = null;
    this.lastNameBytes = null;
  }

  /** Restrict names/offsets to this block list (set automatically by memSize()). */
  setBlocks(blocks: readonly RamBlockInfo[] | null): void {
    this.blocks = blocks ? new Map(blocks.map((b) => [b.idstr, { ...b }])) : null;
  }

  memSize(blocks: readonly RamBlockInfo[]): Uint8Array {
    const ctx = 'MEM_SIZE';
    let total = 0;
    for (const b of blocks) {
      if (!Number.isInteger(b.usedLength) || b.usedLength < 0 || b.usedLength % this.pageSize !== 0) {
        throw protocolError('ENCODE', `block ${JSON.stringify(b.idstr)} length ${b.usedLength}`, -1, ctx, `a multiple of ${this.pageSize}`);
      }
      total += b.usedLength;
    }
    const w = new ByteWriter(16 + blocks.length * 48);
    w.u64(total + RAM_SAVE_FLAG_MEM_SIZE);
    for (const b of blocks) {
      w.counted(b.idstr, ctx).u64(b.usedLength);
      if (this.pageSizeField && b.pageSize !== undefined) w.u64(b.pageSize);
      if (this.guestAddress) w.u64(b.guestAddress ?? 0);
    }
    this.setBlocks(blocks);
    return w.done();
  }

  /**
   * Header of a page-carrying record: be64 offset|flags, then the counted idstr unless CONTINUE.
   * `continued`: undefined = QEMU's rule (CONTINUE iff same block as the channel's last record);
   * true = force CONTINUE (error if the block differs); false = always name the block.
   */
  private header(kind: number, block: string, offset: number, continued: boolean | undefined, extra: number): { buf: Uint8Array; at: number } {
    const ctx = 'ram record';
    if (!Number.isInteger(offset) || offset < 0 || offset % this.pageSize !== 0 || offset >= 2 ** 53) {
      throw protocolError('ENCODE', `page offset ${offset}`, -1, ctx, `a non-negative multiple of ${this.pageSize}`);
    }
    if (this.blocks !== null) {
      const b = this.blocks.get(block);
      if (b === undefined) throw protocolError('ENCODE', `block ${JSON.stringify(block)} not in the block list`, -1, ctx, 'a block announced by MEM_SIZE');
      if (offset + this.pageSize > b.usedLength) throw protocolError('ENCODE', `offset 0x${offset.toString(16)} beyond block ${JSON.stringify(block)}`, -1, ctx, 'an offset inside the block');
    }
    const same = this.lastBlock === block;
    const cont = continued ?? same;
    if (cont && !same) {
      throw protocolError('ENCODE', `CONTINUE requested for block ${JSON.stringify(block)} after ${JSON.stringify(this.lastBlock)}`, -1, ctx, 'CONTINUE only for the channel\'s last block');
    }
    let name: Uint8Array | null = null;
    if (!cont) {
      name = same && this.lastNameBytes !== null ? this.lastNameBytes : latin1Bytes(block, ctx);
      if (name.length === 0 || name.length > 255) throw protocolError('ENCODE', `block name of ${name.length} bytes`, -1, ctx, '1..255 bytes');
    }
    const hlen = 8 + (name ? 1 + name.length : 0);
    const buf = new Uint8Array(hlen + extra);
    const flags = kind | (cont ? RAM_SAVE_FLAG_CONTINUE : 0);
    put32(buf, 0, Math.floor(offset / 0x100000000));
    put32(buf, 4, (offset >>> 0) + flags);
    if (name) {
      buf[8] = name.length;
      buf.set(name, 9);
      this.lastNameBytes = name;
    }
    this.lastBlock = block;
    return { buf, at: hlen };
  }

  zero(block: string, offset: number, fill = 0, continued?: boolean): Uint8Array {
    const { buf, at } = this.header(RAM_SAVE_FLAG_ZERO, block, offset, continued, 1);
    buf[at] = fill;
    return buf;
  }

  /** [header, page]: the page view is passed through untouched (no staging copy). */
  page(block: string, offset: number, data: Uint8Array, continued?: boolean): IoVec {
    if (data.length !== this.pageSize) throw protocolError('ENCODE', `page of ${data.length} bytes`, -1, 'PAGE', `${this.pageSize} bytes`);
    return [this.header(RAM_SAVE_FLAG_PAGE, block, offset, continued, 0).buf, data];
  }

  /** Bytes a PAGE record for `block` would take (to size pageInto() buffers). */
  pageRecordSize(block: string, continued?: boolean): number {
    const cont = continued ?? this.lastBlock === block;
    return 8 + (cont ? 0 : 1 + block.length) + this.pageSize;
  }

  /** Writes a whole PAGE record into target at pos; returns the bytes written. */
  pageInto(target: Uint8Array, pos: number, block: string, offset: number, data: Uint8Array, continued?: boolean): number {
    const size = this.pageRecordSize(block, continued);
    if (pos < 0 || pos + size > target.length) throw protocolError('ENCODE', `${target.length - pos} bytes of room`, -1, 'pageInto', `${size} bytes`);
    const [hdr, page] = this.page(block, offset, data, continued);
    target.set(hdr, pos);
    target.set(page, pos + hdr.length);
    return hdr.length + page.length;
  }

  /** Largest record recordInto() can write for a page size (header + counted idstr + page). */
  static maxRecordSize(pageSize: number): number {
    return 8 + 1 + 255 + pageSize;
  }

  /**
   * Allocation-free hot path: writes a PAGE record whose body is copied from `src[srcStart, srcStart +
   * pageSize)` or, with `src` null, a ZERO record (fill 0), for `block` at byte `offset`, into `target` at
   * `pos`; returns the position after it. QEMU's CONTINUE rule applies as for page(). The block must be in
   * the MEM_SIZE list when one was given. Throws ProtocolError (nothing written) on a bad offset, an unknown
   * block or too little room (RamRecordEncoder.maxRecordSize bounds what a record needs).
   */
  recordInto(target: Uint8Array, pos: number, block: string, offset: number, src: Uint8Array | null, srcStart = 0): number {
    const ps = this.pageSize;
    if (!(offset >= 0 && offset % ps === 0 && offset < 2 ** 53)) {
      throw protocolError('ENCODE', `page offset ${offset}`, -1, 'ram record', `a non-negative multiple of ${ps}`);
    }
    if (this.blocks !== null) {
      const b = this.blocks.get(block);
      if (b === undefined || offset + ps > b.usedLength) {
        throw protocolError('ENCODE', b === undefined ? `block ${JSON.stringify(block)} not in the block list` : `offset 0x${offset.toString(16)} beyond block ${JSON.stringify(block)}`, -1, 'ram record', 'a page inside a block announced by MEM_SIZE');
      }
    }
    const cont = this.lastBlock === block;
    let name: Uint8Array | undefined;
    if (!cont) {
      name = this.nameCache.get(block);
      if (name === undefined) {
        name = latin1Bytes(block, 'ram record');
        if (name.length === 0 || name.length > 255) throw protocolError('ENCODE', `block name of ${name.length} bytes`, -1, 'ram record', '1..255 bytes');
        this.nameCache.set(block, name);
      }
    }
    const size = 8 + (name !== undefined ? 1 + name.length : 0) + (src !== null ? ps : 1);
    if (pos < 0 || pos + size > target.length || (src !== null && (srcStart < 0 || srcStart + ps > src.length))) {
      throw protocolError('ENCODE', `${target.length - pos} bytes of room / page source of ${src === null ? 0 : src.length - srcStart} bytes`, -1, 'recordInto', `${size} bytes of room and a whole page`);
    }
    const flags = (src !== null ? RAM_SAVE_FLAG_PAGE : RAM_SAVE_FLAG_ZERO) | (cont ? RAM_SAVE_FLAG_CONTINUE : 0);
    const hi = Math.floor(offset / 0x100000000);
    put32(target, pos, hi);
    put32(target, pos + 4, offset - hi * 0x100000000 + flags);
    pos += 8;
    if (name !== undefined) {
      target[pos++] = name.length;
      for (let i = 0; i < name.length; i++) target[pos++] = name[i];
      this.lastBlock = block;
      this.lastNameBytes = name;
    }
    if (src === null) {
      target[pos++] = 0;
    } else {
      // Buffer#copy is a plain memcpy and, unlike set(subarray), allocates no view object.
      copyBytes.call(src, target, pos, srcStart, srcStart + ps);
      pos += ps;
    }
    return pos;
  }

  /** XBZRLE record from already-encoded delta bytes. */
  xbzrle(block: string, offset: number, encoded: Uint8Array, continued?: boolean): IoVec {
    if (encoded.length > this.pageSize || xbzrleCheck(encoded, this.pageSize) >= 0) {
      throw protocolError('ENCODE', 'invalid XBZRLE delta', -1, 'XBZRLE', `a valid delta of at most ${this.pageSize} bytes`);
    }
    const { buf, at } = this.header(RAM_SAVE_FLAG_XBZRLE, block, offset, continued, 3);
    buf[at] = ENCODING_FLAG_XBZRLE;
    put16(buf, at + 1, encoded.length);
    return [buf, encoded];
  }

  /**
   * What QEMU's sender does with XBZRLE on: [] when the page is unchanged (nothing is sent), an XBZRLE
   * record when the delta is smaller than a page, otherwise a plain PAGE record.
   */
  xbzrlePage(block: string, offset: number, oldPage: Uint8Array, newPage: Uint8Array, continued?: boolean): IoVec {
    const enc = xbzrleEncode(oldPage, newPage, this.pageSize);
    if (enc === null) return this.page(block, offset, newPage, continued);
    if (enc.length === 0) return [];
    return this.xbzrle(block, offset, enc, continued);
  }

  /** COMPRESS_PAGE record from an already-deflated zlib stream. */
  compressedPage(block: string, offset: number, compressed: Uint8Array, continued?: boolean): IoVec {
    if (compressed.length > compressBound(this.pageSize)) {
      throw protocolError('ENCODE', `compressed page of ${compressed.length} bytes`, -1, 'COMPRESS_PAGE', `at most ${compressBound(this.pageSize)}`);
    }
    const { buf, at } = this.header(RAM_SAVE_FLAG_COMPRESS_PAGE, block, offset, continued, 4);
    put32(buf, at, compressed.length);
    return [buf, compressed];
  }

  /** Deflates the page (fresh zlib stream, like QEMU's compress threads) and frames it. */
  compressPage(block: string, offset: number, page: Uint8Array, continued?: boolean): IoVec {
    if (page.length !== this.pageSize) throw protocolError('ENCODE', `page of ${page.length} bytes`, -1, 'COMPRESS_PAGE', `${this.pageSize} bytes`);
    return this.compressedPage(block, offset, compressPage(page, this.level), continued);
  }

  eos(): Uint8Array {
    const b = new Uint8Array(8);
    b[7] = RAM_SAVE_FLAG_EOS;
    return b;
  }

  multifdFlush(): Uint8Array {
    const b = new Uint8Array(8);
    put16(b, 6, RAM_SAVE_FLAG_MULTIFD_FLUSH);
    return b;
  }

  /** Encodes a decoded record (honours its `continued` flag). */
  encode(r: RamRecord): IoVec {
    switch (r.kind) {
      case 'mem-size':
        return [this.memSize(r.blocks)];
      case 'zero':
        return [this.zero(r.block, r.blockOffset, r.fill, r.continued)];
      case 'page':
        return this.page(r.block, r.blockOffset, r.data, r.continued);
      case 'xbzrle':
        return this.xbzrle(r.block, r.blockOffset, r.data, r.continued);
      case 'compressed-page':
        return this.compressedPage(r.block, r.blockOffset, r.data, r.continued);
      case 'eos':
        return [this.eos()];
      case 'multifd-flush':
        return [this.multifdFlush()];
    }
  }
}
