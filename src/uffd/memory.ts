// Memory to register: anonymous mappings, memfds (shared, mappable twice: the umem shmem model), hugetlbfs
// 2 MiB regions; munmap / mremap / madvise; and zero-copy views of a mapping from JS.
//
// A view is a Uint8Array over koffi.view(addr, len). Views have no owner: touching one after unmap() is a
// SIGSEGV, and touching a registered range from the thread that resolves its faults is a deadlock.
// koffi.view over more than 4 GiB kills the process, so views are limited to MAX_VIEW_BYTES windows.
import fs from 'node:fs';
import {
  PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_HUGETLB, MAP_HUGE_2MB, MAP_NORESERVE, MAP_FIXED,
  MFD_CLOEXEC, MFD_HUGETLB, MFD_HUGE_2MB, MADV_DONTNEED, MADV_REMOVE, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
  MADV_POPULATE_READ, MADV_POPULATE_WRITE, MREMAP_MAYMOVE, MREMAP_FIXED, HUGE_PAGE_2M,
} from './abi.js';
import { koffi, libc, errno, mmapFn, munmapFn, mremapFn, madviseFn, ftruncateFn, fallocateFn, closeFn, sysconfFn } from './libc.js';
import { SyscallError } from './errors.js';

/** The base page size (sysconf(_SC_PAGESIZE)). */
export const pageSize: number = sysconfFn(30);
export const hugePageSize = HUGE_PAGE_2M;
/** Largest single view (koffi.view beyond 4 GiB aborts the process). */
export const MAX_VIEW_BYTES = 4 * 1024 * 1024 * 1024;

export interface MemoryRegion {
  readonly addr: number;
  readonly length: number;
  /** Zero-copy bytes of [offset, offset+len) (default: to the end, capped at MAX_VIEW_BYTES). */
  view(offset?: number, len?: number): Uint8Array;
  unmap(): void;
  readonly mapped: boolean;
}

class Mapping implements MemoryRegion {
  mapped = true;
  constructor(readonly addr: number, readonly length: number, readonly hugetlb: boolean) {}

  view(offset = 0, len?: number): Uint8Array {
    if (!this.mapped) throw new Error(`region 0x${this.addr.toString(16)} is unmapped`);
    const n = len ?? Math.min(this.length - offset, MAX_VIEW_BYTES);
    if (!Number.isInteger(offset) || !Number.isInteger(n) || offset < 0 || n < 0 || offset + n > this.length) {
      throw new RangeError(`view [${offset}, ${offset}+${n}) outside region of ${this.length} bytes`);
    }
    if (n > MAX_VIEW_BYTES) throw new RangeError(`view of ${n} bytes exceeds the ${MAX_VIEW_BYTES}-byte window limit`);
    if (n === 0) return new Uint8Array(0);
    return new Uint8Array(koffi.view(this.addr + offset, n) as ArrayBuffer);
  }

  unmap(): void {
    if (!this.mapped) return;
    if (munmapFn(this.addr, this.length) < 0) throw new SyscallError('munmap', errno());
    this.mapped = false;
  }
}

function checkLen(len: number, align: number, what: string): void {
  if (!Number.isSafeInteger(len) || len <= 0 || len % align !== 0) {
    throw new RangeError(`${what}: length ${len} must be a positive multiple of ${align}`);
  }
}

function doMmap(addr: number, len: number, prot: number, flags: number, fd: number, offset: number, hugetlb: boolean): Mapping {
  const p = mmapFn(addr, len, prot, flags, fd, offset);
  if (p === -1) {
    const e = errno();
    throw new SyscallError('mmap', e, hugetlb ? `${len} bytes of 2 MiB huge pages (reserved: ${hugePageInfo().free} free; ` +
      'echo N > /proc/sys/vm/nr_hugepages)' : `${len} bytes`);
  }
  return new Mapping(p, len, hugetlb);
}

/** A private anonymous mapping (MAP_HUGETLB 2 MiB pages with hugetlb). */
export function mapAnonymous(len: number, opts: { hugetlb?: boolean; shared?: boolean; noReserve?: boolean } = {}): MemoryRegion & { hugetlb: boolean } {
  const huge = !!opts.hugetlb;
  checkLen(len, huge ? HUGE_PAGE_2M : pageSize, 'mapAnonymous');
  const flags = (opts.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | (huge ? MAP_HUGETLB | MAP_HUGE_2MB : 0) |
    (opts.noReserve ? MAP_NORESERVE : 0);
  return doMmap(0, len, PROT_READ | PROT_WRITE, flags, -1, 0, huge);
}

export interface Memfd {
  fd: number;
  size: number;
  hugetlb: boolean;
  close(): void;
}

/** memfd_create + ftruncate. With hugetlb the size must be a multiple of 2 MiB and pages must be reserved. */
export function createMemfd(name: string, size: number, opts: { hugetlb?: boolean; closeOnExec?: boolean } = {}): Memfd {
  const huge = !!opts.hugetlb;
  checkLen(size, huge ? HUGE_PAGE_2M : pageSize, 'createMemfd');
  const flags = ((opts.closeOnExec ?? true) ? MFD_CLOEXEC : 0) | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0);
  const fd = memfdCreateFn(name, flags);
  if (fd < 0) throw new SyscallError('memfd_create', errno(), name);
  if (ftruncateFn(fd, size) < 0) {
    const e = errno();
    closeFn(fd);
    throw new SyscallError('ftruncate', e, `memfd ${name} to ${size}`);
  }
  let open = true;
  return {
    fd, size, hugetlb: huge,
    close() { if (open) { closeFn(fd); open = false; } },
  };
}
const memfdCreateFn = libc.func('int memfd_create(const char *name, unsigned int flags)') as (n: string, f: number) => number;

/** Map an fd (memfd, hugetlbfs file...). Shared by default: two mappings of one memfd see the same pages. */
export function mapFd(fd: number, len: number, opts: { offset?: number; shared?: boolean; hugetlb?: boolean; addr?: number } = {}): MemoryRegion & { hugetlb: boolean } {
  const huge = !!opts.hugetlb;
  checkLen(len, huge ? HUGE_PAGE_2M : pageSize, 'mapFd');
  const flags = ((opts.shared ?? true) ? MAP_SHARED : MAP_PRIVATE) | (opts.addr ? MAP_FIXED : 0);
  return doMmap(opts.addr ?? 0, len, PROT_READ | PROT_WRITE, flags, fd, opts.offset ?? 0, huge);
}

/** Map a Memfd whole (hugetlb taken from it). */
export function mapMemfd(m: Memfd, opts: { shared?: boolean } = {}): MemoryRegion & { hugetlb: boolean } {
  return mapFd(m.fd, m.size, { shared: opts.shared ?? true, hugetlb: m.hugetlb });
}

export type MadviseAdvice = 'dontneed' | 'remove' | 'hugepage' | 'nohugepage' | 'populate_read' | 'populate_write';
const ADVICE: Record<MadviseAdvice, number> = {
  dontneed: MADV_DONTNEED,
  remove: MADV_REMOVE,
  hugepage: MADV_HUGEPAGE,
  nohugepage: MADV_NOHUGEPAGE,
  populate_read: MADV_POPULATE_READ,
  populate_write: MADV_POPULATE_WRITE,
};

/** madvise(2). Note: on a range registered with EVENT_REMOVE, DONTNEED/REMOVE block until the REMOVE event is read. */
export function madvise(addr: number, len: number, advice: MadviseAdvice | number): void {
  const a = typeof advice === 'number' ? advice : ADVICE[advice];
  if (a === undefined) throw new TypeError(`unknown madvise advice ${String(advice)}`);
  if (madviseFn(addr, len, a) < 0) throw new SyscallError('madvise', errno(), `${String(advice)} 0x${addr.toString(16)}+${len}`);
}

/** munmap(2) of a raw range (MemoryRegion.unmap() for whole regions). */
export function munmap(addr: number, len: number): void {
  if (munmapFn(addr, len) < 0) throw new SyscallError('munmap', errno());
}

/** mremap(2) (MAYMOVE always; FIXED when newAddr is given). Returns the new address. */
export function mremap(addr: number, oldLen: number, newLen: number, newAddr?: number): number {
  const flags = MREMAP_MAYMOVE | (newAddr !== undefined ? MREMAP_FIXED : 0);
  const p = mremapFn(addr, oldLen, newLen, flags, newAddr ?? 0);
  if (p === -1) throw new SyscallError('mremap', errno());
  return p;
}

/** fallocate(2): allocate (populate the page cache of) a memfd range; MINOR mode only faults on cached pages. */
export function fallocate(fd: number, offset: number, len: number, mode = 0): void {
  if (fallocateFn(fd, mode, offset, len) < 0) throw new SyscallError('fallocate', errno(), `offset ${offset} len ${len}`);
}

/** A zero-copy view of any address range (≤ 4 GiB). The caller guarantees the range stays mapped. */
export function viewAt(addr: number, len: number): Uint8Array {
  if (len > MAX_VIEW_BYTES) throw new RangeError(`view of ${len} bytes exceeds the ${MAX_VIEW_BYTES}-byte window limit`);
  if (len === 0) return new Uint8Array(0);
  return new Uint8Array(koffi.view(addr, len) as ArrayBuffer);
}

/** The address of a Buffer's/typed array's first byte (for UFFDIO_COPY src). Keep the buffer alive meanwhile. */
export function addressOf(buf: Uint8Array): number {
  return Number(koffi.address(buf as Buffer));
}

/** 2 MiB huge page pool (from /proc/meminfo). */
export function hugePageInfo(): { total: number; free: number; sizeBytes: number } {
  try {
    const txt = fs.readFileSync('/proc/meminfo', 'utf8');
    const num = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(txt)?.[1] ?? 0);
    return { total: num('HugePages_Total'), free: num('HugePages_Free'), sizeBytes: num('Hugepagesize') * 1024 };
  } catch {
    return { total: 0, free: 0, sizeBytes: 0 };
  }
}
