// What the control client described (docs/migration-protocol.md hello: mode, pid, Firecracker-layout regions), and the
// mapping from wire coordinates (RAMBlock name, byte offset, length) to umem-compat device pages. Every
// range that comes off the wire goes through WireMap.validate before any ioctl, so a hostile source can
// never make the daemon write outside a registered region.
import { ProtocolError, type RamBlockInfo } from '../protocol/index.js';
import { RegionTable, type UmemRegionSpec } from '../umem-compat/index.js';
import { DaemonError } from './errors.js';

export type PlacementMode = 'missing' | 'minor';

/** What the control client handed over, parsed and checked. */
export interface ControlHello {
  version: number;
  pid?: number;
  mode: PlacementMode;
  regions: UmemRegionSpec[];
  /** Per region: did the client name it? (Firecracker does not: blocks then bind by order.) */
  named: boolean[];
  /** The client sent Firecracker's bare array. */
  firecracker: boolean;
}

export const MAX_REGIONS = 256;

function bad(message: string): DaemonError {
  return new DaemonError('BAD_HELLO', `control message: ${message}`);
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Parse the control client's JSON (ours, or Firecracker's bare region array). Throws DaemonError BAD_HELLO. */
export function parseHello(payload: unknown, hostPageSize = 4096): ControlHello {
  let obj: Record<string, unknown>;
  let firecracker = false;
  if (Array.isArray(payload)) {
    obj = { version: 1, mode: 'missing', regions: payload };
    firecracker = true;
  } else if (payload && typeof payload === 'object') {
    obj = payload as Record<string, unknown>;
  } else {
    throw bad(`expected a JSON object or region array, got ${String(JSON.stringify(payload)).slice(0, 80)}`);
  }
  const version = obj.version === undefined ? 1 : uint(obj.version, 'version');
  if (version !== 1) throw bad(`version ${version} is not supported (this daemon speaks 1)`);
  const mode = obj.mode === undefined ? 'missing' : obj.mode;
  if (mode !== 'missing' && mode !== 'minor') throw bad(`mode must be "missing" or "minor", got ${JSON.stringify(mode)}`);
  let pid: number | undefined;
  if (obj.pid !== undefined) {
    pid = uint(obj.pid, 'pid');
    if (pid === 0) throw bad('pid must be positive');
  }
  const list = obj.regions;
  if (!Array.isArray(list) || list.length === 0) throw bad('regions must be a non-empty array');
  if (list.length > MAX_REGIONS) throw bad(`${list.length} regions, at most ${MAX_REGIONS}`);
  const regions: UmemRegionSpec[] = [];
  const named: boolean[] = [];
  list.forEach((r: unknown, i: number) => {
    if (!r || typeof r !== 'object') throw bad(`regions[${i}] is not an object`);
    const o = r as Record<string, unknown>;
    const hasName = typeof o.name === 'string' && o.name.length > 0;
    if (o.name !== undefined && !hasName) throw bad(`regions[${i}].name must be a non-empty string`);
    if (hasName && Buffer.byteLength(o.name as string) > 255) throw bad(`regions[${i}].name is longer than 255 bytes`);
    const pageSize = uint(o.page_size ?? o.page_size_kib ?? hostPageSize, `regions[${i}].page_size`);
    if (pageSize !== hostPageSize) throw bad(`regions[${i}]: page size ${pageSize} is not supported (this daemon serves ${hostPageSize}-byte pages)`);
    regions.push({
      name: hasName ? (o.name as string) : `region${i}`,
      base: uint(o.base_host_virt_addr, `regions[${i}].base_host_virt_addr`),
      size: uint(o.size, `regions[${i}].size`),
      offset: uint(o.offset ?? 0, `regions[${i}].offset`),
      pageSize,
    });
    named.push(hasName);
  });
  if (new Set(regions.map((r) => r.name)).size !== regions.length) throw bad('two regions have the same name');
  // Alignment, overlap, 2^53: umem-compat's table checks them; turn its error into ours.
  try {
    new RegionTable(regions, hostPageSize);
  } catch (e) {
    throw bad((e as Error).message);
  }
  return { version, pid, mode, regions, named, firecracker };
}

interface WireRegion {
  name: string;
  size: number;
  firstPage: number;
}

/**
 * Block name ↔ device pages. Allocation free on the hot path (validate). Built from the same region specs
 * the umem-compat device was attached with, so device page numbers agree.
 */
export class WireMap {
  readonly pageSize: number;
  private readonly regions: WireRegion[];
  private byName = new Map<string, WireRegion>();
  private named: boolean[];
  private last: WireRegion | null = null;

  constructor(specs: readonly UmemRegionSpec[], pageSize: number, named?: readonly boolean[]) {
    this.pageSize = pageSize;
    let first = 0;
    this.regions = specs.map((s, i) => {
      const w = { name: s.name ?? `region${i}`, size: s.size, firstPage: first };
      first += s.size / pageSize;
      return w;
    });
    this.named = named ? [...named] : specs.map(() => true);
    for (const r of this.regions) this.byName.set(r.name, r);
  }

  /** Current block names, in region order (after bindBlockList for unnamed regions). */
  get names(): string[] {
    return this.regions.map((r) => r.name);
  }

  /** Adopt names decided elsewhere (e.g. by the thread that read the MEM_SIZE list). */
  setNames(names: readonly string[]): void {
    if (names.length !== this.regions.length) throw new DaemonError('INTERNAL', `setNames: ${names.length} names for ${this.regions.length} regions`);
    this.byName = new Map();
    names.forEach((n, i) => { this.regions[i].name = n; this.named[i] = true; this.byName.set(n, this.regions[i]); });
    this.last = null;
  }

  /**
   * Device page of a wire range after checking it: `block` must be a region, `offset` page aligned and
   * inside it, `length` a positive multiple of the page size that ends inside it. Throws ProtocolError.
   */
  validate(block: string, offset: number, length: number, streamOffset = -1, context = 'ram record'): number {
    let r = this.last;
    if (r === null || r.name !== block) {
      r = this.byName.get(block) ?? null;
      if (r === null) {
        throw new ProtocolError('UNKNOWN_BLOCK', `block "${block.slice(0, 64)}" is not a registered region`, {
          offset: streamOffset, context, expected: `one of ${this.names.map((n) => `"${n}"`).join(', ')}`,
        });
      }
      this.last = r;
    }
    const ps = this.pageSize;
    if (!(offset >= 0 && offset < r.size && offset % ps === 0)) {
      throw new ProtocolError('BAD_OFFSET', `offset ${offset} (0x${Math.max(0, offset).toString(16)}) is outside block "${block}" or not page aligned`, {
        offset: streamOffset, context, expected: `a multiple of ${ps} below ${r.size}`,
      });
    }
    if (!(length > 0 && length % ps === 0 && offset + length <= r.size)) {
      throw new ProtocolError('BAD_LENGTH', `length ${length} at offset ${offset} runs outside block "${block}" or is not whole pages`, {
        offset: streamOffset, context, expected: `a positive multiple of ${ps} ending at or before ${r.size}`,
      });
    }
    return r.firstPage + offset / ps;
  }

  /** (block name, byte offset) of a device page: what a page request names. */
  blockOf(page: number): { name: string; offset: number } {
    for (let i = this.regions.length - 1; i >= 0; i--) {
      const r = this.regions[i];
      if (page >= r.firstPage) return { name: r.name, offset: (page - r.firstPage) * this.pageSize };
    }
    throw new DaemonError('INTERNAL', `page ${page} is in no region`);
  }

  /** Region index of a device page (no allocation). */
  regionIndexOf(page: number): number {
    for (let i = this.regions.length - 1; i > 0; i--) if (page >= this.regions[i].firstPage) return i;
    return 0;
  }

  regionName(i: number): string {
    return this.regions[i].name;
  }

  regionFirstPage(i: number): number {
    return this.regions[i].firstPage;
  }

  /**
   * Match the source's MEM_SIZE block list: same count, names and sizes. When the control client named no
   * region (Firecracker), the blocks name them in order.
   */
  bindBlockList(blocks: readonly RamBlockInfo[], streamOffset = -1): void {
    const context = 'ram MEM_SIZE block list';
    const describe = this.regions.map((r) => `"${r.name}" (${r.size} bytes)`).join(', ');
    if (blocks.length !== this.regions.length) {
      throw new ProtocolError('UNKNOWN_BLOCK', `source announces ${blocks.length} RAM block(s), the destination registered ${this.regions.length} region(s)`, {
        offset: streamOffset, context, expected: describe,
      });
    }
    if (this.named.every((n) => !n)) this.setNames(blocks.map((b) => b.idstr));
    for (const b of blocks) {
      const r = this.byName.get(b.idstr);
      if (!r) {
        throw new ProtocolError('UNKNOWN_BLOCK', `source block "${b.idstr.slice(0, 64)}" matches no registered region`, { offset: streamOffset, context, expected: describe });
      }
      if (b.usedLength !== r.size) {
        throw new ProtocolError('BAD_LENGTH', `source block "${b.idstr}" is ${b.usedLength} bytes, the destination region is ${r.size}`, { offset: streamOffset, context, expected: `${r.size} bytes` });
      }
      if (b.pageSize !== undefined && b.pageSize !== this.pageSize) {
        throw new ProtocolError('BAD_LENGTH', `source block "${b.idstr}" uses ${b.pageSize}-byte pages, the destination ${this.pageSize}`, { offset: streamOffset, context, expected: `${this.pageSize}` });
      }
    }
  }
}
