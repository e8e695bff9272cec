// `npm run bench:fault`: the in-process fault round trip and bulk UFFDIO_COPY, TypeScript and C side by side.
// Builds bench/fault/fault_ref.c with gcc, then alternates C and TS runs (one process each) in two CPU
// placements: both threads on one vCPU (`taskset -c 0`) and unpinned. Reports median [min .. max] over the
// repetitions, prints `ratio same-vcpu TS/C: X.XX` (median p50 latency) and writes JSON to bench/results/.
//
//   node dist/bench/fault/run.js [--reps 5] [--faults 65536] [--bulk-mib 1024|512] [--no-bulk] [--quick]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/fault
const root = path.resolve(here, '../../..');
const cSource = path.join(root, 'bench/fault/fault_ref.c');
const cBinary = path.join(root, 'bench/build/fault_ref');
const tsScript = path.join(here, 'ts_fault.js');

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(name);
const opt = (name: string, def: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const quick = flag('--quick');
const reps = opt('--reps', quick ? 1 : 5);
const faults = opt('--faults', quick ? 16384 : 65536);
const memAvailMiB = Number(/MemAvailable:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024;
const bulkMiB = opt('--bulk-mib', quick ? 256 : memAvailMiB > 6144 ? 1024 : 512);

type Run = Record<string, any>;
interface Stat { median: number; min: number; max: number }
const stat = (xs: number[]): Stat => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2, min: s[0], max: s[s.length - 1] };
};
const fmt = (s: Stat, digits = 2): string => `${s.median.toFixed(digits)} [${s.min.toFixed(digits)} .. ${s.max.toFixed(digits)}]`;

function build(): boolean {
  try {
    fs.mkdirSync(path.dirname(cBinary), { recursive: true });
    execFileSync('gcc', ['-O2', '-pthread', '-o', cBinary, cSource], { stdio: 'inherit' });
    return true;
  } catch (e) {
    console.error(`C reference not built (${(e as Error).message}); TS figures only`);
    return false;
  }
}

function runOne(cmd: string[], pin: boolean): Run {
  const full = pin ? ['taskset', '-c', '0', ...cmd] : cmd;
  const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${full.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const hasC = build();
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const impls: [string, string[]][] = [
  ...(hasC ? [['C', [cBinary, 'fault', '-n', String(faults)]] as [string, string[]]] : []),
  ['TS', [process.execPath, tsScript, 'fault', '-n', String(faults)]],
];
const placements: [string, boolean][] = [...(hasTaskset ? [['same-vcpu', true] as [string, boolean]] : []), ['unpinned', false]];
if (!hasTaskset) console.error('taskset not available: same-vcpu placement skipped');

console.log(`fault round trip: ${faults} faults per run, ${reps} repetitions, ${os.cpus().length} vCPUs, ${os.loadavg()[0].toFixed(2)} load`);
const results: Record<string, Record<string, Run[]>> = {};
for (const [place, pin] of placements) {
  results[place] = {};
  for (let r = 0; r < reps; r++) {
    for (const [impl, cmd] of impls) (results[place][impl] ??= []).push(runOne(cmd, pin));
  }
}

const summary: Record<string, Record<string, Record<string, Stat>>> = {};
console.log('\n| placement | impl | p50 µs | p99 µs | mean µs | faults/s |');
console.log('|---|---|---|---|---|---|');
for (const [place, byImpl] of Object.entries(results)) {
  summary[place] = {};
  for (const [impl, runs] of Object.entries(byImpl)) {
    const s = {
      p50Us: stat(runs.map((x) => x.p50Us)), p99Us: stat(runs.map((x) => x.p99Us)),
      meanUs: stat(runs.map((x) => x.meanUs)), faultsPerSec: stat(runs.map((x) => x.faultsPerSec)),
    };
    summary[place][impl] = s;
    console.log(`| ${place} | ${impl} | ${fmt(s.p50Us)} | ${fmt(s.p99Us)} | ${fmt(s.meanUs)} | ${fmt(s.faultsPerSec, 0)} |`);
  }
}
const ratio = (place: string, key: 'p50Us' | 'meanUs'): number | null =>
  summary[place]?.C && summary[place]?.TS ? summary[place].TS[key].median / summary[place].C[key].median : null;
for (const place of Object.keys(summary)) {
  const r = ratio(place, 'p50Us');
  if (r !== null) console.log(`ratio ${place} TS/C: ${r.toFixed(2)} (median p50; mean-based ${ratio(place, 'meanUs')!.toFixed(2)})`);
}
const tsSame = summary['same-vcpu']?.TS;
if (tsSame) {
  const r = ratio('same-vcpu', 'p50Us');
  console.log(`goal (same vCPU): TS ≤ 1.2× C → ${r === null ? 'n/a' : r <= 1.2 ? 'met' : 'NOT met'}; ` +
    `≥ 120k faults/s → ${tsSame.faultsPerSec.median >= 120_000 ? 'met' : 'NOT met'} (${tsSame.faultsPerSec.median.toFixed(0)})`);
}

let bulk: Record<string, Run[]> | undefined;
if (!flag('--no-bulk')) {
  const bulkReps = quick ? 1 : 3;
  console.log(`\nbulk UFFDIO_COPY over a fresh ${bulkMiB} MiB MISSING region (no faults), ${bulkReps} repetitions, unpinned`);
  bulk = {};
  for (let r = 0; r < bulkReps; r++) {
    if (hasC) (bulk.C ??= []).push(runOne([cBinary, 'bulk', '-s', String(bulkMiB)], false));
    (bulk.TS ??= []).push(runOne([process.execPath, tsScript, 'bulk', '-s', String(bulkMiB)], false));
  }
  console.log('\n| impl | COPY 4 KiB GB/s | COPY 64 KiB | COPY 2 MiB | µs/ioctl 4K / 64K / 2M | memcpy fresh | memcpy prefaulted |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [impl, runs] of Object.entries(bulk)) {
    const c = (k: string): Stat => stat(runs.map((x) => x.copy[k].gbPerSec));
    const us = (k: string): string => stat(runs.map((x) => x.copy[k].usPerIoctl)).median.toFixed(2);
    console.log(`| ${impl} | ${fmt(c('4096'))} | ${fmt(c('65536'))} | ${fmt(c('2097152'))} | ${us('4096')} / ${us('65536')} / ${us('2097152')} | ` +
      `${fmt(stat(runs.map((x) => x.memcpyFreshGbPerSec)))} | ${fmt(stat(runs.map((x) => x.memcpyPrefaultedGbPerSec)))} |`);
  }
}

const outDir = path.join(root, 'bench/results');
fs.mkdirSync(outDir, { recursive: true });
const outFile = path.join(outDir, `fault-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
fs.writeFileSync(outFile, JSON.stringify({
  date: new Date().toISOString(), node: process.version, kernel: os.release(), cpus: os.cpus().length,
  loadavg: os.loadavg(), faults, reps, bulkMiB, summary, runs: results, bulk,
}, null, 2));
console.log(`\nresults: ${path.relative(process.cwd(), outFile)}`);
