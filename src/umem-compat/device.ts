// UmemDevice: the seed's /dev/umem (June 2012, spec-notes §1.2) served by userfaultfd.
//
//   umem                          here
//   open + UMEM_INIT(size)        UmemDevice.init(size, { mode })      → size rounded up, shmemFd
//   mmap(umem_fd) (guest side)    device.guest (in-process) / the other process's registered mapping
//   mmap(shmem_fd) (daemon side)  device.shmemView(page, n)            → write page contents here
//   read(umem_fd) u64 offsets     device.read(buf) / getPageRequests() / getPageRequestsInto(f64)
//   write(umem_fd) u64 offsets    device.write(buf) / markPageCached() / markPagesCachedRaw()
//   UMEM_MAKE_VMA_ANONYMOUS       device.makeVmaAnonymous()
//   close                         device.close()
//
// Backends:
//   'minor'   memfd mapped twice: the guest mapping is registered MINOR|MISSING (MISSING so a hole never
//             silently zero-fills, baseline.md pitfall 9); the shmem view IS the memfd; "mark cached" =
//             UFFDIO_CONTINUE (maps the page-cache page the daemon wrote). The true equivalent of umem's shmem.
//   'missing' guest memory (anonymous in-process, or the process's shared memfd when attached) registered
//             MISSING; the shmem view is a daemon-private staging area (a memfd in-process, anonymous memory
//             when attached); "mark cached" = UFFDIO_COPY from staging into the guest.
//
// Page offsets are *device page offsets*: host-page indexes in the concatenation of the region table (for a
// single region, exactly umem's offset relative to the region). See regions.ts for conversions.
//
// Difference from umem worth knowing: umem gave the guest a private copy of a cached page; with the minor
// backend the guest and the shmem view share the page. So once a page is PRESENT, never write it through
// the shmem view again (place()/placeZero() enforce that with a per-page claim; the raw umem pattern
// "write the view, then markPageCached" is safe only for pages the caller knows are not present yet).
import createDebug from 'debug';
import { Userfaultfd } from '../uffd/userfaultfd.js';
import { UffdEventReader, Poller, createEventfd, eventfdWrite, eventfdRead, closeFd, setNonBlocking, type UffdEvent } from '../uffd/events.js';
import {
  pageSize as hostPageSize, createMemfd, mapFd, mapAnonymous, fallocate, addressOf, type MemoryRegion,
} from '../uffd/memory.js';
import { memcpyAt } from '../uffd/libc.js';
import { UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK } from '../uffd/abi.js';
import { Errno, errnoName } from '../uffd/errors.js';
import { UmemError } from './errors.js';
import { RegionTable, regionsFromFirecracker, type UmemRegion, type UmemRegionSpec, type FirecrackerRegion } from './regions.js';
import { PageStateMap, PAGE_PRESENT, PAGE_PLACING } from './page-state.js';
import { offsetSlots, dataViewOf, putOffset, getOffset } from './offsets.js';
import { UMEM_OFFSET_BYTES } from './constants.js';
import { Backoff } from './backoff.js';

const log = createDebug('postcopy:umem');

export type UmemMode = 'minor' | 'missing';

export interface UmemCommonOptions {
  /** Per-page state shared by every device instance serving this memory (e.g. across worker threads). */
  pageState?: SharedArrayBuffer;
  /** Called for every non-pagefault uffd event (FORK/REMAP/REMOVE/UNMAP). Default: FORK fds are closed. */
  onEvent?: (event: UffdEvent) => void;
  /** Total time a resolver may keep getting EAGAIN before giving up with UmemError EAGAIN. Default 10 s. */
  eagainBudgetMs?: number;
  /** uffd messages per read(). Default 64. */
  eventCapacity?: number;
}

export interface UmemInitOptions extends UmemCommonOptions {
  /** Default 'minor'. */
  mode?: UmemMode;
  /** memfd name. Default 'umem'. */
  name?: string;
}

export interface UmemAttachOptions extends UmemCommonOptions {
  /** The guest process's userfaultfd (handshake and UFFDIO_REGISTER already done by that process). */
  uffd: number | Userfaultfd;
  /** The memfd backing the regions: required for 'minor', optional (unused) for 'missing'. */
  memfd?: number;
  /** Region table (our specs, or Firecracker/docs/migration-protocol.md entries with base_host_virt_addr...). */
  regions: readonly UmemRegionSpec[] | readonly FirecrackerRegion[];
  mode: UmemMode;
  /** Default: the host page size. */
  pageSize?: number;
  /** This instance reads the uffd (page requests). Only one instance per uffd should. Default true. */
  eventReader?: boolean;
  /** close() closes the uffd and memfd. Default true. */
  ownsFds?: boolean;
}

/** What another thread needs to attach its own instance to the same memory (structured-cloneable). */
export interface UmemShareInfo {
  uffd: number;
  memfd?: number;
  regions: UmemRegionSpec[];
  mode: UmemMode;
  pageSize: number;
  pageState: SharedArrayBuffer;
}

export interface UmemMarkResult {
  /** Pages this call made present. */
  placed: number;
  /** Pages already present (EEXIST or known present): woken, counted, not an error. */
  duplicates: number;
  /** Pages another placer was placing at that moment (it will wake the faulting threads). */
  skipped: number;
}

export interface UmemStats {
  /** Page requests delivered (duplicates included). */
  requests: number;
  placed: number;
  /** EEXIST answers and marks of pages already present. */
  duplicates: number;
  /** EAGAIN answers (each followed by a back-off sleep). */
  eagain: number;
  /** Non-pagefault uffd events read. */
  events: number;
  /** Faults at addresses outside the region table (woken, not reported). */
  strayFaults: number;
  /** Marked pages that had never been written (minor: allocated as zero pages in the memfd). */
  zeroFilled: number;
}

interface Backing {
  /** Daemon-side mapping per region (minor: the memfd; missing: staging). */
  views: MemoryRegion[];
  /** Start address of each region's daemon-side view. */
  addrs: number[];
}

export class UmemDevice {
  readonly mode: UmemMode;
  /** Page size (bytes) of every offset. */
  readonly pageSize: number;
  /** Total bytes (UMEM_INIT's rounded size, or the sum of the attached regions). */
  readonly size: number;
  readonly pageCount: number;
  readonly regions: readonly UmemRegion[];
  readonly table: RegionTable;
  readonly uffd: Userfaultfd;
  /** memfd backing the shmem view (init: always; attach: the memfd given, else -1). */
  readonly shmemFd: number;
  /** The guest-side mapping (init only; null when attached to another process). */
  readonly guest: MemoryRegion | null;
  readonly pageState: PageStateMap;
  /** eventfd that interrupt() writes; another thread may eventfdWrite() it to wake a blocked read(). */
  readonly interruptFd: number;
  readonly stats: UmemStats = { requests: 0, placed: 0, duplicates: 0, eagain: 0, events: 0, strayFaults: 0, zeroFilled: 0 };

  /** Like O_NONBLOCK on the umem fd: read() throws EAGAIN instead of waiting. Default false. */
  nonBlocking = false;

  private readonly backing: Backing;
  private readonly eventReader: boolean;
  private readonly ownsFds: boolean;
  private readonly reader: UffdEventReader | null;
  private readonly poller: Poller | null;
  private readonly onEvent?: (e: UffdEvent) => void;
  private readonly backoff: Backoff;
  // Pending requests read from the uffd but not yet returned (ring of device page offsets).
  private ring = new Float64Array(1024);
  private ringHead = 0;
  private ringLen = 0;
  private scratch = new Float64Array(64);
  private closed = false;
  private anonymous = false;

  private constructor(p: {
    mode: UmemMode; table: RegionTable; uffd: Userfaultfd; shmemFd: number; guest: MemoryRegion | null;
    backing: Backing; eventReader: boolean; ownsFds: boolean; opts: UmemCommonOptions;
  }) {
    this.mode = p.mode;
    this.table = p.table;
    this.regions = p.table.regions;
    this.pageSize = p.table.pageSize;
    this.pageCount = p.table.pageCount;
    this.size = p.table.totalSize;
    this.uffd = p.uffd;
    this.shmemFd = p.shmemFd;
    this.guest = p.guest;
    this.backing = p.backing;
    this.eventReader = p.eventReader;
    this.ownsFds = p.ownsFds;
    this.onEvent = p.opts.onEvent;
    this.backoff = new Backoff(p.opts.eagainBudgetMs ?? 10_000);
    this.pageState = new PageStateMap(this.pageCount, p.opts.pageState);
    this.interruptFd = createEventfd({ nonBlocking: true });
    this.reader = p.eventReader ? new UffdEventReader(p.uffd.fd, p.opts.eventCapacity ?? 64) : null;
    this.poller = p.eventReader ? new Poller([p.uffd.fd, this.interruptFd]) : null;
  }

  // ------------------------------------------------------------------------------------------------------
  // construction

  /**
   * UMEM_INIT: a new device over `size` bytes (rounded up to the page size, as the driver did), with its
   * shmem (memfd) and the guest-side mapping registered on a fresh userfaultfd, all in this process.
   * The guest side (`device.guest`) must be touched only from threads that are not resolving faults.
   */
  static init(size: number, opts: UmemInitOptions = {}): UmemDevice {
    const op = 'UMEM_INIT';
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
      throw new UmemError('EINVAL', `size ${String(size)} must be a positive integer`, { op, expected: 'size > 0' });
    }
    const mode = opts.mode ?? 'minor';
    if (mode !== 'minor' && mode !== 'missing') throw new UmemError('EINVAL', `unknown mode ${String(mode)}`, { op, expected: "'minor' | 'missing'" });
    const ps = hostPageSize;
    const rounded = Math.ceil(size / ps) * ps;
    const require = mode === 'minor' ? ['MINOR_SHMEM', 'MISSING_SHMEM'] : [];
    let uffd: Userfaultfd;
    try {
      uffd = Userfaultfd.open({ nonBlocking: true, features: [], require });
    } catch (e) {
      if ((e as { code?: string }).code === 'EFEATURE') {
        throw new UmemError('ENOTSUP', `kernel lacks ${require.join(' + ')} needed by the '${mode}' backend`, { op });
      }
      throw e;
    }
    const cleanup: (() => void)[] = [() => uffd.close()];
    try {
      const memfd = createMemfd(opts.name ?? 'umem', rounded);
      cleanup.push(() => memfd.close());
      const shmem = mapFd(memfd.fd, rounded, { shared: true });
      cleanup.push(() => shmem.unmap());
      const guest = mode === 'minor' ? mapFd(memfd.fd, rounded, { shared: true }) : mapAnonymous(rounded);
      cleanup.push(() => guest.unmap());
      uffd.register(guest.addr, rounded, mode === 'minor' ? { minor: true, missing: true } : { missing: true });
      const table = new RegionTable([{ base: guest.addr, size: rounded, offset: 0, name: opts.name ?? 'umem' }], ps);
      log('init %s: %d bytes (%d pages), guest 0x%s', mode, rounded, rounded / ps, guest.addr.toString(16));
      return new UmemDevice({
        mode, table, uffd, shmemFd: memfd.fd, guest, backing: { views: [shmem], addrs: [shmem.addr] },
        eventReader: true, ownsFds: true, opts,
      });
    } catch (e) {
      for (const f of cleanup.reverse()) { try { f(); } catch { /* best effort */ } }
      throw e;
    }
  }

  /**
   * Serve memory that lives in another process (or another thread's device): wrap its userfaultfd (already
   * handshaken and registered by the owner), map the memfd (minor) or a private staging area (missing).
   * With eventReader (default) the uffd is switched to O_NONBLOCK (shared with the owner's descriptor).
   */
  static attach(o: UmemAttachOptions): UmemDevice {
    const op = 'attach';
    if (!o || (o.mode !== 'minor' && o.mode !== 'missing')) {
      throw new UmemError('EINVAL', `unknown mode ${String(o?.mode)}`, { op, expected: "'minor' | 'missing'" });
    }
    const specs = Array.isArray(o.regions) && o.regions.length && 'base_host_virt_addr' in (o.regions[0] as object)
      ? regionsFromFirecracker(o.regions as FirecrackerRegion[])
      : (o.regions as UmemRegionSpec[]);
    const table = new RegionTable(specs, o.pageSize ?? hostPageSize);
    const uffdFd = typeof o.uffd === 'number' ? o.uffd : o.uffd?.fd;
    if (!Number.isInteger(uffdFd) || (uffdFd as number) < 0) throw new UmemError('EINVAL', 'no userfaultfd descriptor', { op });
    if (o.mode === 'minor' && (o.memfd === undefined || o.memfd < 0)) {
      throw new UmemError('EINVAL', "mode 'minor' needs the memfd (the daemon writes pages into it)", { op });
    }
    const eventReader = o.eventReader ?? true;
    if (eventReader) setNonBlocking(uffdFd as number);
    const uffd = typeof o.uffd === 'number' ? Userfaultfd.fromFd(o.uffd) : o.uffd;
    const views: MemoryRegion[] = [];
    const addrs: number[] = [];
    try {
      if (o.mode === 'minor') {
        for (const r of table.regions) {
          const v = mapFd(o.memfd as number, r.size, { offset: r.offset, shared: true });
          views.push(v);
          addrs.push(v.addr);
        }
      } else {
        // Private staging: lazily populated, so its cost is the pages actually staged.
        const staging = mapAnonymous(table.totalSize, { noReserve: true });
        views.push(staging);
        for (const r of table.regions) addrs.push(staging.addr + r.firstPage * table.pageSize);
      }
    } catch (e) {
      for (const v of views) { try { v.unmap(); } catch { /* best effort */ } }
      throw e;
    }
    return new UmemDevice({
      mode: o.mode, table, uffd, shmemFd: o.memfd ?? -1, guest: null, backing: { views, addrs },
      eventReader, ownsFds: o.ownsFds ?? true, opts: o,
    });
  }

  /** What a worker needs to attach(...{ ...info, eventReader, ownsFds: false }) over the same memory. */
  shareInfo(): UmemShareInfo {
    return {
      uffd: this.uffd.fd,
      memfd: this.shmemFd >= 0 && this.mode === 'minor' ? this.shmemFd : undefined,
      regions: this.regions.map((r) => ({ base: r.base, size: r.size, offset: r.offset, pageSize: r.pageSize, name: r.name })),
      mode: this.mode,
      pageSize: this.pageSize,
      pageState: this.pageState.buffer,
    };
  }

  // ------------------------------------------------------------------------------------------------------
  // the daemon-side shmem view

  /** Bytes of pages [page, page+count) on the daemon side: write page contents here, then markPageCached. */
  shmemView(page: number, count = 1): Uint8Array {
    this.checkRange('shmemView', page, count);
    const ri = this.table.regionIndexOf(page);
    const r = this.regions[ri];
    if (page + count > r.firstPage + r.pageCount) {
      throw new UmemError('EINVAL', `pages ${page}+${count} cross the end of region ${r.name}`, { op: 'shmemView', offset: page, pageCount: this.pageCount });
    }
    const start = this.backing.addrs[ri] - this.backing.views[this.mode === 'minor' ? ri : 0].addr + (page - r.firstPage) * this.pageSize;
    return this.backing.views[this.mode === 'minor' ? ri : 0].view(start, count * this.pageSize);
  }

  /** Address of a page in the daemon-side view (hot path, for memcpy-style writers). */
  shmemAddress(page: number): number {
    const ri = this.table.regionIndexOf(page);
    return this.backing.addrs[ri] + (page - this.regions[ri].firstPage) * this.pageSize;
  }

  /** Guest address of a page (in the guest process's address space). */
  guestAddress(page: number): number {
    return this.table.guestAddress(page);
  }

  /** Device page offset of a guest address, or -1. */
  pageOfAddress(addr: number): number {
    return this.table.pageOfAddress(addr);
  }

  isCached(page: number): boolean {
    return this.pageState.get(page) === PAGE_PRESENT;
  }

  /** Pages not yet present. O(pageCount). */
  pagesMissing(): number {
    return this.pageState.countNotPresent();
  }

  // ------------------------------------------------------------------------------------------------------
  // page requests (umem read())

  /**
   * Hot path: move up to `max` pending page requests (device page offsets) into `out`; never blocks,
   * never allocates. Returns the count (0 when nothing is pending).
   */
  getPageRequestsInto(out: Float64Array | number[], max = out.length): number {
    this.checkReader('getPageRequestsInto');
    if (max > out.length) max = out.length;
    if (this.ringLen === 0) this.collect();
    let n = 0;
    while (n < max && this.ringLen > 0) {
      out[n++] = this.ring[this.ringHead];
      this.ringHead = (this.ringHead + 1) & (this.ring.length - 1);
      this.ringLen--;
    }
    this.stats.requests += n;
    return n;
  }

  /** Page requests already read from the uffd and not yet taken by getPageRequestsInto(). */
  get queuedPageRequests(): number {
    return this.ringLen;
  }

  /** Can this device's uffd be made blocking for waitPageRequestsBlocking() (its other reads never wait)? */
  get canWaitBlocking(): boolean {
    return this.reader?.readsWithoutWaiting ?? false;
  }

  /**
   * Wait in read() itself for the next page requests (one system call per wake-up; the uffd must have been
   * made blocking, which only a reader whose read() never waits allows: see UffdEventReader). Returns the
   * requests now queued for getPageRequestsInto(); 0 when a signal interrupted the wait.
   */
  waitPageRequestsBlocking(): number {
    const rd = this.reader;
    this.checkReader('waitPageRequestsBlocking');
    if (this.ringLen === 0 && rd !== null) this.take(rd, rd.readBlocking());
    return this.ringLen;
  }

  /** Pending page requests (allocates). `timeoutMs`: 0 = don't wait (default), -1 = until one arrives. */
  getPageRequests(max = 64, timeoutMs = 0): number[] {
    this.checkReader('getPageRequests');
    if (!Number.isInteger(max) || max < 1) throw new UmemError('EINVAL', `max ${max} must be ≥ 1`, { op: 'getPageRequests' });
    if (timeoutMs !== 0 && !this.waitForPageRequests(timeoutMs)) return [];
    if (this.scratch.length < max) this.scratch = new Float64Array(max);
    const n = this.getPageRequestsInto(this.scratch, max);
    return Array.from(this.scratch.subarray(0, n));
  }

  /**
   * Wait until a request is pending: true when one is, false on timeout or interrupt(). -1 waits forever.
   * Allocation free.
   */
  waitForPageRequests(timeoutMs: number): boolean {
    this.checkReader('waitForPageRequests');
    const p = this.poller as Poller;
    const deadline = timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      if (this.ringLen > 0) return true;
      this.collect();
      if (this.ringLen > 0) return true;
      const left = deadline === Infinity ? -1 : Math.max(0, Math.ceil(deadline - Date.now()));
      if (p.wait(left) > 0) {
        if (p.ready(1)) {
          eventfdRead(this.interruptFd);
          this.collect();
          return this.ringLen > 0;
        }
        continue; // uffd readable: the loop top collects (a concurrent wake may have taken the message)
      }
      if (deadline !== Infinity && Date.now() >= deadline) { this.collect(); return this.ringLen > 0; }
    }
  }

  /** Wake a read()/waitForPageRequests() blocked in another thread or later in this one (once). */
  interrupt(): void {
    eventfdWrite(this.interruptFd, 1);
  }

  /**
   * umem read(): fill `buf` with u64 host-endian page offsets. Blocks until at least one request is pending
   * (unless nonBlocking / opts.nonBlocking → UmemError EAGAIN; interrupt() or timeout → EINTR / EAGAIN).
   * `buf` must hold at least one u64 (else EINVAL); returns bytes written (a multiple of 8).
   * The same offset may be reported more than once: tolerate duplicates.
   */
  read(buf: Uint8Array, opts: { nonBlocking?: boolean; timeoutMs?: number } = {}): number {
    const op = 'read';
    const slots = offsetSlots(buf, op);
    const timeout = (opts.nonBlocking ?? this.nonBlocking) ? 0 : (opts.timeoutMs ?? -1);
    const r = this.readRaw(buf, slots, timeout);
    if (r >= 0) return r;
    if (r === -Errno.EINTR) throw new UmemError('EINTR', 'interrupted before a request arrived', { op });
    throw new UmemError('EAGAIN', timeout === 0 ? 'no page request pending (non-blocking)' : `no page request within ${timeout} ms`, { op });
  }

  /** read() without exceptions: bytes (≥ 8) or -EAGAIN / -EINTR. timeoutMs 0 = non-blocking, -1 = forever. */
  readRaw(buf: Uint8Array, slots: number, timeoutMs: number): number {
    this.checkReader('read');
    this.checkOpen('read');
    if (this.ringLen === 0) this.collect();
    if (this.ringLen === 0) {
      if (timeoutMs === 0) return -Errno.EAGAIN;
      if (!this.waitForPageRequests(timeoutMs)) return timeoutMs < 0 ? -Errno.EINTR : -Errno.EAGAIN;
    }
    if (this.scratch.length < slots) this.scratch = new Float64Array(slots);
    const n = this.getPageRequestsInto(this.scratch, slots);
    if (n === 0) return timeoutMs === 0 ? -Errno.EAGAIN : -Errno.EINTR;
    const dv = dataViewOf(buf);
    for (let i = 0; i < n; i++) putOffset(dv, i, this.scratch[i]);
    return n * UMEM_OFFSET_BYTES;
  }

  // ------------------------------------------------------------------------------------------------------
  // marking pages cached (umem write())

  /**
   * umem write(): `buf` holds u64 host-endian page offsets whose contents are in the shmem view; make them
   * present in the guest and wake the threads waiting on them. < 8 bytes, or any offset ≥ the end → EINVAL
   * (nothing is marked then). Trailing bytes beyond a whole u64 are ignored. Returns bytes consumed.
   */
  write(buf: Uint8Array): number {
    const op = 'write';
    const slots = offsetSlots(buf, op);
    const dv = dataViewOf(buf);
    if (this.scratch.length < slots) this.scratch = new Float64Array(slots);
    for (let i = 0; i < slots; i++) this.scratch[i] = getOffset(dv, i);
    this.validateOffsets(op, this.scratch, slots);
    this.applyMarks(op, this.scratch, slots);
    return slots * UMEM_OFFSET_BYTES;
  }

  /**
   * Mark pages cached (contents already written into the shmem view). Pages never requested are legal and
   * pre-populate (later accesses fault no more). Offsets are validated first: any offset out of range → EINVAL.
   */
  markPageCached(offsets: number | ArrayLike<number>): UmemMarkResult {
    const op = 'markPageCached';
    const arr: ArrayLike<number> = typeof offsets === 'number' ? [offsets] : offsets;
    this.validateOffsets(op, arr, arr.length);
    return this.applyMarks(op, arr, arr.length);
  }

  /** Mark a contiguous range cached (one ioctl per region crossed). */
  markRangeCached(first: number, count: number): UmemMarkResult {
    this.checkRange('markRangeCached', first, count);
    const before = { ...this.counts() };
    const r = this.markRangeRaw(first, count);
    if (r < 0) throw this.ioError('markRangeCached', -r, first);
    return this.delta(before);
  }

  /**
   * Hot path: mark `count` offsets of `offsets` cached. Contiguous ascending runs become one ioctl.
   * Returns pages placed (≥ 0), or -errno: -EINVAL (an offset out of range; nothing marked), -EAGAIN
   * (EAGAIN budget exhausted), other kernel errnos (e.g. -ESRCH: the guest process is gone).
   */
  markPagesCachedRaw(offsets: ArrayLike<number>, count: number): number {
    if (this.closed || this.anonymous) return -Errno.EBADF;
    for (let i = 0; i < count; i++) {
      const o = offsets[i];
      if (!(o >= 0 && o < this.pageCount && Math.floor(o) === o)) return -Errno.EINVAL;
    }
    let placed = 0;
    let i = 0;
    while (i < count) {
      let j = i + 1;
      while (j < count && offsets[j] === offsets[j - 1] + 1) j++;
      const r = this.markRangeRaw(offsets[i], j - i);
      if (r < 0) return r;
      placed += r;
      i = j;
    }
    return placed;
  }

  /**
   * Hot path: make pages [first, first+count) present from the shmem view. Returns pages placed or -errno.
   * Pages already present are woken and counted as duplicates; pages another placer holds are skipped.
   */
  markRangeRaw(first: number, count: number): number {
    if (!(Number.isInteger(first) && Number.isInteger(count) && first >= 0 && count > 0 && first + count <= this.pageCount)) return -Errno.EINVAL;
    return this.placeRange(first, count, 0, 0);
  }

  /**
   * Write `data` (a whole number of pages) as the contents of pages from `page` on and make them present:
   * the claim-protected path (a page already present or being placed is left alone: never overwritten).
   * Minor: copied into the memfd then CONTINUE; missing: UFFDIO_COPY straight from `data` (no staging copy).
   */
  place(page: number, data: Uint8Array): UmemMarkResult {
    const op = 'place';
    if (!(data instanceof Uint8Array) || data.byteLength === 0 || data.byteLength % this.pageSize) {
      throw new UmemError('EINVAL', `data of ${data?.byteLength} bytes is not a whole number of pages`, { op, length: data?.byteLength, expected: `a multiple of ${this.pageSize}` });
    }
    const count = data.byteLength / this.pageSize;
    this.checkRange(op, page, count);
    const before = { ...this.counts() };
    const r = this.placeRange(page, count, 1, addressOf(data));
    if (r < 0) throw this.ioError(op, -r, page);
    return this.delta(before);
  }

  /** Hot path of place(): source bytes at address `src` (keep its Buffer alive). Pages placed or -errno. */
  placeFromAddressRaw(page: number, count: number, src: number): number {
    if (!(Number.isInteger(page) && Number.isInteger(count) && page >= 0 && count > 0 && page + count <= this.pageCount)) return -Errno.EINVAL;
    return this.placeRange(page, count, 1, src);
  }

  /** Hot path of placeZero(): pages placed or -errno (-EINVAL for a bad range). */
  placeZeroRaw(page: number, count: number): number {
    if (!(Number.isInteger(page) && Number.isInteger(count) && page >= 0 && count > 0 && page + count <= this.pageCount)) return -Errno.EINVAL;
    return this.placeRange(page, count, 2, 0);
  }

  /** Make pages present as zeros (missing: UFFDIO_ZEROPAGE; minor: zero the memfd pages, then CONTINUE). */
  placeZero(page: number, count = 1): UmemMarkResult {
    this.checkRange('placeZero', page, count);
    const before = { ...this.counts() };
    const r = this.placeRange(page, count, 2, 0);
    if (r < 0) throw this.ioError('placeZero', -r, page);
    return this.delta(before);
  }

  // ------------------------------------------------------------------------------------------------------
  // end of migration

  /**
   * UMEM_MAKE_VMA_ANONYMOUS (the 2012 driver never implemented it): unregister every region so the guest
   * memory is ordinary memory again and no fault reaches us. What "anonymous" means per backend:
   *   missing, in-process  → private anonymous memory (truly anonymous, as umem intended);
   *   missing, attached    → the process's own mapping (anonymous, or its shared memfd) with no uffd;
   *   minor                → still the MAP_SHARED memfd mapping (pages live in the memfd's page cache);
   *                          the daemon's view of it is unmapped by close().
   * Refuses (EBUSY) while pages are not present, unless `force` (absent pages then read as zeros).
   */
  makeVmaAnonymous(opts: { force?: boolean } = {}): void {
    const op = 'makeVmaAnonymous';
    this.checkOpen(op);
    if (this.anonymous) return;
    const missing = opts.force ? 0 : this.pagesMissing();
    if (missing > 0) {
      throw new UmemError('EBUSY', `${missing} of ${this.pageCount} pages are not present yet (pass { force: true } to zero-fill them)`, { op, pageCount: this.pageCount });
    }
    for (const r of this.regions) {
      try {
        this.uffd.unregister(r.base, r.size);
      } catch (e) {
        throw new UmemError('EIO', `UFFDIO_UNREGISTER of region ${r.name}: ${(e as Error).message}`, { op, errnoName: (e as { code?: string }).code });
      }
    }
    this.anonymous = true;
    log('%s: %d regions unregistered', op, this.regions.length);
  }

  /** True after makeVmaAnonymous(). */
  get isAnonymous(): boolean { return this.anonymous; }

  /** Release everything this instance mapped/owns. The guest mapping (init) is unmapped too. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const seen = new Set<MemoryRegion>();
    for (const v of this.backing.views) if (!seen.has(v)) { seen.add(v); try { v.unmap(); } catch { /* already gone */ } }
    if (this.guest) { try { this.guest.unmap(); } catch { /* already gone */ } }
    closeFd(this.interruptFd);
    if (this.ownsFds) {
      this.uffd.close();
      if (this.shmemFd >= 0) closeFd(this.shmemFd);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // generation-A names (postcopy-uffd-defined, spec-notes §1.3): the same functions under the 2011 ioctl names

  /** UMEM_GET_PAGE_REQUEST: up to `max` requests; waits up to timeoutMs (default: don't wait). */
  GET_PAGE_REQUEST(max = 64, timeoutMs = 0): number[] { return this.getPageRequests(max, timeoutMs); }
  /** UMEM_MARK_PAGE_CACHED. */
  MARK_PAGE_CACHED(offsets: number | ArrayLike<number>): UmemMarkResult { return this.markPageCached(offsets); }
  /** UMEM_MAKE_VMA_ANONYMOUS. */
  MAKE_VMA_ANONYMOUS(opts: { force?: boolean } = {}): void { this.makeVmaAnonymous(opts); }

  // ------------------------------------------------------------------------------------------------------
  // internals

  /**
   * Read what the uffd has (non-blocking) into the ring. Page faults become device offsets; other events
   * go to onEvent (reading them is also what clears EAGAIN for resolvers).
   */
  private collect(): void {
    const rd = this.reader;
    if (!rd || this.closed) return;
    for (;;) {
      const n = rd.read();
      if (n === 0) return;
      this.take(rd, n);
      if (n < rd.capacity) return;
    }
  }

  /** Queue the page requests among the n messages just read; other events go to onEvent. */
  private take(rd: UffdEventReader, n: number): void {
    for (let i = 0; i < n; i++) {
      if (rd.kind(i) === UFFD_EVENT_PAGEFAULT) {
        const page = this.table.pageOfAddress(rd.address(i));
        if (page < 0) {
          // Not ours: a stale table. Wake it so the thread refaults instead of hanging here unseen.
          this.stats.strayFaults++;
          const a = rd.address(i);
          this.uffd.wakeRaw(a - (a % this.pageSize), this.pageSize);
          continue;
        }
        this.push(page);
      } else {
        this.stats.events++;
        if (this.onEvent) this.onEvent(rd.event(i));
        else if (rd.kind(i) === UFFD_EVENT_FORK) closeFd(rd.forkUfd(i));
      }
    }
  }

  private push(page: number): void {
    if (this.ringLen === this.ring.length) {
      // Bounded in practice by the number of blocked guest threads; grow rather than lose a request.
      const bigger = new Float64Array(this.ring.length * 2);
      for (let k = 0; k < this.ringLen; k++) bigger[k] = this.ring[(this.ringHead + k) & (this.ring.length - 1)];
      this.ring = bigger;
      this.ringHead = 0;
    }
    this.ring[(this.ringHead + this.ringLen) & (this.ring.length - 1)] = page;
    this.ringLen++;
  }

  /**
   * The resolver. source: 0 = the shmem view (umem mark), 1 = bytes at address `src` (place), 2 = zeros.
   * Claims each page (ABSENT/REQUESTED → PLACING) so no two placers write the same page, issues one ioctl
   * per contiguous claimed run, handles partial progress, EEXIST (count + wake), EAGAIN (drain + back off),
   * and (minor) never-written pages (allocate a zero page in the memfd, then CONTINUE).
   */
  private placeRange(first: number, count: number, source: 0 | 1 | 2, src: number): number {
    if (this.closed || this.anonymous) return -Errno.EBADF;
    const ps = this.pageSize;
    const st = this.pageState;
    let placed = 0;
    let page = first;
    const end = first + count;
    while (page < end) {
      // Pages we must not (or need not) place: present → wake (a stale fault may wait), placing → skip.
      const s = st.get(page);
      if (s === PAGE_PRESENT || s === PAGE_PLACING || !st.tryClaim(page)) {
        if (st.get(page) === PAGE_PRESENT) {
          this.stats.duplicates++;
          this.uffd.wakeRaw(this.table.guestAddress(page), ps);
        } else {
          this.skippedCount++;
        }
        page++;
        continue;
      }
      // Extend the run: claimed, contiguous, within one region.
      const limit = Math.min(end, page + this.table.pagesLeftInRegion(page));
      let runEnd = page + 1;
      while (runEnd < limit && st.tryClaim(runEnd)) runEnd++;
      const r = this.placeRun(page, runEnd - page, source, source === 1 ? src + (page - first) * ps : 0);
      if (r < 0) return r;
      placed += r;
      page = runEnd;
    }
    return placed;
  }

  private skippedCount = 0;

  /** One claimed run [page, page+n) within a region. Returns pages placed or -errno (claims released). */
  private placeRun(page: number, n: number, source: 0 | 1 | 2, src: number): number {
    const ps = this.pageSize;
    const st = this.pageState;
    const minor = this.mode === 'minor';
    let dst = this.table.guestAddress(page);
    let view = this.shmemAddress(page);
    // Minor: the contents must be in the memfd before CONTINUE (we own these pages: nobody else writes them).
    if (minor && source === 1) memcpyAt(view, src, n * ps);
    if (minor && source === 2) this.zeroShmem(page, n);
    let p = page;
    const end = page + n;
    let placed = 0;
    let faultRetried = -1;
    this.backoff.reset();
    while (p < end) {
      const len = (end - p) * ps;
      let r: number;
      if (minor) r = this.uffd.continueRaw(dst, len, 0);
      else if (source === 2) r = this.uffd.zeropageRaw(dst, len, 0);
      else r = this.uffd.copyRaw(dst, source === 1 ? src : view, len, 0);
      if (r > 0) {
        const k = Math.floor(r / ps);
        for (let q = 0; q < k; q++) st.setPresent(p + q);
        placed += k;
        this.stats.placed += k;
        p += k; dst += k * ps; view += k * ps; if (source === 1) src += k * ps;
        if (k === 0) { p = end; } // cannot happen (whole pages); avoid a loop if it ever did
        continue;
      }
      if (r === -Errno.EEXIST) {
        // Someone (another uffd holder, or the guest after an unregister race) made it present: count, wake.
        st.setPresent(p);
        this.stats.duplicates++;
        this.uffd.wakeRaw(dst, ps);
        p++; dst += ps; view += ps; if (source === 1) src += ps;
        continue;
      }
      if (r === -Errno.EAGAIN) {
        // A non-cooperative event is unread: read it (if we are the reader), then back off, never spin.
        this.stats.eagain++;
        this.collect();
        if (this.backoff.pause()) continue;
      } else if (minor && r === -Errno.EFAULT && faultRetried !== p) {
        // CONTINUE found no page-cache page: the page was marked without ever being written → zeros.
        faultRetried = p;
        try {
          fallocate(this.shmemFd, this.table.fileOffset(p), ps);
        } catch {
          this.zeroShmem(p, 1); // e.g. fallocate refused: writing zeros allocates the page as well
        }
        this.stats.zeroFilled++;
        continue;
      }
      for (let q = p; q < end; q++) st.release(q);
      log('placeRun %d+%d failed at page %d: %s', page, n, p, errnoName(-r));
      return r;
    }
    return placed;
  }

  /** Zero pages in the daemon-side view (allocates them in the memfd for minor). */
  private zeroShmem(page: number, n: number): void {
    this.shmemView(page, n).fill(0);
  }

  private applyMarks(op: string, offsets: ArrayLike<number>, count: number): UmemMarkResult {
    const before = { ...this.counts() };
    const r = this.markPagesCachedRaw(offsets, count);
    if (r < 0) throw this.ioError(op, -r);
    return this.delta(before);
  }

  private counts(): { placed: number; duplicates: number; skipped: number } {
    return { placed: this.stats.placed, duplicates: this.stats.duplicates, skipped: this.skippedCount };
  }

  private delta(b: { placed: number; duplicates: number; skipped: number }): UmemMarkResult {
    return { placed: this.stats.placed - b.placed, duplicates: this.stats.duplicates - b.duplicates, skipped: this.skippedCount - b.skipped };
  }

  private validateOffsets(op: string, offsets: ArrayLike<number>, count: number): void {
    this.checkOpen(op);
    for (let i = 0; i < count; i++) {
      const o = offsets[i];
      if (typeof o !== 'number' || !Number.isInteger(o) || o < 0 || o >= this.pageCount) {
        throw new UmemError('EINVAL', `page offset ${String(o)} (entry ${i}) is beyond the end (${this.pageCount} pages); nothing marked`, { op, offset: o, pageCount: this.pageCount });
      }
    }
  }

  private checkRange(op: string, page: number, count: number): void {
    this.checkOpen(op);
    if (!Number.isInteger(page) || !Number.isInteger(count) || page < 0 || count < 1 || page + count > this.pageCount) {
      throw new UmemError('EINVAL', `pages [${page}, ${page}+${count}) outside the device (${this.pageCount} pages)`, { op, offset: page, pageCount: this.pageCount });
    }
  }

  private checkOpen(op: string): void {
    if (this.closed) throw new UmemError('EBADF', 'device is closed', { op });
    if (this.anonymous && op !== 'makeVmaAnonymous' && op !== 'shmemView') {
      throw new UmemError('EINVAL', 'the memory was made anonymous (makeVmaAnonymous): nothing left to serve', { op });
    }
  }

  private checkReader(op: string): void {
    if (!this.reader) throw new UmemError('EINVAL', 'this instance was attached with eventReader: false', { op });
  }

  private ioError(op: string, err: number, offset?: number): UmemError {
    if (err === Errno.EINVAL) return new UmemError('EINVAL', 'offset out of range or invalid range', { op, offset, pageCount: this.pageCount });
    if (err === Errno.EAGAIN) return new UmemError('EAGAIN', 'the kernel kept answering EAGAIN (an unread uffd event?) past the retry budget', { op, offset });
    if (err === Errno.EBADF) return new UmemError('EBADF', 'device is closed or was made anonymous', { op });
    return new UmemError('EIO', `resolver failed with ${errnoName(err)}`, { op, offset, errnoName: errnoName(err) });
  }
}
