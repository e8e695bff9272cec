// The source's view of what it migrates: blocks (one per region), a global page numbering, the sent
// bitmap (DESIGN §5) and the validation of page requests that arrive from the wire.
import { MigrationError } from './errors.js';

/** What migrate() needs from a region (src/source/region.ts's MigratableRegion fits). */
export interface SourceRegion {
  /** RAMBlock idstr on the wire (1..255 bytes, unique). */
  readonly name: string;
  /** Bytes; a multiple of the page size. */
  readonly size: number;
  /** Zero-copy view of [offset, offset+length) of the region's memory (windows ≤ 4 GiB). */
  view(offset?: number, length?: number): Uint8Array;
  /** The memfd behind the region, if any: lets the source find holes (never-written pages) without reading them. */
  readonly fd?: number;
  /** Offset of the region inside `fd` (default 0). */
  readonly fdOffset?: number;
}

export interface BlockInfo {
  readonly index: number;
  readonly name: string;
  readonly nameBytes: Buffer;
  readonly size: number;
  readonly pages: number;
  /** Global index of the block's first page. */
  readonly firstPage: number;
  readonly region: SourceRegion;
}

export class PageMap {
  readonly pageSize: number;
  readonly pageShift: number;
  readonly blocks: BlockInfo[];
  readonly totalPages: number;
  readonly totalBytes: number;
  /** 1 = sent (on any channel). One byte per page: indexOf(0) finds the next unsent page natively. */
  readonly sent: Uint8Array;
  sentCount = 0;
  private readonly byName = new Map<string, BlockInfo>();

  constructor(regions: readonly SourceRegion[], pageSize = 4096) {
    if (!Number.isInteger(pageSize) || pageSize < 1024 || (pageSize & (pageSize - 1)) !== 0) {
      throw new MigrationError('BAD_OPTIONS', `page size must be a power of two ≥ 1024, got ${pageSize}`);
    }
    if (!Array.isArray(regions) || regions.length === 0) throw new MigrationError('BAD_OPTIONS', 'regions: at least one region is required');
    this.pageSize = pageSize;
    this.pageShift = Math.log2(pageSize);
    const blocks: BlockInfo[] = [];
    let firstPage = 0;
    for (const region of regions) {
      const name = region?.name;
      if (typeof name !== 'string' || name.length === 0) throw new MigrationError('BAD_OPTIONS', 'every region needs a non-empty name');
      const nameBytes = Buffer.from(name, 'latin1');
      if (nameBytes.toString('latin1') !== name) throw new MigrationError('BAD_OPTIONS', `region name "${name}" must be a byte string (latin-1)`);
      if (nameBytes.length > 255) throw new MigrationError('BAD_OPTIONS', `region name "${name}" is longer than 255 bytes`);
      if (this.byName.has(name)) throw new MigrationError('BAD_OPTIONS', `two regions are named "${name}"`);
      const size = region.size;
      if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
        throw new MigrationError('BAD_OPTIONS', `region "${name}": size ${size} is not a positive multiple of ${pageSize}`);
      }
      if (typeof region.view !== 'function') throw new MigrationError('BAD_OPTIONS', `region "${name}" has no view() method`);
      const block: BlockInfo = { index: blocks.length, name, nameBytes, size, pages: size / pageSize, firstPage, region };
      blocks.push(block);
      this.byName.set(name, block);
      firstPage += block.pages;
    }
    this.blocks = blocks;
    this.totalPages = firstPage;
    this.totalBytes = firstPage * pageSize;
    this.sent = new Uint8Array(new SharedArrayBuffer(firstPage)); // shared with the urgent worker (urgent-server.ts)
  }

  block(name: string): BlockInfo | undefined {
    return this.byName.get(name);
  }

  /** Block holding global page `page` (few blocks: linear scan). */
  blockOfPage(page: number): BlockInfo {
    const b = this.blocks;
    for (let i = b.length - 1; i > 0; i--) if (page >= b[i].firstPage) return b[i];
    return b[0];
  }

  get allSent(): boolean {
    return this.sentCount === this.totalPages;
  }

  /** Next unsent global page at or after `from`, wrapping around; -1 when every page is sent. */
  nextUnsent(from: number): number {
    if (this.sentCount === this.totalPages) return -1;
    const start = from >= this.totalPages || from < 0 ? 0 : from;
    const i = this.sent.indexOf(0, start);
    if (i >= 0) return i;
    return this.sent.indexOf(0);
  }

  /**
   * Validate a page request from the wire (byte offset and byte length within a named block) and return the
   * global page range it covers. A hostile destination gets a MigrationError BAD_REQUEST, never a read
   * outside the region.
   */
  resolveRequest(blockName: string, start: number, length: number): { block: BlockInfo; first: number; count: number } {
    const block = this.byName.get(blockName);
    const details = { block: blockName, start, length };
    if (!block) {
      throw new MigrationError('BAD_REQUEST', `destination requested pages of unknown block ${JSON.stringify(blockName)} (known: ${this.blocks.map((b) => JSON.stringify(b.name)).join(', ')})`, details);
    }
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length <= 0) {
      throw new MigrationError('BAD_REQUEST', `destination requested an invalid range of "${blockName}": start ${start}, length ${length}`, details);
    }
    if (start % this.pageSize !== 0 || length % this.pageSize !== 0) {
      throw new MigrationError('BAD_REQUEST', `destination requested a range of "${blockName}" that is not page aligned: start 0x${start.toString(16)}, length 0x${length.toString(16)} (page size ${this.pageSize})`, details);
    }
    if (start >= block.size || length > block.size - start) {
      throw new MigrationError('BAD_REQUEST', `destination requested [0x${start.toString(16)}, 0x${(start + length).toString(16)}) outside block "${blockName}" of 0x${block.size.toString(16)} bytes`, details);
    }
    return { block, first: block.firstPage + start / this.pageSize, count: length / this.pageSize };
  }
}
