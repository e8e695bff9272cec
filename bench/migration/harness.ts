// Shared plumbing for bench/remote and bench/migration: build the C reference, spawn processes with a CPU
// placement (taskset), run one migration through OUR postcopy-daemon + source, statistics and output files.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export { parseBytes } from './units.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/migration
export const root = path.resolve(here, '../../..');
export const distBench = path.resolve(here, '..');
export const refSource = path.join(root, 'bench/remote/remote_ref.c');
export const refBinary = path.join(root, 'bench/build/remote_ref');
export const daemonCli = path.join(root, 'dist/src/cli/daemon.js');
export const sourceScript = path.join(distBench, 'migration/source.js');
export const resultsDir = path.join(root, 'bench/results');

export type Placement = 'cpu0' | 'unpinned';
export const PLACEMENTS: Placement[] = ['cpu0', 'unpinned'];
export const placementNote = (p: Placement): string => (p === 'cpu0' ? 'taskset -c 0 (every process on cpu0)' : 'unpinned');

/** gcc -O2 the C reference when missing or older than its source; throws with gcc's output on failure. */
export function buildRef(): string {
  const fresh = fs.existsSync(refBinary) && fs.statSync(refBinary).mtimeMs >= fs.statSync(refSource).mtimeMs;
  if (!fresh) {
    fs.mkdirSync(path.dirname(refBinary), { recursive: true });
    execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-o', refBinary, refSource], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return refBinary;
}

export const haveTaskset = (): boolean => spawnSync('taskset', ['-c', '0', 'true']).status === 0;

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout line matching re. */
  line(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (rejects after timeoutMs, killing the process). */
  exit(timeoutMs?: number): Promise<number>;
  kill(sig?: NodeJS.Signals): void;
}

// Children still running when the bench is interrupted are killed with it (never left behind).
const live = new Set<ChildProcess>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of live) c.kill('SIGKILL');
    process.exit(130);
  });
}
process.once('exit', () => { for (const c of live) c.kill('SIGKILL'); });

/** Spawn cmd (prefixed by taskset -c 0 for the cpu0 placement); everything is killed on timeout. */
export function start(cmd: string, args: string[], placement: Placement, env?: NodeJS.ProcessEnv): Proc {
  const full = placement === 'cpu0' ? ['taskset', '-c', '0', cmd, ...args] : [cmd, ...args];
  const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; waiters.forEach((w) => w()); });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { if (err.length < 1 << 20) err += s; });
  // 'close', not 'exit': 'exit' can come before the last stdout bytes (the JSON line) were read.
  const exited = new Promise<number>((resolve) => child.once('close', (code, sig) => { waiters.forEach((w) => w()); resolve(code ?? (sig ? 128 : 1)); }));
  const proc: Proc = {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    line(re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${path.basename(cmd)}: no line matching ${re} within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`)), timeoutMs);
        const check = (): void => {
          const m = re.exec(out);
          if (m) { clearTimeout(timer); resolve(m); return; }
          if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited (${child.exitCode ?? child.signalCode}) before printing ${re}; stderr: ${err.slice(-2000)}`));
          }
        };
        waiters.push(check);
        check();
      });
    },
    async exit(timeoutMs = 300_000) {
      let timer: NodeJS.Timeout | undefined;
      const t = new Promise<number>((_, reject) => {
        timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${path.basename(cmd)} ${args.join(' ')} timed out after ${timeoutMs} ms; stderr: ${err.slice(-2000)}`)); }, timeoutMs);
      });
      try { return await Promise.race([exited, t]); } finally { clearTimeout(timer); }
    },
    kill(sig = 'SIGKILL') { if (child.exitCode === null && child.signalCode === null) child.kill(sig); },
  };
  return proc;
}

/** The last JSON object line of a process's stdout. */
export function lastJson(text: string): any {
  const lines = text.trim().split('\n').filter((l) => l.startsWith('{'));
  if (lines.length === 0) throw new Error(`no JSON line in output: ${text.slice(-500)}`);
  return JSON.parse(lines[lines.length - 1]);
}

/** Peak resident set (VmHWM, KiB) of a live process. */
export function vmHwmKiB(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface OursRun {
  daemon: any; // the daemon's --stats JSON
  source: any; // bench source: { stopNs, stats, timeline }
  dest: any; // remote_ref attach JSON
  downtimeMs: number; // source stopped → destination process has its state (CLOCK_MONOTONIC, across processes)
  daemonHwmKiB: number | null;
}

export interface OursOptions {
  size: number;
  placement: Placement;
  background: boolean;
  /** Destination touch order: seq, rand, or none (wait for completion only). */
  order: 'seq' | 'rand' | 'none';
  /** Pages the destination touches (default: all). */
  pages?: number;
  /** Sample pages present in the destination every N ms (for plots only: it costs CPU). */
  sampleMs?: number;
  timeoutMs?: number;
  /** Destination memory: a shared memfd (default, as bench/remote's C destination) or private anonymous. */
  memory?: 'memfd' | 'anon';
}

export interface PairRun {
  daemon: any; // the daemon's --stats JSON (null if it wrote none)
  daemonHwmKiB: number | null;
  dest: Proc;
  source: Proc;
}

export interface PairOptions {
  placement: Placement;
  /** Destination process command line, given the daemon's control socket path. */
  dest: (control: string) => [string, string[]];
  /** Source process command line, given the daemon's listen URI. */
  source: (uri: string) => [string, string[]];
  timeoutMs?: number;
}

/**
 * One migration through our stack: postcopy-daemon (no --once: it stays up so its VmHWM can be read once the
 * migration is over, then it is stopped), a destination process attached to its control socket, a source
 * connecting to its listen address. Both processes must exit 0.
 */
export async function runPair(o: PairOptions): Promise<PairRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postcopy-bench-'));
  const control = path.join(dir, 'control.sock');
  const statsFile = path.join(dir, 'stats.json');
  const timeoutMs = o.timeoutMs ?? 600_000;
  const procs: Proc[] = [];
  try {
    const daemon = start(process.execPath, [daemonCli, '--listen', 'tcp:127.0.0.1:0', '--control', control, '--stats', statsFile, '--no-progress', '--timeout', '120'], o.placement);
    procs.push(daemon);
    const uri = (await daemon.line(/^listening (tcp:\S+)$/m, 30_000))[1];
    await daemon.line(/^control /m, 30_000);
    const [dcmd, dargs] = o.dest(control);
    const dest = start(dcmd, dargs, o.placement);
    procs.push(dest);
    const [scmd, sargs] = o.source(uri);
    const source = start(scmd, sargs, o.placement);
    procs.push(source);
    let dc: number, sc: number;
    try {
      [dc, sc] = await Promise.all([dest.exit(timeoutMs), source.exit(timeoutMs)]);
    } catch (e) {
      throw new Error(`${(e as Error).message}\ndestination stderr: ${dest.stderr().slice(-800)}\nsource stderr: ${source.stderr().slice(-800)}\ndaemon: ${daemon.stdout().slice(-800)} ${daemon.stderr().slice(-800)}`);
    }
    if (dc !== 0) throw new Error(`destination failed (${dc}): ${dest.stderr().slice(-1500)} ${dest.stdout().slice(-500)}\ndaemon: ${daemon.stderr().slice(-1500)}`);
    if (sc !== 0) throw new Error(`source failed (${sc}): ${source.stderr().slice(-1500)}\ndaemon: ${daemon.stderr().slice(-1500)}`);
    for (let i = 0; i < 200 && !fs.existsSync(statsFile); i++) await sleep(25);
    const daemonHwmKiB = vmHwmKiB(daemon.pid);
    daemon.kill('SIGTERM');
    await daemon.exit(10_000).catch(() => daemon.kill());
    const daemonJson = fs.existsSync(statsFile) ? JSON.parse(fs.readFileSync(statsFile, 'utf8')) : null;
    return { daemon: daemonJson, daemonHwmKiB, dest, source };
  } finally {
    for (const p of procs) p.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** runPair with remote_ref attach (C toucher) as the destination and bench/migration/source.js as the source. */
export async function runOurs(o: OursOptions): Promise<OursRun> {
  const timeoutMs = o.timeoutMs ?? 90_000 + Math.ceil(o.size / 2 ** 30) * 90_000;
  const r = await runPair({
    placement: o.placement,
    timeoutMs,
    dest: (control) => [refBinary, ['attach', '--control', control, '-s', String(o.size), '-o', o.order,
      '--timeout', String(Math.ceil(timeoutMs / 1000)), ...(o.pages ? ['-n', String(o.pages)] : []),
      ...(o.sampleMs ? ['--sample-ms', String(o.sampleMs)] : []), '--memory', o.memory ?? 'memfd']],
    source: (uri) => [process.execPath, [sourceScript, '--to', uri, '--size', String(o.size), ...(o.background ? [] : ['-n'])]],
  });
  const destJson = lastJson(r.dest.stdout());
  const srcJson = lastJson(r.source.stdout());
  return {
    daemon: r.daemon, source: srcJson, dest: destJson, daemonHwmKiB: r.daemonHwmKiB,
    downtimeMs: Number(BigInt(destJson.stateAtNs) - BigInt(srcJson.stopNs)) / 1e6,
  };
}

// ---- statistics and output

export interface Stat { median: number; min: number; max: number; n: number }
export function stat(xs: number[]): Stat {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const m = s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median: m, min: s[0], max: s[s.length - 1], n: s.length };
}
export const fmt = (s: Stat, d = 1): string => (s.n ? `${s.median.toFixed(d)} [${s.min.toFixed(d)} .. ${s.max.toFixed(d)}]` : 'n/a');

export function argOpt(name: string, def: string): string {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
}
export const argFlag = (name: string): boolean => process.argv.slice(2).includes(name);

export function hostLine(): string {
  return `${os.cpus().length} vCPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${new Date().toISOString()}`;
}

/** Write bench/results/<name>-<timestamp>.json; returns the path. */
export function writeResult(name: string, data: unknown): string {
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(data, null, 1) + '\n');
  return file;
}

export function writeFileIn(name: string, text: string): string {
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, name);
  fs.writeFileSync(file, text);
  return file;
}


/** Element-wise sum of histograms of different lengths. */
export function sumHists(hs: number[][]): number[] {
  const out: number[] = [];
  for (const h of hs) h.forEach((c, i) => { out[i] = (out[i] ?? 0) + c; });
  return Array.from(out, (x) => x ?? 0);
}

/**
 * Run `f`; on failure log it, remember it in `failures` and return undefined, so one bad run (on a shared,
 * noisy machine, or a bug in the code under test) is reported without losing the rest of the benchmark.
 */
export async function attempt<T>(what: string, failures: string[], f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    const msg = `${what} FAILED: ${(e as Error).message.split('\n').slice(0, 6).join(' | ').slice(0, 1500)}`;
    failures.push(msg);
    process.stderr.write(msg + '\n');
    return undefined;
  }
}

export const ratioText = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a');
