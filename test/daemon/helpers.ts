// Running postcopy-daemon and its peers as child processes with hard timeouts (a migration bug must fail
// a test, never hang it).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';
import { runChild, type ChildResult } from '../helpers/child.js';

export const CLI = fileURLToPath(new URL('../../src/cli/daemon.js', import.meta.url));
export const CHILD = (name: string): string => fileURLToPath(new URL(`./children/${name}.js`, import.meta.url));

export interface DaemonRun {
  dir: string;
  control: string;
  statsFile: string;
  /** tcp port (tcp listen only). */
  port: number;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Exit code (null if killed by the timeout). */
  exited: Promise<{ code: number | null; signal: string | null; timedOut: boolean }>;
  kill(): void;
}

export async function startDaemon(opts: { listen?: (dir: string) => string; args?: string[]; timeoutMs?: number } = {}): Promise<DaemonRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-'));
  const control = path.join(dir, 'control.sock');
  const statsFile = path.join(dir, 'stats.json');
  const listen = opts.listen ? opts.listen(dir) : 'tcp:127.0.0.1:0';
  const child = spawn(process.execPath, [CLI, '--listen', listen, '--control', control, '--stats', statsFile, '--no-progress', ...(opts.args ?? ['--once'])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => { out += b; });
  child.stderr!.on('data', (b: Buffer) => { err += b; });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 60_000);
  const exited = new Promise<{ code: number | null; signal: string | null; timedOut: boolean }>((resolve) => {
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, timedOut }); });
  });
  // Ready once both sockets listen.
  const deadline = Date.now() + 15_000;
  while (!/control /.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`daemon did not start: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = /listening tcp:[^\s]*:(\d+)/.exec(out);
  return {
    dir, control, statsFile, port: m ? Number(m[1]) : 0, child, exited,
    stdout: () => out, stderr: () => err,
    kill: () => child.kill('SIGKILL'),
  };
}

export function runDest(args: { control: string; size: number; mode: 'missing' | 'minor'; order: 'seq' | 'random' | 'after' }, timeoutMs = 60_000): Promise<ChildResult> {
  return runChild({ script: CHILD('dest'), args, timeoutMs });
}

export function runSource(args: { uri: string; size: number; background?: boolean; stateBytes?: number }, timeoutMs = 60_000): Promise<ChildResult> {
  return runChild({ script: CHILD('source'), args, timeoutMs });
}

export function runHostile(args: { port: number; size: number; scenario: string }, timeoutMs = 40_000): Promise<ChildResult> {
  return runChild({ script: CHILD('hostile-source'), args, timeoutMs });
}

export function lastJson(s: string): Record<string, any> {
  const lines = s.trim().split('\n').filter((l) => l.startsWith('{'));
  if (!lines.length) throw new Error(`no JSON line in: ${s.slice(0, 500)}`);
  return JSON.parse(lines[lines.length - 1]);
}

/** Wait until the daemon printed "migration:" (a control client and a source were paired). */
export async function waitFor(fn: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (fn()) return true; await new Promise((r) => setTimeout(r, 25)); }
  return fn();
}
