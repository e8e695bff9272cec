// Turns decoded "ram" records into page placements through the umem-compat device: validates every
// record against the regions first (WireMap), coalesces contiguous pages into one staging run (one ioctl
// per run instead of per page), and counts what happened. The stream worker's placement path (the fault
// worker places urgent records straight from its receive buffer); allocation free per page apart from what
// the decoder produced.
import { ProtocolError, type RamRecord } from '../protocol/index.js';
import { PAGE_REQUESTED, type UmemDevice } from '../umem-compat/index.js';
import { addressOf } from '../uffd/memory.js';
import { memcpyAt } from '../uffd/libc.js';
import { errnoName } from '../uffd/errors.js';
import { DaemonError } from './errors.js';
import { F, type SharedStats } from './stats.js';
import type { WireMap } from './regions.js';

const KIND_PAGE = 0;
const KIND_ZERO = 1;
const ZERO_MERGE_MAX = 8;

export type SinkRole = 'fault' | 'background';

/** Error for a failed placement errno: a vanished process is not a daemon bug. */
export function placementError(err: number, page: number): DaemonError {
  const name = errnoName(err);
  if (name === 'ESRCH' || name === 'ENOMEM') {
    return new DaemonError('PROCESS_DIED', `destination process is gone (placing page ${page} failed with ${name})`);
  }
  return new DaemonError('PLACE_FAILED', `placing page ${page} failed with ${name}`);
}

export class PageSink {
  private readonly staging: Buffer;
  private readonly stagingAddr: number;
  private readonly stagingPages: number;
  private readonly ps: number;
  private runStart = -1;
  /** Address of the current run's first page: the staging buffer, or the caller's memory (addInPlace). */
  private runSrc = 0;
  private runInPlace = false;
  private runCount = 0;
  private runKind = KIND_PAGE;
  /** Zero pages at the end of the current data run (merged into it), and in it overall. */
  private zeroTail = 0;
  private zeroInRun = 0;
  private readonly placedField: number;
  private readonly pagesField: number;
  private readonly zeroField: number;
  private readonly dupField: number;
  private readonly eagainField: number;
  /** Pages placed so far that a fault had requested (the fault worker wants to hear of those at once). */
  requestedPlaced = 0;
  /** Background sink: pages the fault worker requested count as on demand even when they arrive here. */
  private readonly reclassifyRequested: boolean;

  constructor(
    private readonly device: UmemDevice,
    private readonly wire: WireMap,
    private readonly stats: SharedStats,
    role: SinkRole,
    private readonly onAllPresent: () => void,
    stagingBytes = 1 << 20,
  ) {
    this.ps = device.pageSize;
    this.stagingPages = Math.max(1, Math.floor(stagingBytes / this.ps));
    this.staging = Buffer.allocUnsafeSlow(this.stagingPages * this.ps);
    this.stagingAddr = addressOf(this.staging);
    this.runSrc = this.stagingAddr;
    const fault = role === 'fault';
    this.placedField = fault ? F.placedFault : F.placedBackground;
    this.pagesField = fault ? F.pagesOnDemand : F.pagesBackground;
    this.zeroField = fault ? F.zeroOnDemand : F.zeroBackground;
    this.dupField = fault ? F.duplicatesFault : F.duplicatesBackground;
    this.eagainField = fault ? F.eagainFault : F.eagainBackground;
    // With no urgent channel (exec:, or before/without the source's second connection) requested pages come
    // back inline on the main stream; they were still served on demand.
    this.reclassifyRequested = !fault;
  }

  /**
   * Take one record. Page-carrying records are validated (throws ProtocolError, nothing placed) and
   * staged; other kinds return false so the caller can handle them.
   */
  add(rec: RamRecord): boolean {
    let kind: number;
    let data: Uint8Array | undefined;
    switch (rec.kind) {
      case 'page':
        kind = KIND_PAGE; data = rec.data;
        break;
      case 'zero':
        kind = rec.fill === 0 ? KIND_ZERO : KIND_PAGE;
        break;
      case 'compressed-page':
        if (!rec.page) throw new ProtocolError('BAD_COMPRESSED_PAGE', 'compressed page was not inflated', { offset: rec.offset, context: 'ram record COMPRESS_PAGE', expected: 'an inflated page' });
        kind = KIND_PAGE; data = rec.page;
        break;
      case 'xbzrle':
        throw new ProtocolError('BAD_RECORD', 'XBZRLE record in a postcopy stream (the destination has no previous page to apply it to)', {
          offset: rec.offset, context: 'ram record XBZRLE', expected: 'PAGE or ZERO records',
        });
      default:
        return false;
    }
    const page = this.wire.validate(rec.block, rec.blockOffset, this.ps, rec.offset, `ram record ${rec.kind.toUpperCase()}`);
    if (data !== undefined && data.length !== this.ps) {
      throw new ProtocolError('BAD_LENGTH', `page payload of ${data.length} bytes`, { offset: rec.offset, context: 'ram record PAGE', expected: `${this.ps} bytes` });
    }
    if (kind === KIND_ZERO) this.stage(page, KIND_ZERO, undefined, 0);
    else this.stage(page, KIND_PAGE, data, data === undefined ? (rec as { fill: number }).fill : 0);
    return true;
  }

  /**
   * Hot path without a record object (the stream worker's own scan of CONTINUE records): validate
   * `block`/`blockOffset` exactly as add() does, then stage a PAGE whose payload is the pageSize bytes at
   * address `srcAddr` (a buffer the caller owns; 0: a ZERO page). Throws ProtocolError, nothing placed.
   */
  addRaw(block: string, blockOffset: number, srcAddr: number, streamOffset: number): void {
    const page = this.wire.validate(block, blockOffset, this.ps, streamOffset, srcAddr === 0 ? 'ram record ZERO' : 'ram record PAGE');
    if (srcAddr === 0) this.stage(page, KIND_ZERO, undefined, 0);
    else this.stage(page, KIND_PAGE, undefined, 0, srcAddr);
  }

  /**
   * Like addRaw, but the page stays where it is: consecutive pages at consecutive addresses extend one run
   * placed straight from the caller's memory, which must stay untouched until the next flush().
   */
  addInPlace(block: string, blockOffset: number, srcAddr: number, streamOffset: number): void {
    const page = this.wire.validate(block, blockOffset, this.ps, streamOffset, 'ram record PAGE');
    const n = this.runCount;
    if (n > 0 && !(this.runInPlace && page === this.runStart + n && srcAddr === this.runSrc + n * this.ps)) this.flush();
    if (this.runCount === 0) {
      this.runStart = page;
      this.runKind = KIND_PAGE;
      this.runSrc = srcAddr;
      this.runInPlace = true;
    }
    this.runCount++;
  }

  /** Stage one validated page: from `data`, else from address `srcAddr` when non-zero, else filled with `fill`. */
  private stage(page: number, kind: number, data: Uint8Array | undefined, fill: number, srcAddr = 0): void {
    if (this.runInPlace && this.runCount > 0) this.flush(); // staging and in-place pages never share a run
    // An isolated zero page inside a run of data pages is cheaper copied (4 KiB memset + part of one
    // UFFDIO_COPY) than split out (two extra ioctls); longer zero stretches still go as UFFDIO_ZEROPAGE.
    if (kind === KIND_ZERO && this.runCount > 0 && this.runKind === KIND_PAGE && page === this.runStart + this.runCount &&
        this.runCount < this.stagingPages && this.zeroTail < ZERO_MERGE_MAX) {
      const at = this.runCount * this.ps;
      this.staging.fill(0, at, at + this.ps);
      this.runCount++;
      this.zeroTail++;
      this.zeroInRun++;
      return;
    }
    if (kind === KIND_ZERO && this.zeroTail >= ZERO_MERGE_MAX && page === this.runStart + this.runCount) {
      // The zero stretch got long: give its pages back to a zero run.
      const tail = this.zeroTail;
      this.runCount -= tail;
      this.zeroInRun -= tail;
      this.flush();
      this.runStart = page - tail; this.runKind = KIND_ZERO; this.runCount = tail;
    }
    if (kind === KIND_PAGE) this.zeroTail = 0;
    if (this.runCount > 0 && (kind !== this.runKind || page !== this.runStart + this.runCount || this.runCount === this.stagingPages)) this.flush();
    if (this.runCount === 0) { this.runStart = page; this.runKind = kind; }
    if (kind === KIND_PAGE) {
      const at = this.runCount * this.ps;
      if (data !== undefined) this.staging.set(data, at);
      else if (srcAddr !== 0) memcpyAt(this.stagingAddr + at, srcAddr, this.ps);
      else this.staging.fill(fill, at, at + this.ps);
    }
    this.runCount++;
  }

  /** Place the staged run (call at the end of every received chunk so waiting faults are not delayed). */
  flush(): void {
    const n = this.runCount;
    if (n === 0) return;
    const first = this.runStart;
    const zerosInside = this.zeroInRun;
    const src = this.runSrc;
    this.runCount = 0;
    this.runSrc = this.stagingAddr;
    this.runInPlace = false;
    this.zeroTail = 0;
    this.zeroInRun = 0;
    let requested = 0;
    if (this.reclassifyRequested) {
      const state = this.device.pageState;
      for (let p = first; p < first + n; p++) if (state.get(p) === PAGE_REQUESTED) requested++;
    }
    let placed: number;
    if (this.runKind === KIND_PAGE) {
      placed = this.device.placeFromAddressRaw(first, n, src);
      if (placed < 0) throw placementError(-placed, first);
      this.stats.v[this.zeroField] += Math.min(zerosInside, placed);
    } else {
      placed = this.device.placeZeroRaw(first, n);
      if (placed < 0) throw placementError(-placed, first);
      this.stats.v[this.zeroField] += placed;
    }
    const v = this.stats.v;
    v[this.placedField] += placed;
    // A requested page that someone else placed first shows up as a duplicate, so at most `placed` of them.
    const onDemand = Math.min(requested, placed);
    this.requestedPlaced += requested;
    v[F.pagesOnDemandInline] += onDemand;
    v[this.pagesField] += placed - onDemand;
    v[this.dupField] += n - placed;
    v[this.eagainField] = this.device.stats.eagain;
    if (this.stats.addPresent(placed, this.device.pageCount)) this.onAllPresent();
  }

  /** Bytes of staging (for tests). */
  get capacityPages(): number {
    return this.stagingPages;
  }
}

