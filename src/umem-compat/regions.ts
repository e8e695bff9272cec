// Region table: the guest-side address ranges one userfaultfd covers, and the conversion between fault
// addresses, (region, page-in-region) pairs and *device page offsets*.
//
// A device page offset is a host-page index in the concatenation of the regions in table order. For a
// one-region table it is exactly the umem offset (host-page index relative to the region start,
// spec-notes §1.5); for a multi-region table use `locate()` / `devicePage()` to convert.
import { UmemError } from './errors.js';

export interface UmemRegionSpec {
  /** Guest-side start address (in the process that touches the memory). Page aligned. */
  base: number;
  /** Bytes; must be a multiple of pageSize. */
  size: number;
  /** Byte offset of this region within the memfd (Firecracker's `offset`); default 0. */
  offset?: number;
  /** Bytes per page (host page size unless hugetlb); default: the device page size. */
  pageSize?: number;
  name?: string;
}

export interface UmemRegion {
  readonly index: number;
  readonly name: string;
  readonly base: number;
  readonly size: number;
  readonly offset: number;
  readonly pageSize: number;
  /** Device page offset of this region's first page. */
  readonly firstPage: number;
  readonly pageCount: number;
}

/** Firecracker's region entry (`GuestRegionUffdMapping`), as sent on the control socket. */
export interface FirecrackerRegion {
  base_host_virt_addr: number;
  size: number;
  offset: number;
  /** Firecracker names it page_size_kib but stores bytes; page_size wins when both are present. */
  page_size?: number;
  page_size_kib?: number;
  name?: string;
}

/** Convert Firecracker/docs/migration-protocol.md region entries into specs (validated later by RegionTable). */
export function regionsFromFirecracker(entries: readonly FirecrackerRegion[]): UmemRegionSpec[] {
  if (!Array.isArray(entries)) throw new UmemError('EINVAL', 'region table is not an array', { op: 'regionsFromFirecracker' });
  return entries.map((e, i) => ({
    base: e.base_host_virt_addr,
    size: e.size,
    offset: e.offset ?? 0,
    pageSize: e.page_size ?? e.page_size_kib,
    name: e.name ?? `region${i}`,
  }));
}

function checkInt(v: unknown, what: string, i: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new UmemError('EINVAL', `region ${i}: ${what} ${String(v)} is not a non-negative safe integer`, { op: 'regions', expected: 'integer < 2^53' });
  }
  return v;
}

export class RegionTable {
  readonly regions: readonly UmemRegion[];
  readonly pageSize: number;
  readonly pageCount: number;
  /** Sum of region sizes. */
  readonly totalSize: number;
  // Fast path for the common one-region table.
  private readonly base0: number;
  private readonly end0: number;
  private readonly single: boolean;

  constructor(specs: readonly UmemRegionSpec[], pageSize: number) {
    if (!Array.isArray(specs) || specs.length === 0) throw new UmemError('EINVAL', 'region table is empty', { op: 'regions' });
    if (!Number.isSafeInteger(pageSize) || pageSize <= 0 || (pageSize & (pageSize - 1)) !== 0) {
      throw new UmemError('EINVAL', `page size ${pageSize} is not a power of two`, { op: 'regions' });
    }
    const out: UmemRegion[] = [];
    let firstPage = 0;
    specs.forEach((s, i) => {
      const base = checkInt(s.base, 'base', i);
      const size = checkInt(s.size, 'size', i);
      const offset = checkInt(s.offset ?? 0, 'offset', i);
      const ps = s.pageSize === undefined ? pageSize : checkInt(s.pageSize, 'pageSize', i);
      if (ps !== pageSize) throw new UmemError('EINVAL', `region ${i}: page size ${ps} differs from the device page size ${pageSize}`, { op: 'regions' });
      if (size === 0 || size % pageSize || base % pageSize || offset % pageSize) {
        throw new UmemError('EINVAL', `region ${i}: base 0x${base.toString(16)}, size ${size}, offset ${offset} must be non-empty and page aligned`, { op: 'regions', expected: `multiples of ${pageSize}` });
      }
      if (!Number.isSafeInteger(base + size)) throw new UmemError('EINVAL', `region ${i}: end beyond 2^53`, { op: 'regions' });
      const pageCount = size / pageSize;
      out.push({ index: i, name: s.name ?? `region${i}`, base, size, offset, pageSize, firstPage, pageCount });
      firstPage += pageCount;
    });
    // Overlapping guest ranges would make an address ambiguous.
    const sorted = [...out].sort((a, b) => a.base - b.base);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].base < sorted[i - 1].base + sorted[i - 1].size) {
        throw new UmemError('EINVAL', `regions ${sorted[i - 1].index} and ${sorted[i].index} overlap`, { op: 'regions' });
      }
    }
    this.regions = out;
    this.pageSize = pageSize;
    this.pageCount = firstPage;
    this.totalSize = firstPage * pageSize;
    this.single = out.length === 1;
    this.base0 = out[0].base;
    this.end0 = out[0].base + out[0].size;
  }

  /** Device page offset of a guest address, or -1 when it lies in no region. Allocation free. */
  pageOfAddress(addr: number): number {
    if (this.single) {
      if (addr < this.base0 || addr >= this.end0) return -1;
      return Math.floor((addr - this.base0) / this.pageSize);
    }
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i];
      if (addr >= r.base && addr < r.base + r.size) return r.firstPage + Math.floor((addr - r.base) / this.pageSize);
    }
    return -1;
  }

  /** Region index holding a device page (caller validated 0 <= page < pageCount). Allocation free. */
  regionIndexOf(page: number): number {
    if (this.single) return 0;
    const rs = this.regions;
    for (let i = rs.length - 1; i > 0; i--) if (page >= rs[i].firstPage) return i;
    return 0;
  }

  /** Guest address of a device page. */
  guestAddress(page: number): number {
    const r = this.regions[this.regionIndexOf(page)];
    return r.base + (page - r.firstPage) * this.pageSize;
  }

  /** Byte offset in the memfd of a device page. */
  fileOffset(page: number): number {
    const r = this.regions[this.regionIndexOf(page)];
    return r.offset + (page - r.firstPage) * this.pageSize;
  }

  /** Pages from `page` to the end of its region (ranges never cross a region boundary). */
  pagesLeftInRegion(page: number): number {
    const r = this.regions[this.regionIndexOf(page)];
    return r.firstPage + r.pageCount - page;
  }

  /** Device page → { region, page within region }. */
  locate(page: number): { region: UmemRegion; pageInRegion: number } {
    if (!Number.isSafeInteger(page) || page < 0 || page >= this.pageCount) {
      throw new UmemError('EINVAL', `page offset ${page} is beyond the end (${this.pageCount} pages)`, { op: 'locate', offset: page, pageCount: this.pageCount });
    }
    const region = this.regions[this.regionIndexOf(page)];
    return { region, pageInRegion: page - region.firstPage };
  }

  /** (region index or name, page within region) → device page. */
  devicePage(region: number | string, pageInRegion: number): number {
    const r = typeof region === 'number' ? this.regions[region] : this.regions.find((x) => x.name === region);
    if (!r) throw new UmemError('EINVAL', `no region ${String(region)}`, { op: 'devicePage' });
    if (!Number.isSafeInteger(pageInRegion) || pageInRegion < 0 || pageInRegion >= r.pageCount) {
      throw new UmemError('EINVAL', `page ${pageInRegion} is beyond the end of region ${r.name} (${r.pageCount} pages)`, { op: 'devicePage', offset: pageInRegion, pageCount: r.pageCount });
    }
    return r.firstPage + pageInRegion;
  }
}
