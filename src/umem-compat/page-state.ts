// Per-page state shared between every UmemDevice instance that serves the same guest memory (e.g. the
// daemon's fault worker and background worker each attach their own instance over one SharedArrayBuffer).
//
//   ABSENT → REQUESTED (optional: a fault was forwarded to the source) → PLACING (one placer owns it)
//          → PRESENT (mapped in the guest; from now on never written through the shmem view again)
//
// The PLACING claim is what makes the minor backend safe: the shmem view aliases guest memory, so a late
// duplicate writer must never copy stale source bytes over a page the guest already runs on.
export const PAGE_ABSENT = 0;
export const PAGE_REQUESTED = 1;
export const PAGE_PLACING = 2;
export const PAGE_PRESENT = 3;

export class PageStateMap {
  readonly bytes: Uint8Array;
  constructor(readonly pageCount: number, readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(Math.max(1, pageCount))) {
    if (buffer.byteLength < pageCount) throw new RangeError(`page state buffer holds ${buffer.byteLength} pages, need ${pageCount}`);
    this.bytes = new Uint8Array(buffer, 0, pageCount);
  }

  get(page: number): number {
    return Atomics.load(this.bytes, page);
  }

  /** ABSENT → REQUESTED; true when this caller should forward the request (first asker). */
  tryRequest(page: number): boolean {
    return Atomics.compareExchange(this.bytes, page, PAGE_ABSENT, PAGE_REQUESTED) === PAGE_ABSENT;
  }

  /** ABSENT|REQUESTED → PLACING; true when this caller now owns the page's placement. */
  tryClaim(page: number): boolean {
    const b = this.bytes;
    if (Atomics.compareExchange(b, page, PAGE_ABSENT, PAGE_PLACING) === PAGE_ABSENT) return true;
    return Atomics.compareExchange(b, page, PAGE_REQUESTED, PAGE_PLACING) === PAGE_REQUESTED;
  }

  /** Give a claim back (placement failed): the page is absent again. */
  release(page: number): void {
    Atomics.store(this.bytes, page, PAGE_ABSENT);
  }

  setPresent(page: number): void {
    Atomics.store(this.bytes, page, PAGE_PRESENT);
  }

  /** Pages not PRESENT. O(pageCount); not for hot paths. */
  countNotPresent(): number {
    let n = 0;
    const b = this.bytes;
    for (let i = 0; i < b.length; i++) if (Atomics.load(b, i) !== PAGE_PRESENT) n++;
    return n;
  }
}
