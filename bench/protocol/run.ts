// npm run bench:protocol — decode and encode throughput of src/protocol on a synthetic savevm stream of
// ~1 GiB (mixed PAGE / ZERO records), side by side in the same run with a plain memory copy of the same
// bytes. Writes bench/results/protocol.json.
//
// Env: PROTOCOL_BENCH_BYTES (stream size, default 1 GiB), PROTOCOL_BENCH_REPS (default 5),
//      PROTOCOL_BENCH_ZERO_PERCENT (share of ZERO records, default 25).
// GB/s here means 10^9 bytes per second of stream.
import { randomFillSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamDecoder, StreamEncoder, type RamBlockInfo } from '../../src/protocol/index.js';

const PAGE = 4096;
const CHUNK = 4 * 1024 * 1024;
const STREAM_BYTES = Number(process.env.PROTOCOL_BENCH_BYTES ?? 1024 ** 3);
const REPS = Number(process.env.PROTOCOL_BENCH_REPS ?? 5);
const ZERO_PERCENT = Number(process.env.PROTOCOL_BENCH_ZERO_PERCENT ?? 25);
const BLOCK = 'bench.ram';
const RAM_ID = 2;

// Average bytes per guest page on the wire: PAGE|CONTINUE = 8 + 4096, ZERO|CONTINUE = 9.
const perPage = ((100 - ZERO_PERCENT) * (8 + PAGE) + ZERO_PERCENT * 9) / 100;
const PAGES = Math.max(1, Math.floor(STREAM_BYTES / perPage));
const blocks: RamBlockInfo[] = [{ idstr: BLOCK, usedLength: PAGES * PAGE }];

// Page contents come from a 16 MiB random pool (incompressible, no page is all-zero).
const pool = randomFillSync(Buffer.allocUnsafe(16 * 1024 * 1024));
const POOL_PAGES = pool.length / PAGE;
/** Deterministic page mix: a multiplicative hash decides ZERO vs PAGE for page i. */
const isZeroPage = (i: number) => ((Math.imul(i, 2654435761) >>> 0) % 100) < ZERO_PERCENT;
const pageData = (i: number) => pool.subarray((i % POOL_PAGES) * PAGE, (i % POOL_PAGES + 1) * PAGE);

/**
 * Encodes the whole stream with StreamEncoder into CHUNK-sized send buffers (each PAGE copied once,
 * with pageInto; everything else set). `sink` gets every filled chunk; `fresh` says whether each
 * chunk needs a new buffer (kept by the sink) or the same scratch buffer can be reused.
 */
function encodeStream(sink: (chunk: Buffer) => void, fresh: boolean): number {
  const enc = new StreamEncoder();
  let buf = Buffer.allocUnsafe(CHUNK);
  let pos = 0;
  let total = 0;
  const flush = () => {
    sink(buf.subarray(0, pos));
    total += pos;
    if (fresh) buf = Buffer.allocUnsafe(CHUNK);
    pos = 0;
  };
  const put = (b: Uint8Array) => {
    if (pos + b.length > CHUNK) flush();
    buf.set(b, pos);
    pos += b.length;
  };
  put(enc.header());
  put(enc.configuration('postcopy-uffd-bench'));
  put(enc.section('start', RAM_ID, 'ram', 0, 4));
  put(enc.ram.memSize(blocks));
  put(enc.ram.eos());
  put(enc.footer(RAM_ID));
  const eos = enc.ram.eos();
  const footer = enc.footer(RAM_ID);
  const part = enc.section('part', RAM_ID);
  // One PART section per ~CHUNK of records, like QEMU's iterations.
  let sectionBytes = CHUNK;
  for (let i = 0; i < PAGES; i++) {
    if (sectionBytes >= CHUNK - 64 * 1024) {
      if (i > 0) { put(eos); put(footer); }
      put(part);
      sectionBytes = 0;
    }
    const off = i * PAGE;
    if (isZeroPage(i)) {
      const z = enc.ram.zero(BLOCK, off);
      put(z);
      sectionBytes += z.length;
    } else {
      const need = enc.ram.pageRecordSize(BLOCK);
      if (pos + need > CHUNK) flush();
      const n = enc.ram.pageInto(buf, pos, BLOCK, off, pageData(i));
      pos += n;
      sectionBytes += n;
    }
  }
  put(eos);
  put(footer);
  put(enc.section('end', RAM_ID));
  put(eos);
  put(footer);
  put(enc.eof());
  flush();
  return total;
}

/** Decode every chunk; touch each record so nothing is optimised away. Returns page bytes seen. */
function decodeStream(chunks: readonly Buffer[]): { pages: number; zeros: number; pageBytes: number } {
  const d = new StreamDecoder();
  let pages = 0;
  let zeros = 0;
  let pageBytes = 0;
  const take = (records: ReturnType<StreamDecoder['push']>) => {
    for (const r of records) {
      if (r.kind === 'page') { pages++; pageBytes += r.data.length; } else if (r.kind === 'zero') zeros++;
    }
  };
  for (const c of chunks) take(d.push(c));
  take(d.end());
  return { pages, zeros, pageBytes };
}

/** Decode and place every page into a 64 MiB destination window (what a receiver does). */
function decodeAndPlace(chunks: readonly Buffer[], dst: Buffer): number {
  const d = new StreamDecoder();
  const mask = dst.length - 1;
  let placed = 0;
  const take = (records: ReturnType<StreamDecoder['push']>) => {
    for (const r of records) {
      if (r.kind === 'page') { dst.set(r.data, r.blockOffset & mask); placed++; } else if (r.kind === 'zero') { dst.fill(0, r.blockOffset & mask, (r.blockOffset & mask) + PAGE); placed++; }
    }
  };
  for (const c of chunks) take(d.push(c));
  take(d.end());
  return placed;
}

/** Plain copy of every stream chunk into the 64 MiB window, chunk after chunk (wrapping around). */
function memcpyStream(chunks: readonly Buffer[], dst: Buffer): number {
  let n = 0;
  let at = 0;
  for (const c of chunks) {
    if (at + c.length > dst.length) at = 0;
    dst.set(c, at);
    at += c.length;
    n += c.length;
  }
  return n;
}

const time = (f: () => unknown): number => {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

interface Stat { gbps: number[]; median: number; min: number; max: number; spreadPercent: number }
function stat(gbps: number[]): Stat {
  const s = [...gbps].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return { gbps: gbps.map(r3), median: r3(median), min: r3(s[0]), max: r3(s[s.length - 1]), spreadPercent: Math.round(((s[s.length - 1] - s[0]) / median) * 1000) / 10 };
}

function main(): void {
  const chunks: Buffer[] = [];
  const tGen = time(() => encodeStream((c) => chunks.push(c), true));
  const streamBytes = chunks.reduce((n, c) => n + c.length, 0);
  console.log(`stream: ${(streamBytes / 1024 ** 3).toFixed(3)} GiB in ${chunks.length} chunks of ≤4 MiB, ${PAGES} guest pages (${ZERO_PERCENT}% ZERO), generated in ${tGen.toFixed(2)} s`);
  const check = decodeStream(chunks);
  const expectedZeros = countZeros();
  if (check.pages + check.zeros !== PAGES || check.zeros !== expectedZeros) throw new Error(`decode check failed: ${JSON.stringify(check)}`);

  const window = Buffer.alloc(64 * 1024 * 1024);
  const scratch: Buffer[] = [];
  const series = { memcpy: [] as number[], decode: [] as number[], decodePlace: [] as number[], encode: [] as number[] };
  const gb = streamBytes / 1e9;
  for (let rep = 0; rep < REPS; rep++) {
    series.memcpy.push(gb / time(() => memcpyStream(chunks, window)));
    series.decode.push(gb / time(() => decodeStream(chunks)));
    series.decodePlace.push(gb / time(() => decodeAndPlace(chunks, window)));
    series.encode.push(gb / time(() => encodeStream((c) => { scratch[0] = c; }, false)));
    console.log(`rep ${rep + 1}/${REPS}: memcpy ${series.memcpy[rep].toFixed(2)}  decode ${series.decode[rep].toFixed(2)}  decode+place ${series.decodePlace[rep].toFixed(2)}  encode ${series.encode[rep].toFixed(2)} GB/s`);
  }
  const results = { memcpy: stat(series.memcpy), decode: stat(series.decode), decodePlace: stat(series.decodePlace), encode: stat(series.encode) };
  const ratio = (x: number) => Math.round((x / results.memcpy.median) * 1000) / 1000;
  const out = {
    benchmark: 'protocol codec (issue 3)',
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    streamBytes,
    chunkBytes: CHUNK,
    guestPages: PAGES,
    zeroPercent: ZERO_PERCENT,
    reps: REPS,
    unit: 'GB/s (1e9 bytes of stream per second)',
    results,
    ratioToMemcpy: { decode: ratio(results.decode.median), decodePlace: ratio(results.decodePlace.median), encode: ratio(results.encode.median) },
    goals: {
      decodeAtLeastHalfMemcpy: results.decode.median >= 0.5 * results.memcpy.median,
      decodeAtLeast2GBps: results.decode.median >= 2,
    },
    notes: [
      'memcpy: Buffer.set of every stream chunk into a 64 MiB destination window, wrapping (same bytes as the stream, same destination as decodePlace).',
      'decode: StreamDecoder.push over the 4 MiB chunks; page payloads are views of the chunks (no copy).',
      'decodePlace: decode plus copying each PAGE into (and zero-filling each ZERO in) a 64 MiB window, as a receiver does.',
      'encode: StreamEncoder into 4 MiB send buffers; each PAGE copied once from memory with pageInto().',
    ],
  };
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'protocol.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`\nmedian GB/s: memcpy ${results.memcpy.median}, decode ${results.decode.median} (${out.ratioToMemcpy.decode}× memcpy), decode+place ${results.decodePlace.median}, encode ${results.encode.median}`);
  console.log(`goals: decode ≥ 50% of memcpy: ${out.goals.decodeAtLeastHalfMemcpy ? 'met' : 'NOT met'}; decode ≥ 2 GB/s: ${out.goals.decodeAtLeast2GBps ? 'met' : 'NOT met'}`);
  console.log(`wrote ${path.join(dir, 'protocol.json')}`);
}

function countZeros(): number {
  let n = 0;
  for (let i = 0; i < PAGES; i++) if (isZeroPage(i)) n++;
  return n;
}

main();
