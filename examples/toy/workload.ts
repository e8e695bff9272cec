// The toy process's workload: a deterministic computation over a large memory region.
//
// State = the memory region + a tiny execution state (PRNG, cursor, a 64-bit running digest as two u32
// halves, the step count). Each step picks a page by the access pattern, reads one u32 word, mixes it into
// the running digest and writes back a derived value, so later reads depend on earlier writes: a page that
// arrives wrong (or zero instead of its content) changes every digest after it.
//
// Everything is u32 arithmetic (Math.imul, >>> 0) so examples/c-toy/toy.c computes bit-identical results;
// change one and you must change the other (test/examples/c-toy.test.ts checks they agree).
//
// Memory is accessed through Uint32Array windows of at most 1 GiB (koffi views above 4 GiB kill the process,
// and 1 GiB windows keep the index arithmetic in shifts).

export const PAGE_SIZE = 4096;
export const WORDS_PER_PAGE = PAGE_SIZE / 4; // 1024
/** Bytes per memory window: 1 GiB = 2^18 pages. */
export const WINDOW_SIZE = 1 << 30;
const PAGES_PER_WINDOW_SHIFT = 18;
const PAGE_IN_WINDOW_MASK = (1 << PAGES_PER_WINDOW_SHIFT) - 1;

export const MIN_SIZE = 16 * PAGE_SIZE;
export const MAX_SIZE = 8 * 1024 * 1024 * 1024;

export type AccessPattern = 'sequential' | 'uniform' | 'hotset';
export const PATTERNS: readonly AccessPattern[] = ['sequential', 'uniform', 'hotset'];
const PATTERN_CODE: Record<AccessPattern, number> = { sequential: 0, uniform: 1, hotset: 2 };

export interface WorkloadOptions {
  /** Region size in bytes: a multiple of 4096, from 64 KiB (tests) to 8 GiB. */
  size: number;
  pattern: AccessPattern;
  /** Any u32. */
  seed: number;
}

/** Execution-state blob layout (little-endian u32s; toy.c parses the same 48 bytes). */
export const STATE_MAGIC = 0x57594f54; // "TOYW"
export const STATE_VERSION = 1;
export const STATE_SIZE = 48;
const S = { magic: 0, version: 4, pattern: 8, seed: 12, pages: 16, stepLo: 20, stepHi: 24, rng: 28, cursor: 32, h1: 36, h2: 40, reserved: 44 } as const;

export class WorkloadError extends Error {
  override name = 'WorkloadError';
  constructor(readonly code: string, message: string) { super(message); }
}

/** murmur3's fmix32: a cheap u32 → u32 bijection used to derive per-page seeds. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Whether page `page` starts all-zero (so the migration sends ZERO records for it): one page in eight
 * at random, plus every 16th MiB (256 pages) as a whole, like untouched heap.
 */
export function isInitiallyZeroPage(seed: number, page: number): boolean {
  if (((page >>> 8) & 15) === 15) return true;
  return (fmix32((seed ^ Math.imul(page, 0x9e3779b1)) >>> 0) & 7) === 0;
}

function hex8(x: number): string {
  return (x >>> 0).toString(16).padStart(8, '0');
}

/** Split a region into Uint32Array windows of ≤ 1 GiB given a `view(offset, len)` accessor. */
export function windowsFromView(size: number, view: (offset: number, len: number) => Uint8Array): Uint32Array[] {
  const out: Uint32Array[] = [];
  for (let off = 0; off < size; off += WINDOW_SIZE) {
    const v = view(off, Math.min(WINDOW_SIZE, size - off));
    out.push(new Uint32Array(v.buffer, v.byteOffset, v.byteLength >>> 2));
  }
  return out;
}

export function parsePattern(s: string): AccessPattern {
  const aliases: Record<string, AccessPattern> = { sequential: 'sequential', seq: 'sequential', uniform: 'uniform', random: 'uniform', hotset: 'hotset', hot: 'hotset' };
  const p = aliases[s.toLowerCase()];
  if (!p) throw new WorkloadError('EPATTERN', `unknown access pattern "${s}" (sequential | uniform | hotset)`);
  return p;
}

/** "64M", "1G", "1GiB", "4096" → bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) throw new WorkloadError('ESIZE', `cannot parse size "${s}" (e.g. 64M, 1G, 1073741824)`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.round(Number(m[1]) * mult[m[2].toLowerCase()]);
}

export class Workload {
  readonly size: number;
  readonly pattern: AccessPattern;
  readonly seed: number;
  readonly pages: number;
  readonly hotBase: number;
  readonly hotPages: number;
  private windows: Uint32Array[] = [];
  // Execution state (all u32 except steps).
  private rng: number;
  private cursor = 0;
  private h1: number;
  private h2: number;
  private stepsDone = 0;

  constructor(opts: WorkloadOptions) {
    const { size, pattern, seed } = opts;
    if (!Number.isSafeInteger(size) || size < MIN_SIZE || size > MAX_SIZE || size % PAGE_SIZE !== 0) {
      throw new WorkloadError('ESIZE', `size ${size} must be a multiple of ${PAGE_SIZE} between ${MIN_SIZE} and ${MAX_SIZE} bytes`);
    }
    if (!PATTERNS.includes(pattern)) throw new WorkloadError('EPATTERN', `unknown access pattern "${pattern}"`);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new WorkloadError('ESEED', `seed ${seed} must be a u32`);
    this.size = size;
    this.pattern = pattern;
    this.seed = seed >>> 0;
    this.pages = size / PAGE_SIZE;
    // Hot set: 1/256 of the pages (4 MiB of a 1 GiB region), at least 16, at a seed-derived place (wraps).
    this.hotPages = Math.min(this.pages, Math.max(16, this.pages >>> 8));
    this.hotBase = fmix32((this.seed ^ 0x5bd1e995) >>> 0) % this.pages;
    this.rng = fmix32((this.seed + 0x6d2b79f5) >>> 0);
    this.h1 = fmix32(this.seed ^ 0x01234567);
    this.h2 = fmix32(this.seed ^ 0x89abcdef);
  }

  get steps(): number { return this.stepsDone; }

  /** Point the workload at its memory (windows of exactly 1 GiB except the last); no writes. */
  attach(windows: Uint32Array[]): void {
    let total = 0;
    windows.forEach((w, i) => {
      if (i < windows.length - 1 && w.byteLength !== WINDOW_SIZE) throw new WorkloadError('EWINDOW', `window ${i} is ${w.byteLength} bytes; all but the last must be ${WINDOW_SIZE}`);
      total += w.byteLength;
    });
    if (total !== this.size) throw new WorkloadError('EWINDOW', `windows cover ${total} bytes, workload size is ${this.size}`);
    this.windows = windows;
  }

  /**
   * attach() + the deterministic initial fill. Assumes zeroed memory (fresh memfd / anonymous mapping):
   * zero pages are not written, so they stay untouched (and cheap) until the migration.
   */
  init(windows: Uint32Array[]): void {
    this.attach(windows);
    const seed = this.seed;
    for (let page = 0; page < this.pages; page++) {
      if (isInitiallyZeroPage(seed, page)) continue;
      const win = this.windows[page >>> PAGES_PER_WINDOW_SHIFT];
      let x = fmix32((seed ^ Math.imul(page + 1, 0x9e3779b1)) >>> 0) | 1; // xorshift32 needs x ≠ 0
      const base = (page & PAGE_IN_WINDOW_MASK) << 10;
      for (let i = base, end = base + WORDS_PER_PAGE; i < end; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        win[i] = x;
      }
    }
  }

  /** Run n steps (the hot loop: no allocation, u32 arithmetic only). */
  step(n: number): void {
    const windows = this.windows;
    if (windows.length === 0) throw new WorkloadError('ENOMEM', 'step() before init()/attach()');
    const pages = this.pages, hotBase = this.hotBase, hotPages = this.hotPages;
    const pattern = PATTERN_CODE[this.pattern];
    let a = this.rng | 0, cursor = this.cursor, h1 = this.h1 | 0, h2 = this.h2 | 0;
    for (let s = 0; s < n; s++) {
      // mulberry32
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r = (t ^ (t >>> 14)) >>> 0;
      let page: number;
      if (pattern === 0) {
        page = cursor;
        if (++cursor === pages) cursor = 0;
      } else if (pattern === 1) {
        page = r % pages;
      } else if ((r & 15) !== 0) {
        page = hotBase + ((r >>> 4) % hotPages);
        if (page >= pages) page -= pages;
      } else {
        page = (r >>> 4) % pages;
      }
      a = (a + 0x6d2b79f5) | 0;
      t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r2 = (t ^ (t >>> 14)) >>> 0;
      const win = windows[page >>> PAGES_PER_WINDOW_SHIFT];
      const idx = ((page & PAGE_IN_WINDOW_MASK) << 10) | (r2 & 1023);
      const v = win[idx];
      // murmur3-style mix of the word into h1, then h1 and the page into h2.
      let k = Math.imul(v ^ r2, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h1 ^= k;
      h1 = (h1 << 13) | (h1 >>> 19);
      h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
      h2 = (Math.imul(h2 ^ page, 0x9e3779b1) + (h1 ^ (h1 >>> 16))) | 0;
      win[idx] = h1 ^ (h2 >>> 3) ^ v;
    }
    this.rng = a >>> 0;
    this.cursor = cursor;
    this.h1 = h1 >>> 0;
    this.h2 = h2 >>> 0;
    this.stepsDone += n;
  }

  /** The 48-byte execution state (what the migration carries besides memory). */
  snapshotState(): Buffer {
    const b = Buffer.alloc(STATE_SIZE);
    b.writeUInt32LE(STATE_MAGIC, S.magic);
    b.writeUInt32LE(STATE_VERSION, S.version);
    b.writeUInt32LE(PATTERN_CODE[this.pattern], S.pattern);
    b.writeUInt32LE(this.seed, S.seed);
    b.writeUInt32LE(this.pages, S.pages);
    b.writeUInt32LE(this.stepsDone % 0x100000000, S.stepLo);
    b.writeUInt32LE(Math.floor(this.stepsDone / 0x100000000), S.stepHi);
    b.writeUInt32LE(this.rng, S.rng);
    b.writeUInt32LE(this.cursor, S.cursor);
    b.writeUInt32LE(this.h1, S.h1);
    b.writeUInt32LE(this.h2, S.h2);
    return b;
  }

  /** Adopt a state from snapshotState(); it must come from a workload with the same size, pattern and seed. */
  restoreState(buf: Uint8Array): void {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length !== STATE_SIZE) throw new WorkloadError('ESTATE', `state blob is ${b.length} bytes, expected ${STATE_SIZE}`);
    if (b.readUInt32LE(S.magic) !== STATE_MAGIC) throw new WorkloadError('ESTATE', `state blob magic 0x${b.readUInt32LE(S.magic).toString(16)} is not "TOYW"`);
    if (b.readUInt32LE(S.version) !== STATE_VERSION) throw new WorkloadError('ESTATE', `state blob version ${b.readUInt32LE(S.version)}, expected ${STATE_VERSION}`);
    const expect: Array<[string, number, number]> = [
      ['pattern', b.readUInt32LE(S.pattern), PATTERN_CODE[this.pattern]],
      ['seed', b.readUInt32LE(S.seed), this.seed],
      ['pages', b.readUInt32LE(S.pages), this.pages],
    ];
    for (const [what, got, want] of expect) {
      if (got !== want) throw new WorkloadError('ESTATE', `state blob ${what} is ${got}, this workload has ${want}`);
    }
    const cursor = b.readUInt32LE(S.cursor);
    if (cursor >= this.pages) throw new WorkloadError('ESTATE', `state blob cursor ${cursor} ≥ ${this.pages} pages`);
    this.stepsDone = b.readUInt32LE(S.stepHi) * 0x100000000 + b.readUInt32LE(S.stepLo);
    this.rng = b.readUInt32LE(S.rng);
    this.cursor = cursor;
    this.h1 = b.readUInt32LE(S.h1);
    this.h2 = b.readUInt32LE(S.h2);
  }

  /** Digest of the execution state only (cheap; no memory read). */
  stateDigest(): string {
    return hex8(this.h1) + hex8(this.h2);
  }

  /**
   * 64-bit hash of the whole memory (two u32 lanes over every word in order). Reads every page, so on a
   * destination it also pulls every page that has not arrived yet. About 1 s per GiB.
   */
  memoryHash(): string {
    let a = 0x811c9dc5 | 0, b = this.seed | 0;
    for (const win of this.windows) {
      for (let i = 0, n = win.length; i < n; i++) {
        const x = win[i];
        a = Math.imul(a ^ x, 0x01000193);
        b = Math.imul(((b << 5) | (b >>> 27)) ^ x, 0x9e3779b1);
      }
    }
    return hex8(a) + hex8(b);
  }

  /** The toy's result: execution state digest + full memory hash (32 hex chars). */
  digest(): string {
    return this.stateDigest() + this.memoryHash();
  }
}

export function createWorkload(opts: WorkloadOptions): Workload {
  return new Workload(opts);
}

/** Read pattern/seed/pages from a state blob without a workload (the destination learns them this way). */
export function describeState(buf: Uint8Array): { pattern: AccessPattern; seed: number; size: number; steps: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length !== STATE_SIZE || b.readUInt32LE(S.magic) !== STATE_MAGIC) {
    throw new WorkloadError('ESTATE', `not a toy state blob (${b.length} bytes)`);
  }
  const code = b.readUInt32LE(S.pattern);
  const pattern = PATTERNS[code];
  if (pattern === undefined) throw new WorkloadError('ESTATE', `state blob pattern code ${code} unknown`);
  return {
    pattern,
    seed: b.readUInt32LE(S.seed),
    size: b.readUInt32LE(S.pages) * PAGE_SIZE,
    steps: b.readUInt32LE(S.stepHi) * 0x100000000 + b.readUInt32LE(S.stepLo),
  };
}
