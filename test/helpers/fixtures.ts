// Locating and reading the real QEMU 7.2 fixtures in ../shared/fixtures/qemu-7.2 (relative to the
// project root), plus the memory comparison rules their README documents.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

/** Project root: the nearest ancestor of this file holding package.json (works from src and dist). */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

export const FIXTURE_DIR = path.resolve(projectRoot(), '../shared/fixtures/qemu-7.2');

/** Reason to skip when the fixtures are absent, else undefined. */
export function fixturesMissing(): string | undefined {
  return existsSync(path.join(FIXTURE_DIR, 'precopy-paused.mig'))
    ? undefined
    : `fixtures not found at ${FIXTURE_DIR} (../shared/fixtures/qemu-7.2 relative to the project root)`;
}

export interface Fixture {
  name: string;
  /** The source→destination stream (.mig or .src2dst.bin). */
  stream: string;
  /** The destination→source capture, for two-VM fixtures. */
  returnPath?: string;
  /** `-S` guest: SeaBIOS never ran, so pmemsave shows the isa-bios alias at 0xe0000-0xfffff. */
  paused: boolean;
  postcopy: boolean;
  /** pc.ram backed by 2 MiB hugetlb: MEM_SIZE carries a page size for it. */
  hugetlb: boolean;
}

export const FIXTURES: Fixture[] = [
  { name: 'precopy-paused', stream: 'precopy-paused.mig', paused: true, postcopy: false, hugetlb: false },
  { name: 'precopy-compress', stream: 'precopy-compress.mig', paused: true, postcopy: false, hugetlb: false },
  { name: 'precopy-xbzrle-running', stream: 'precopy-xbzrle-running.mig', paused: false, postcopy: false, hugetlb: false },
  { name: 'precopy-postcopy-cap', stream: 'precopy-postcopy-cap.src2dst.bin', returnPath: 'precopy-postcopy-cap.dst2src.bin', paused: true, postcopy: false, hugetlb: false },
  { name: 'postcopy-immediate', stream: 'postcopy-immediate.src2dst.bin', returnPath: 'postcopy-immediate.dst2src.bin', paused: false, postcopy: true, hugetlb: false },
  { name: 'postcopy-after-precopy', stream: 'postcopy-after-precopy.src2dst.bin', returnPath: 'postcopy-after-precopy.dst2src.bin', paused: false, postcopy: true, hugetlb: false },
  { name: 'postcopy-throttled', stream: 'postcopy-throttled.src2dst.bin', returnPath: 'postcopy-throttled.dst2src.bin', paused: false, postcopy: true, hugetlb: false },
  { name: 'postcopy-hugetlb', stream: 'postcopy-hugetlb.src2dst.bin', returnPath: 'postcopy-hugetlb.dst2src.bin', paused: false, postcopy: true, hugetlb: true },
];

export const fixturePath = (file: string) => path.join(FIXTURE_DIR, file);
export const readFixture = (file: string): Buffer => readFileSync(fixturePath(file));
/** The source's pmemsave dump (64 MiB). */
export const readPmem = (fx: Fixture): Buffer => gunzipSync(readFixture(`${fx.name}.pmem.gz`));

/** Guest-physical window where a never-started guest's pmemsave reads pc.bios instead of pc.ram. */
export const BIOS_SHADOW = { start: 0xe0000, end: 0x100000 } as const;

/**
 * Byte ranges where `actual` differs from `expected`, merged and page-granular ([start, end) pairs),
 * skipping `ignore` ranges. Used to give a readable failure instead of a 64 MiB diff.
 */
export function differingRanges(actual: Uint8Array, expected: Uint8Array, ignore: Array<{ start: number; end: number }> = []): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const len = Math.max(actual.length, expected.length);
  const page = 4096;
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.length);
  for (let off = 0; off < len; off += page) {
    const end = Math.min(off + page, len);
    if (ignore.some((r) => off >= r.start && end <= r.end)) continue;
    if (end > a.length || end > e.length || a.compare(e, off, end, off, end) !== 0) {
      const last = out[out.length - 1];
      if (last && last[1] === off) last[1] = end; else out.push([off, end]);
    }
  }
  return out;
}

export const hexRanges = (r: Array<[number, number]>) =>
  r.slice(0, 8).map(([s, e]) => `0x${s.toString(16)}-0x${e.toString(16)}`).join(', ') + (r.length > 8 ? ` … (${r.length} ranges)` : '');
