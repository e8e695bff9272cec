// Reads pages of the migrated regions without staging copies: zero-copy windows (≤ 1 GiB each, koffi views
// over more than 4 GiB kill the process), a cheap all-zero test, and memfd holes found with
// lseek(SEEK_DATA/SEEK_HOLE) so never-written pages go as ZERO records without being read (reading a shmem
// hole through the mapping would allocate a page).
import createDebug from 'debug';
import { libc, errno, strerror } from '../uffd/libc.js';
import { addressOf } from '../uffd/memory.js';
import type { BlockInfo, PageMap } from './page-map.js';

const log = createDebug('postcopy:source:reader');

const WINDOW_BYTES = 1 << 30;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

const lseek = libc.func('long lseek(int fd, long offset, int whence)');

interface Window {
  bytes: Buffer;
  words: Int32Array;
  /** Address of bytes[0] (for iovecs pointing into the region). */
  addr: number;
}

/** Data/hole extent of a block's memfd, in bytes relative to the block. */
interface Extent { start: number; end: number; hole: boolean }

export class PageReader {
  private readonly windows: (Window | undefined)[][];
  private readonly extents: (Extent | null)[];
  private readonly holesUsable: boolean[];
  private readonly zeroPage: Buffer;
  /** Set by locate(): the window and byte offset of the located page. */
  win!: Window;
  off = 0;

  constructor(private readonly map: PageMap, opts: { detectHoles?: boolean } = {}) {
    this.windows = map.blocks.map((b) => new Array(Math.ceil(b.size / WINDOW_BYTES)));
    this.extents = map.blocks.map(() => null);
    this.holesUsable = map.blocks.map((b) => opts.detectHoles !== false && Number.isInteger(b.region.fd) && (b.region.fd as number) >= 0);
    this.zeroPage = Buffer.alloc(map.pageSize);
  }

  /** Point win/off at global page `page` of `block`. */
  locate(block: BlockInfo, page: number): void {
    const byte = (page - block.firstPage) * this.map.pageSize;
    const w = Math.floor(byte / WINDOW_BYTES);
    let win = this.windows[block.index][w];
    if (!win) win = this.openWindow(block, w);
    this.win = win;
    this.off = byte - w * WINDOW_BYTES;
  }

  private openWindow(block: BlockInfo, w: number): Window {
    const start = w * WINDOW_BYTES;
    const len = Math.min(WINDOW_BYTES, block.size - start);
    const v = block.region.view(start, len);
    if (!(v instanceof Uint8Array) || v.byteLength !== len) {
      throw new Error(`region "${block.name}": view(${start}, ${len}) returned ${v?.byteLength} bytes`);
    }
    if (v.byteOffset % 4 !== 0) throw new Error(`region "${block.name}": view is not 4-byte aligned`);
    const bytes = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    const win: Window = { bytes, words: new Int32Array(v.buffer, v.byteOffset, v.byteLength >>> 2), addr: addressOf(bytes) };
    this.windows[block.index][w] = win;
    return win;
  }

  /**
   * True when page `page` of `block` is all zero. A memfd hole answers without touching memory; otherwise the
   * first word decides for almost every non-zero page, and only a page starting with zeros costs a memcmp.
   */
  isZero(block: BlockInfo, page: number): boolean {
    if (this.holesUsable[block.index] && this.inHole(block, (page - block.firstPage) * this.map.pageSize)) return true;
    this.locate(block, page);
    const { words, bytes } = this.win;
    const off = this.off;
    if (words[off >>> 2] !== 0) return false;
    return bytes.compare(this.zeroPage, 0, this.zeroPage.length, off, off + this.map.pageSize) === 0;
  }

  /** Whether byte `pos` of the block lies in a hole of its memfd (extent cached; two lseeks per extent). */
  private inHole(block: BlockInfo, pos: number): boolean {
    const cached = this.extents[block.index];
    if (cached && pos >= cached.start && pos < cached.end) return cached.hole;
    const base = block.region.fdOffset ?? 0;
    const fd = block.region.fd as number;
    const data = Number(lseek(fd, base + pos, SEEK_DATA));
    let ext: Extent;
    if (data < 0) {
      const e = errno();
      if (e !== ENXIO) {
        log('lseek(SEEK_DATA) on fd %d failed: %s; hole detection off for "%s"', fd, strerror(e), block.name);
        this.holesUsable[block.index] = false;
        return false;
      }
      ext = { start: pos, end: block.size, hole: true };
    } else if (data - base > pos) {
      ext = { start: pos, end: Math.min(block.size, floorTo(data - base, this.map.pageSize)), hole: true };
    } else {
      const hole = Number(lseek(fd, base + pos, SEEK_HOLE));
      if (hole < 0) {
        log('lseek(SEEK_HOLE) on fd %d failed: %s; hole detection off for "%s"', fd, strerror(errno()), block.name);
        this.holesUsable[block.index] = false;
        return false;
      }
      ext = { start: pos, end: Math.min(block.size, Math.max(ceilTo(hole - base, this.map.pageSize), pos + this.map.pageSize)), hole: false };
    }
    this.extents[block.index] = ext;
    return ext.hole;
  }
}

const floorTo = (x: number, a: number): number => Math.floor(x / a) * a;
const ceilTo = (x: number, a: number): number => Math.ceil(x / a) * a;
