// Applies decoded records to per-block images so the final content of every RAMBlock can be read out.
// Storage is lazy, in chunks of 16 target pages: untouched or zero-filled chunks cost nothing, and
// memory grows only with pages actually written (never with the sizes a MEM_SIZE record claims).
import { DEFAULT_TARGET_PAGE_SIZE } from './constants.js';
import { protocolError } from './errors.js';
import { inflatePage } from './compress.js';
import { xbzrleDecode } from './xbzrle.js';
import { recvBitmapBytes } from './return-path.js';
import { checkTargetPageSize } from './ram-channel.js';
import type { DecodedRecord, RamBlockInfo } from './types.js';

const PAGES_PER_CHUNK = 16;

interface Chunk {
  data: Uint8Array | null;
  /** Received bit per page of the chunk. */
  recv: number;
}

class BlockImage {
  readonly chunks = new Map<number, Chunk>();
  constructor(public info: RamBlockInfo) {}
}

/** Where decoded RAM records land: an in-memory image (RamImage) or files (postcopy-inspect --extract). */
export interface RamRecordSink {
  readonly pageSize: number;
  setBlocks(blocks: readonly RamBlockInfo[]): void;
  write(block: string, blockOffset: number, page: Uint8Array, at: number): void;
  fill(block: string, blockOffset: number, value: number, at: number): void;
  /** Apply an XBZRLE delta to the page's current content. */
  xbzrle(block: string, blockOffset: number, delta: Uint8Array, at: number): void;
  discard(block: string, start: number, length: number, at: number): void;
}

/** Routes one decoded record to a sink; records that do not touch RAM are ignored. */
export function applyRamRecord(r: DecodedRecord, sink: RamRecordSink): void {
  switch (r.kind) {
    case 'mem-size':
      sink.setBlocks(r.blocks);
      return;
    case 'zero':
      sink.fill(r.block, r.blockOffset, r.fill, r.offset);
      return;
    case 'page':
      sink.write(r.block, r.blockOffset, r.data, r.offset);
      return;
    case 'compressed-page':
      sink.write(r.block, r.blockOffset, r.page ?? inflatePage(r.data, sink.pageSize, r.offset), r.offset);
      return;
    case 'xbzrle':
      sink.xbzrle(r.block, r.blockOffset, r.data, r.offset);
      return;
    case 'command':
      if (r.command === 'POSTCOPY_RAM_DISCARD') {
        for (const x of r.ranges) sink.discard(r.idstr, x.start, x.length, r.offset);
      }
      return;
    default:
      return;
  }
}

export interface RamImageOptions {
  targetPageSize?: number;
  blocks?: readonly RamBlockInfo[];
  /** Largest block content() / receivedBitmap() will materialise. Default 4 GiB. */
  maxMaterialize?: number;
}

export class RamImage implements RamRecordSink {
  readonly pageSize: number;
  private readonly chunkBytes: number;
  private readonly maxMaterialize: number;
  private readonly images = new Map<string, BlockImage>();

  constructor(opts: RamImageOptions = {}) {
    this.pageSize = checkTargetPageSize(opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE);
    this.chunkBytes = this.pageSize * PAGES_PER_CHUNK;
    this.maxMaterialize = opts.maxMaterialize ?? 4 * 1024 * 1024 * 1024;
    if (opts.blocks) this.setBlocks(opts.blocks);
  }

  /** Declares the block list; blocks that keep their name and size keep their content. */
  setBlocks(blocks: readonly RamBlockInfo[]): void {
    const old = new Map(this.images);
    this.images.clear();
    for (const b of blocks) {
      const prev = old.get(b.idstr);
      const img = prev !== undefined && prev.info.usedLength === b.usedLength ? prev : new BlockImage({ ...b });
      img.info = { ...b };
      this.images.set(b.idstr, img);
    }
  }

  get blocks(): RamBlockInfo[] {
    return [...this.images.values()].map((i) => ({ ...i.info }));
  }

  applyAll(records: Iterable<DecodedRecord>): void {
    for (const r of records) this.apply(r);
  }

  /** Applies one record; records that do not touch RAM are ignored. */
  apply(r: DecodedRecord): void {
    applyRamRecord(r, this);
  }

  xbzrle(block: string, blockOffset: number, delta: Uint8Array, at = -1): void {
    const page = this.pageView(block, blockOffset, true, at)!;
    xbzrleDecode(delta, page, at);
    this.markReceived(block, blockOffset);
  }

  private image(block: string, blockOffset: number, len: number, at: number): BlockImage {
    const img = this.images.get(block);
    if (img === undefined) throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(block)} is not in the image`, at, 'RamImage', 'a block announced by MEM_SIZE');
    if (blockOffset % this.pageSize !== 0 || blockOffset < 0 || blockOffset + len > img.info.usedLength) {
      throw protocolError('BAD_OFFSET', `offset 0x${blockOffset.toString(16)} (+${len}) in block ${JSON.stringify(block)}`, at, 'RamImage', `a page-aligned range inside ${img.info.usedLength} bytes`);
    }
    return img;
  }

  /** View of one target page; allocates its chunk when `create`. */
  private pageView(block: string, blockOffset: number, create: boolean, at: number): Uint8Array | null {
    const img = this.image(block, blockOffset, this.pageSize, at);
    const ci = Math.floor(blockOffset / this.chunkBytes);
    let c = img.chunks.get(ci);
    if (c === undefined) {
      if (!create) return null;
      c = { data: null, recv: 0 };
      img.chunks.set(ci, c);
    }
    if (c.data === null) {
      if (!create) return null;
      const size = Math.min(this.chunkBytes, img.info.usedLength - ci * this.chunkBytes);
      c.data = new Uint8Array(size);
    }
    const o = blockOffset - ci * this.chunkBytes;
    return c.data.subarray(o, o + this.pageSize);
  }

  private markReceived(block: string, blockOffset: number): void {
    const img = this.images.get(block)!;
    const ci = Math.floor(blockOffset / this.chunkBytes);
    let c = img.chunks.get(ci);
    if (c === undefined) {
      c = { data: null, recv: 0 };
      img.chunks.set(ci, c);
    }
    c.recv |= 1 << ((blockOffset - ci * this.chunkBytes) / this.pageSize);
  }

  write(block: string, blockOffset: number, page: Uint8Array, at = -1): void {
    if (page.length !== this.pageSize) throw protocolError('BAD_LENGTH', `page of ${page.length} bytes`, at, 'RamImage', `${this.pageSize} bytes`);
    this.pageView(block, blockOffset, true, at)!.set(page);
    this.markReceived(block, blockOffset);
  }

  fill(block: string, blockOffset: number, value: number, at = -1): void {
    const existing = this.pageView(block, blockOffset, value !== 0, at);
    if (existing !== null) existing.fill(value);
    this.markReceived(block, blockOffset);
  }

  /** POSTCOPY_RAM_DISCARD: the range reads as zero and counts as not received. */
  discard(block: string, start: number, length: number, at = -1): void {
    this.image(block, start, length, at);
    for (let off = start; off < start + length; off += this.pageSize) {
      const ci = Math.floor(off / this.chunkBytes);
      const c = this.images.get(block)!.chunks.get(ci);
      if (c === undefined) continue;
      const bit = (off - ci * this.chunkBytes) / this.pageSize;
      c.recv &= ~(1 << bit);
      if (c.data !== null) c.data.fill(0, bit * this.pageSize, (bit + 1) * this.pageSize);
    }
  }

  isReceived(block: string, blockOffset: number): boolean {
    const img = this.image(block, blockOffset, this.pageSize, -1);
    const ci = Math.floor(blockOffset / this.chunkBytes);
    const c = img.chunks.get(ci);
    return c !== undefined && (c.recv & (1 << ((blockOffset - ci * this.chunkBytes) / this.pageSize))) !== 0;
  }

  /** Number of target pages received (and not discarded since) in the block. */
  receivedPages(block: string): number {
    const img = this.image(block, 0, 0, -1);
    let n = 0;
    for (const c of img.chunks.values()) {
      let v = c.recv;
      while (v) {
        v &= v - 1;
        n++;
      }
    }
    return n;
  }

  /** Copy of one page (zeros if never written). */
  readPage(block: string, blockOffset: number): Uint8Array {
    const v = this.pageView(block, blockOffset, false, -1);
    return v === null ? new Uint8Array(this.pageSize) : v.slice();
  }

  /** The whole block's final content (never-sent pages read as zero). */
  content(block: string): Buffer {
    const img = this.image(block, 0, 0, -1);
    const size = img.info.usedLength;
    if (size > this.maxMaterialize) throw protocolError('BAD_LENGTH', `block of ${size} bytes`, -1, 'RamImage.content', `at most ${this.maxMaterialize} bytes (maxMaterialize)`);
    const out = Buffer.alloc(size);
    for (const [ci, c] of img.chunks) if (c.data !== null) out.set(c.data, ci * this.chunkBytes);
    return out;
  }

  /** Received bitmap in the postcopy-recovery wire format (little-endian 64-bit words). */
  receivedBitmap(block: string): Uint8Array {
    const img = this.image(block, 0, 0, -1);
    const bytes = recvBitmapBytes(img.info.usedLength, this.pageSize);
    if (bytes > this.maxMaterialize) throw protocolError('BAD_LENGTH', `bitmap of ${bytes} bytes`, -1, 'RamImage.receivedBitmap', `at most ${this.maxMaterialize} bytes`);
    const out = new Uint8Array(bytes);
    for (const [ci, c] of img.chunks) {
      for (let k = 0; k < PAGES_PER_CHUNK; k++) {
        if (c.recv & (1 << k)) {
          const page = ci * PAGES_PER_CHUNK + k;
          // Little-endian words: bit i of the bitmap is bit (i % 8) of byte i / 8.
          out[page >>> 3] |= 1 << (page & 7);
        }
      }
    }
    return out;
  }
}
