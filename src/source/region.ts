// A migratable memory region: a memfd mapped MAP_SHARED. The memfd is what makes it migratable: the
// source can find never-written pages (holes) without reading them, and the destination process hands
// the same kind of region to the daemon, which maps it too (minor mode) or fills it with UFFDIO_COPY.
import createDebug from 'debug';
import { createMemfd, mapFd, pageSize, MAX_VIEW_BYTES, type MemoryRegion } from '../uffd/memory.js';

const log = createDebug('postcopy:source:region');

export interface MigratableRegion {
  /** RAMBlock name on the wire (e.g. "toy.ram"). */
  readonly name: string;
  /** The memfd (close-on-exec). */
  readonly fd: number;
  /** Offset of the region inside the memfd (always 0 here). */
  readonly fdOffset: number;
  /** Start address of the shared mapping. */
  readonly addr: number;
  /** Bytes (a multiple of the page size). */
  readonly size: number;
  /** Zero-copy view of [offset, offset+len) (default: to the end, at most 4 GiB per window). */
  view(offset?: number, len?: number): Uint8Array;
  /** Unmap and close the memfd (idempotent). Views taken before are dead afterwards. */
  close(): void;
}

export class RegionError extends Error {
  override name = 'RegionError';
  readonly code = 'BAD_REGION';
}

/** memfd_create(name) + ftruncate(size) + mmap(MAP_SHARED). The memory starts zeroed. */
export function createMigratableRegion(size: number, name: string): MigratableRegion {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255) {
    throw new RegionError(`region name must be 1..255 bytes, got ${JSON.stringify(name)}`);
  }
  if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
    throw new RegionError(`region "${name}": size ${size} must be a positive multiple of the page size ${pageSize}`);
  }
  const memfd = createMemfd(name, size);
  let mapping: MemoryRegion;
  try {
    mapping = mapFd(memfd.fd, size, { shared: true });
  } catch (e) {
    memfd.close();
    throw e;
  }
  log('region %s: %d bytes, memfd %d at 0x%s', name, size, memfd.fd, mapping.addr.toString(16));
  let open = true;
  return {
    name,
    fd: memfd.fd,
    fdOffset: 0,
    addr: mapping.addr,
    size,
    view(offset = 0, len?: number): Uint8Array {
      if (!open) throw new RegionError(`region "${name}" is closed`);
      return mapping.view(offset, len ?? Math.min(size - offset, MAX_VIEW_BYTES));
    },
    close(): void {
      if (!open) return;
      open = false;
      mapping.unmap();
      memfd.close();
    },
  };
}
