// Worker for test/protocol/mutation.test.ts: decodes many mutated copies of one real stream and
// classifies every outcome. It runs in a worker thread so that a decoder that loops forever is
// stopped by worker.terminate() (the test's hard time bound) instead of hanging the test process.
import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ProtocolError, RamImage, ReturnPathDecoder, StreamDecoder, type DecodedRecord } from '../../src/protocol/index.js';
import { randInt, rng } from './random.js';

export interface MutationJob {
  /** Primary stream file. */
  file: string;
  /** A second stream to splice with (same kind). */
  other: string;
  kind: 'stream' | 'return-path';
  seed: number;
  /** Stop starting new cases after this long. */
  budgetMs: number;
  /** Fail a case whose ArrayBuffer memory grows more than this over the baseline. */
  maxExtraBytes: number;
}

export interface MutationResult {
  cases: number;
  decoded: number;
  /** ProtocolError counts by code. */
  errors: Record<string, number>;
  /** Outcomes that break the contract (anything but success or an in-range ProtocolError). */
  violations: string[];
  /** Longest single case, ms. */
  slowestMs: number;
  peakExtraBytes: number;
}

const job = workerData as MutationJob;

function decoderFor(kind: MutationJob['kind']) {
  return kind === 'stream' ? new StreamDecoder() : new ReturnPathDecoder();
}

/** Record start offsets of a clean decode: mutations aimed at headers hurt most. */
function recordOffsets(data: Uint8Array): number[] {
  const d = decoderFor(job.kind);
  const offsets: number[] = [];
  for (const r of d.push(data)) offsets.push(r.offset);
  for (const r of d.end()) offsets.push(r.offset);
  return offsets;
}

function run(): MutationResult {
  const a = new Uint8Array(readFileSync(job.file));
  const b = new Uint8Array(readFileSync(job.other));
  const r = rng(job.seed);
  const aOffsets = recordOffsets(a);
  const bOffsets = recordOffsets(b);
  const result: MutationResult = { cases: 0, decoded: 0, errors: {}, violations: [], slowestMs: 0, peakExtraBytes: 0 };
  const baseline = process.memoryUsage().arrayBuffers;
  const pickOffset = (offs: number[], len: number) =>
    r() < 0.6 && offs.length > 0 ? Math.min(len, offs[randInt(r, 0, offs.length - 1)] + randInt(r, 0, 24)) : randInt(r, 0, len);

  const check = (label: string, input: Uint8Array) => {
    const t0 = performance.now();
    result.cases++;
    const d = decoderFor(job.kind);
    // Decoded stream records also go into a RamImage (what `postcopy-inspect --extract` does): it
    // must reject what it cannot apply with a ProtocolError too.
    const image = job.kind === 'stream' ? new RamImage() : undefined;
    const apply = (records: readonly unknown[]) => { if (image) for (const rec of records) image.apply(rec as DecodedRecord); };
    // Feed in 64 KiB pushes and sample memory after each: an allocation sized by a corrupt length
    // field would be alive in the decoder's carry buffer at that point.
    try {
      for (let p = 0; p < input.length; p += 65536) {
        apply(d.push(input.subarray(p, Math.min(input.length, p + 65536))));
        const extra = process.memoryUsage().arrayBuffers - baseline;
        if (extra > result.peakExtraBytes) result.peakExtraBytes = extra;
        if (extra > job.maxExtraBytes) {
          result.violations.push(`${label}: ${extra} bytes of ArrayBuffer memory held after push at ${p}`);
          return;
        }
      }
      apply(d.end());
      result.decoded++;
    } catch (err) {
      if (err instanceof ProtocolError) {
        result.errors[err.code] = (result.errors[err.code] ?? 0) + 1;
        if (!(Number.isInteger(err.offset) && err.offset >= 0 && err.offset <= input.length)) {
          result.violations.push(`${label}: ProtocolError offset ${err.offset} outside [0, ${input.length}]: ${err.message}`);
        }
      } else {
        const e = err as Error;
        result.violations.push(`${label}: ${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}`);
      }
    } finally {
      const ms = performance.now() - t0;
      if (ms > result.slowestMs) result.slowestMs = ms;
    }
  };

  const start = performance.now();
  const timeLeft = () => performance.now() - start < job.budgetMs;
  // Deterministic corner cases first.
  for (const cut of [0, 1, 4, 7, 8, 9, 12, a.length - 1]) if (cut >= 0 && cut <= a.length) check(`truncate@${cut}`, a.subarray(0, cut));
  for (let i = 0; timeLeft(); i++) {
    const which = i % 4;
    if (which === 0) {
      const cut = pickOffset(aOffsets, a.length);
      check(`truncate@${cut}`, a.subarray(0, cut));
    } else if (which === 1 || which === 2) {
      const m = new Uint8Array(a);
      const flips = randInt(r, 1, 3);
      const where: string[] = [];
      for (let f = 0; f < flips; f++) {
        const pos = Math.min(a.length - 1, pickOffset(aOffsets, a.length - 1));
        const bit = randInt(r, 0, 7);
        m[pos] ^= 1 << bit;
        where.push(`${pos}.${bit}`);
      }
      // Half the flipped streams are also truncated, so errors meet end-of-input handling.
      const cut = r() < 0.5 ? m.length : randInt(r, 0, m.length);
      check(`flip[${where.join(',')}]${cut < m.length ? `+truncate@${cut}` : ''}`, m.subarray(0, cut));
    } else {
      const ca = pickOffset(aOffsets, a.length);
      const cb = pickOffset(bOffsets, b.length);
      const m = new Uint8Array(ca + b.length - cb);
      m.set(a.subarray(0, ca), 0);
      m.set(b.subarray(cb), ca);
      check(`splice a[0,${ca})+b[${cb},)`, m);
    }
  }
  return result;
}

parentPort!.postMessage(run());
