// End-to-end harness: runs the product through its CLIs (postcopy-daemon, the toy process in its three roles,
// the C toy) as child processes, with hard deadlines. Every child is tracked by its Scope and SIGKILLed at
// teardown (or on a deadline), temp dirs are removed, and the teardown fails loudly if a child survives.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test/e2e
export const DIST = path.resolve(here, '../..');
export const TOY = path.join(DIST, 'examples', 'toy', 'main.js');
export const DAEMON = path.join(DIST, 'src', 'cli', 'daemon.js');
export const RELAY = path.join(here, 'relay.js');
export const GUARD_DEST = path.join(here, 'children', 'guard-dest.js');
export const HOSTILE_SOURCE = path.join(here, 'children', 'hostile-source.js');
export const MiB = 1024 * 1024;
export const PAGE = 4096;

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

/** One tracked child: output captured, exit observable, lines awaitable. */
export class Proc {
  stdout = '';
  stderr = '';
  exit: Exit | null = null;
  /** performance.now() at exit. */
  exitAt = 0;
  readonly exited: Promise<Exit>;
  private lineWaiters: (() => void)[] = [];

  constructor(readonly name: string, readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { this.stdout += d; this.poke(); });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; this.poke(); });
    this.exited = new Promise((resolve) => {
      child.on('error', (e) => { this.stderr += `\n[spawn error] ${e.message}`; });
      child.on('close', (code, signal) => { this.exit = { code, signal }; this.exitAt = performance.now(); this.poke(); resolve(this.exit); });
    });
  }

  get pid(): number { return this.child.pid ?? -1; }
  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }

  private poke(): void {
    const w = this.lineWaiters;
    this.lineWaiters = [];
    for (const f of w) f();
  }

  /** Resolve with the first match of `re` in stdout+stderr; reject on exit without it or after `ms`. */
  waitFor(re: RegExp, ms: number, stream: 'stdout' | 'stderr' | 'both' = 'both'): Promise<RegExpMatchArray> {
    const text = (): string => (stream === 'stdout' ? this.stdout : stream === 'stderr' ? this.stderr : `${this.stdout}\n${this.stderr}`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${re} within ${ms} ms\n${this.tail()}`)), ms);
      const check = (): void => {
        const m = re.exec(text());
        if (m) { clearTimeout(timer); resolve(m); return; }
        if (this.exit) { clearTimeout(timer); reject(new Error(`${this.name} exited (${this.exit.signal ?? this.exit.code}) without ${re}\n${this.tail()}`)); return; }
        this.lineWaiters.push(check);
      };
      check();
    });
  }

  tail(n = 1500): string {
    return `--- ${this.name} stdout ---\n${this.stdout.slice(-n)}\n--- ${this.name} stderr ---\n${this.stderr.slice(-n)}`;
  }
}

/** Reject after `ms` with a message naming `what`. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Children and temp files of one test; torn down with the test (kill -9 + wait + rm). */
export class Scope {
  readonly procs: Proc[] = [];
  readonly dir: string;
  private cleanups: (() => void | Promise<void>)[] = [];

  constructor(readonly t: ExecutionContext) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pc-e2e-'));
    t.teardown(() => this.close());
  }

  spawn(name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const p = new Proc(name, child);
    this.procs.push(p);
    return p;
  }

  node(name: string, script: string, args: string[], wrap: string[] = []): Proc {
    return wrap.length ? this.spawn(name, wrap[0], [...wrap.slice(1), process.execPath, script, ...args]) : this.spawn(name, process.execPath, [script, ...args]);
  }

  onClose(f: () => void | Promise<void>): void { this.cleanups.push(f); }

  /** SIGKILL every child still alive (used on failure/timeout too). */
  killAll(): void {
    for (const p of this.procs) if (p.alive) p.child.kill('SIGKILL');
  }

  async close(): Promise<void> {
    const survivors = this.procs.filter((p) => p.alive).map((p) => `${p.name} (pid ${p.pid})`);
    this.killAll();
    await deadline(Promise.all(this.procs.map((p) => p.exited)), 10_000, 'children to exit after SIGKILL').catch((e: Error) => this.t.log(e.message));
    for (const f of this.cleanups.reverse()) {
      try { await f(); } catch (e) { this.t.log(`cleanup: ${(e as Error).message}`); }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (survivors.length) this.t.log(`killed at teardown: ${survivors.join(', ')}`);
  }

  /** Dump every child's output into the test log (on failure). */
  dump(): void {
    for (const p of this.procs) this.t.log(p.tail());
  }
}

// ---------------------------------------------------------------------------------------------------------
// The never-migrated reference digest (cached per parameters within one test file).

const refCache = new Map<string, Promise<string>>();

export function referenceDigest(scope: Scope, o: { size: number; pattern: string; seed: number; steps: number }): Promise<string> {
  const key = `${o.size}/${o.pattern}/${o.seed}/${o.steps}`;
  let p = refCache.get(key);
  if (!p) {
    const ref = scope.node('reference', TOY, ['reference', '--size', String(o.size), '--pattern', o.pattern, '--seed', String(o.seed), '--steps', String(o.steps)]);
    p = deadline(ref.exited, 30_000, 'reference run').then((e) => {
      const d = digestOf(ref.stdout);
      if (e.code !== 0 || !d) throw new Error(`reference run failed (${e.signal ?? e.code})\n${ref.tail()}`);
      return d;
    });
    p.catch(() => refCache.delete(key));
    refCache.set(key, p);
  }
  return p;
}

export const digestOf = (out: string): string | undefined => /digest=([0-9a-f]{32})/.exec(out)?.[1];

// ---------------------------------------------------------------------------------------------------------
// postcopy-daemon

export interface DaemonRun { proc: Proc; address: string; control: string; statsFile: string }

export async function startDaemon(scope: Scope, listen: string, opts: { wrap?: string[]; timeoutSec?: number; once?: boolean; extra?: string[] } = {}): Promise<DaemonRun> {
  const control = path.join(scope.dir, 'control.sock');
  const statsFile = path.join(scope.dir, 'stats.json');
  const args = ['--listen', listen, '--control', control, '--stats', statsFile, '--no-progress', '--timeout', String(opts.timeoutSec ?? 20), ...(opts.once === false ? [] : ['--once']), ...(opts.extra ?? [])];
  const proc = scope.node('daemon', DAEMON, args, opts.wrap);
  const m = await proc.waitFor(/^listening (.+)$/m, 15_000, 'stdout');
  await proc.waitFor(/^control /m, 5_000, 'stdout');
  return { proc, address: m[1], control, statsFile };
}

export interface DaemonStats {
  pagesTotal: number; pagesPresent: number; pagesOnDemand: number; pagesBackground: number; pagesZero: number; pagesDuplicate: number;
  faults: number; pagesRequested: number; faultLatencyUs: { p50: number; p99: number; max: number; mean: number; count: number };
  blockedTimeMs: number; downtimeMs: number | null; totalTimeMs: number; bytesOnWire: number; throughputMBps: number; pageSize: number;
  mode: string; transport: string; ok: boolean; error?: string;
}

export function readStats(file: string): DaemonStats | null {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')) as DaemonStats; } catch { return null; }
}

/** The consistency rules of a successful migration's --stats JSON. */
export function checkStats(t: ExecutionContext, s: DaemonStats | null, size: number, mode: string): void {
  if (!s) { t.fail('the daemon wrote no --stats JSON'); return; }
  t.is(s.ok, true, 'stats.ok');
  t.is(s.mode, mode, 'stats.mode');
  t.is(s.pageSize, PAGE, 'stats.pageSize');
  t.is(s.pagesTotal, size / PAGE, 'pagesTotal = region size / page size');
  t.is(s.pagesPresent, s.pagesTotal, 'every page present');
  // Zero pages are counted inside on-demand/background by this daemon; accept either bookkeeping.
  const sum = s.pagesOnDemand + s.pagesBackground;
  t.true(sum === s.pagesTotal || sum + s.pagesZero === s.pagesTotal,
    `total ${s.pagesTotal} = on demand ${s.pagesOnDemand} + background ${s.pagesBackground} (+ zero ${s.pagesZero})`);
  t.true(s.pagesZero >= 0 && s.pagesZero <= s.pagesTotal, `zero ${s.pagesZero} within total`);
  t.true(s.pagesDuplicate >= 0, 'duplicates ≥ 0');
  t.true(s.bytesOnWire > 0, `bytes on the wire ${s.bytesOnWire} > 0`);
  // Non-zero pages travel as 4 KiB payloads: the wire carries at least those bytes.
  t.true(s.bytesOnWire >= (s.pagesTotal - s.pagesZero) * PAGE, `bytes ${s.bytesOnWire} ≥ non-zero pages × 4096`);
  const l = s.faultLatencyUs;
  t.true(l.p50 <= l.p99 && l.p99 <= l.max, `latency p50 ${l.p50} ≤ p99 ${l.p99} ≤ max ${l.max}`);
  t.true(s.pagesOnDemand <= s.pagesTotal && s.pagesRequested >= 0, 'on-demand within total');
  if (s.pagesOnDemand > 0) t.true(s.pagesRequested > 0, 'pages on demand imply pages requested');
  t.true(s.totalTimeMs > 0 && s.throughputMBps > 0, 'total time and throughput > 0');
}

// ---------------------------------------------------------------------------------------------------------
// A whole migration through the CLIs.

export type Transport = 'tcp' | 'unix' | 'exec' | 'exec-source';

export interface MigrationSpec {
  size?: number;
  pattern: 'sequential' | 'uniform' | 'hotset';
  seed?: number;
  steps: number;
  migrateAt: number;
  mode: 'missing' | 'minor';
  transport: Transport;
  dest?: 'ts' | 'c';
  sourceFlags?: string[];
  /** ip netns exec wrappers and the daemon's tcp host. */
  netns?: { daemonWrap: string[]; sourceWrap: string[]; host: string };
  timeoutMs?: number;
  /** Extra postcopy-daemon options (e.g. --flags 1). */
  daemonArgs?: string[];
}

export interface MigrationResult {
  expected: string;
  digest: string | undefined;
  stats: DaemonStats | null;
  daemon: Proc; dest: Proc; source: Proc;
  ms: number;
}

/** Run one migration; `existing` reuses a daemon already started (its listen address must be tcp/unix). */
export async function runMigration(scope: Scope, spec: MigrationSpec, existing?: DaemonRun): Promise<MigrationResult> {
  const size = spec.size ?? 64 * MiB;
  const seed = spec.seed ?? 1;
  const timeout = spec.timeoutMs ?? 45_000;
  const expected = await referenceDigest(scope, { size, pattern: spec.pattern, seed, steps: spec.steps });
  const host = spec.netns?.host ?? '127.0.0.1';
  const relaySock = path.join(scope.dir, 'relay.sock');
  const listen = spec.transport === 'unix' ? `unix:${path.join(scope.dir, 'migration.sock')}`
    : spec.transport === 'exec' ? `exec:${process.execPath} ${RELAY} listen ${relaySock}`
    : `tcp:${host}:0`;
  const daemon = existing ?? await startDaemon(scope, listen, { wrap: spec.netns?.daemonWrap, extra: spec.daemonArgs });
  let to: string;
  if (spec.transport === 'exec') to = `exec:${process.execPath} ${RELAY} connect ${relaySock}`;
  else if (spec.transport === 'exec-source') {
    const m = /^tcp:(.*):(\d+)$/.exec(daemon.address)!;
    to = `exec:${process.execPath} ${RELAY} connect-tcp ${m[1]} ${m[2]}`;
  } else to = daemon.address;

  const destArgs = ['dest', '--control', daemon.control, '--size', String(size), '--steps', String(spec.steps), '--mode', spec.mode];
  let dest: Proc;
  if (spec.dest === 'c') {
    const { buildCToy } = await import('../../examples/c-toy/build.js');
    const bin = buildCToy();
    dest = spec.netns ? scope.spawn('dest(C)', spec.netns.daemonWrap[0], [...spec.netns.daemonWrap.slice(1), bin, ...destArgs]) : scope.spawn('dest(C)', bin, destArgs);
  } else {
    dest = scope.node('dest', TOY, destArgs, spec.netns?.daemonWrap);
  }
  const t0 = performance.now();
  const source = scope.node('source', TOY, ['source', '--size', String(size), '--pattern', spec.pattern, '--seed', String(seed),
    '--migrate-at', String(spec.migrateAt), '--to', to, ...(spec.sourceFlags ?? [])], spec.netns?.sourceWrap);
  try {
    await deadline(Promise.all([source.exited, dest.exited, daemon.proc.exited]), timeout, `migration (${JSON.stringify(spec)})`);
  } catch (e) {
    scope.killAll();
    throw new Error(`${(e as Error).message}\n${daemon.proc.tail()}\n${dest.tail()}\n${source.tail()}`);
  }
  return { expected, digest: digestOf(dest.stdout), stats: readStats(daemon.statsFile), daemon: daemon.proc, dest, source, ms: performance.now() - t0 };
}

/** The standard assertions on a finished migration. */
export function checkMigration(t: ExecutionContext, r: MigrationResult, size: number, mode: string): void {
  const why = (): string => `\n${r.daemon.tail()}\n${r.dest.tail()}\n${r.source.tail()}`;
  t.deepEqual(r.daemon.exit, { code: 0, signal: null }, `daemon exit${why()}`);
  t.deepEqual(r.dest.exit, { code: 0, signal: null }, `destination exit${why()}`);
  t.deepEqual(r.source.exit, { code: 0, signal: null }, `source exit${why()}`);
  t.is(r.digest, r.expected, `destination digest must equal the never-migrated reference${why()}`);
  checkStats(t, r.stats, size, mode);
  const s = r.stats;
  if (s) t.log(`${(r.ms / 1000).toFixed(1)} s; pages: on demand ${s.pagesOnDemand}, background ${s.pagesBackground}, zero ${s.pagesZero}, dup ${s.pagesDuplicate}, faults ${s.faults}; p50 ${s.faultLatencyUs.p50} µs; ${(s.bytesOnWire / MiB).toFixed(1)} MiB; ${s.transport}`);
}
