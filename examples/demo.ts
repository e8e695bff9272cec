#!/usr/bin/env node
// `npm run demo`: a whole post-copy migration of the toy process on this machine, verified.
//
//   1. reference: the digest of a run that is never migrated (K steps)
//   2. postcopy-daemon --listen ... --control ... --once --stats FILE
//   3. destination toy (TypeScript, or the C toy with --c) attaches to the daemon and waits for its state
//   4. source toy runs M steps, then migrates: the destination runs at once, its memory following
//   5. the destination's digest after K steps must equal the reference; the daemon's stats are shown
//
// Options: --size 1G --pattern hotset|uniform|sequential --seed 1 --steps K --migrate-at M
//          --mode missing|minor --transport unix|tcp --c (C destination)
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseSize, parsePattern } from './toy/workload.js';
import { buildCToy } from './c-toy/build.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TOY = path.join(here, 'toy', 'main.js');
const DAEMON = path.resolve(here, '../src/cli/daemon.js');

const USAGE = `usage: npm run demo -- [--size 1G] [--pattern hotset|uniform|sequential] [--seed 1] [--steps K]
                     [--migrate-at M] [--mode missing|minor] [--transport tcp|unix] [--c] [--timeout SEC]`;

const OPTIONS = {
  size: { type: 'string', default: '1G' },
  pattern: { type: 'string', default: 'hotset' },
  seed: { type: 'string', default: '1' },
  steps: { type: 'string', default: '4000000' },
  'migrate-at': { type: 'string', default: '2000000' },
  mode: { type: 'string', default: 'missing' },
  transport: { type: 'string', default: 'tcp' },
  c: { type: 'boolean', default: false },
  timeout: { type: 'string', default: '300' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function parseOptions() {
  try {
    return parseArgs({ options: OPTIONS, strict: true });
  } catch (err) {
    console.error(`demo: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const { values } = parseOptions();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const children: ChildProcess[] = [];
function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', killAll);

interface Done { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
function start(name: string, cmd: string, args: string[], opts: { showStderr?: boolean } = {}): { proc: ChildProcess; done: Promise<Done>; stdoutText: () => string } {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let stdout = '', stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (opts.showStderr) process.stderr.write(d.split(/(?<=\n)/).map((l) => (l.startsWith('\r') ? l : `[${name}] ${l}`)).join(''));
  });
  const done = new Promise<Done>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { proc, done, stdoutText: () => stdout };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(pathname: string, ms: number, what: string, exited: Promise<Done>): Promise<void> {
  let gone: Done | undefined;
  void exited.then((d) => { gone = d; });
  const end = Date.now() + ms;
  while (!fs.existsSync(pathname)) {
    if (gone) throw new Error(`${what} exited before creating ${pathname}: ${gone.stderr.trim().slice(-1000)}`);
    if (Date.now() > end) throw new Error(`${what} did not create ${pathname} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const digestOf = (out: string): string | undefined => /digest=([0-9a-f]{32})/.exec(out)?.[1];

async function main(): Promise<number> {
  const size = parseSize(values.size!);
  const pattern = parsePattern(values.pattern!);
  const K = Number(values.steps), M = Number(values['migrate-at']);
  if (!(M <= K)) throw new Error(`--migrate-at ${M} must be ≤ --steps ${K}`);
  if (!fs.existsSync(DAEMON)) throw new Error(`${DAEMON} not found: build first (npm run build)`);
  const common = ['--size', String(size), '--pattern', pattern, '--seed', values.seed!];
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'postcopy-demo-'));
  const control = path.join(work, 'control.sock');
  const statsFile = path.join(work, 'stats.json');
  const listen = values.transport === 'unix' ? `unix:${path.join(work, 'migration.sock')}` : `tcp:127.0.0.1:${await freePort()}`;
  const timer = setTimeout(() => { console.error(`demo: timed out after ${values.timeout} s`); killAll(); process.exit(1); }, Number(values.timeout) * 1000);
  timer.unref();

  console.log(`demo: ${size} bytes, ${pattern} pattern, migration at step ${M} of ${K}, ${values.mode} mode, ${listen}${values.c ? ', C destination' : ''}`);
  let t0 = performance.now();
  const ref = await start('reference', process.execPath, [TOY, 'reference', ...common, '--steps', String(K)]).done;
  const expected = digestOf(ref.stdout);
  if (ref.code !== 0 || !expected) throw new Error(`reference run failed: ${ref.stderr}`);
  console.log(`demo: reference digest ${expected} (${((performance.now() - t0) / 1000).toFixed(1)} s, never migrated)`);

  const daemon = start('daemon', process.execPath, [DAEMON, '--listen', listen, '--control', control, '--once', '--stats', statsFile], { showStderr: true });
  await waitFor(control, 10_000, 'postcopy-daemon', daemon.done);

  const destArgs = ['dest', '--control', control, '--size', String(size), '--steps', String(K), '--mode', values.mode!];
  const dest = values.c ? start('dest(C)', buildCToy(), destArgs, { showStderr: true }) : start('dest', process.execPath, [TOY, ...destArgs], { showStderr: true });
  // Give the destination a moment to attach before the source starts streaming.
  await new Promise((r) => setTimeout(r, 300));
  t0 = performance.now();
  const source = start('source', process.execPath, [TOY, 'source', ...common, '--migrate-at', String(M), '--to', listen], { showStderr: true });

  const [src, dst, dmn] = await Promise.all([source.done, dest.done, daemon.done]);
  console.log(`demo: source exit ${src.code}, destination exit ${dst.code}, daemon exit ${dmn.code} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  if (fs.existsSync(statsFile)) console.log(`demo: daemon stats ${fs.readFileSync(statsFile, 'utf8').trim()}`);
  const got = digestOf(dst.stdout);
  fs.rmSync(work, { recursive: true, force: true });
  if (!got) {
    console.error(`demo: FAILED: the destination printed no digest\n${dst.stderr.slice(-2000)}`);
    return 1;
  }
  if (got !== expected) {
    console.error(`demo: FAILED: destination digest ${got} ≠ reference ${expected}`);
    return 1;
  }
  console.log(`demo: OK: destination digest ${got} = reference (migrated at step ${M}, ran to ${K})`);
  return src.code === 0 && dst.code === 0 ? 0 : 1;
}

main().then((code) => { killAll(); process.exit(code); }, (e: Error) => { console.error(`demo: ${e.message}`); killAll(); process.exit(1); });
