#!/usr/bin/env node
// postcopy-migrate: the seed's `migrate [-p [-n] [-m]] URI [forward] [backward]` for a process that runs a
// migration agent (serveMigrationAgent() from postcopy-uffd's src/source). The equivalent API call inside
// the process is migrate(uri, { regions, state, postcopy, background, restartAfterRequest, forward, backward }).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { requestMigration, agentSocketPath, type AgentMigrateRequest, type AgentReply } from '../source/agent.js';
import { parseMigrationUri } from '../source/uri.js';
import type { MigrationStats } from '../source/migrate.js';

const USAGE = `usage: postcopy-migrate (--agent PATH | --pid PID) [-p [-n] [-m]] URI [forward] [backward]

Migrate a running process (one that called serveMigrationAgent()) to a postcopy-daemon.

  -p              post-copy: the destination runs at once, memory follows (required: the only mode)
  -n              no background transfer: pages go only when the destination asks for them; the
                  migration ends once every page has been asked for (benchmark/debugging)
  -m              move background: the background scan restarts right after the last requested page
  URI             tcp:HOST:PORT | unix:PATH (two connections: main + urgent) | exec:CMD (one pipe, e.g.
                  exec:ssh dest postcopy-relay ...)
  forward         extra pages sent after each requested page (default 0)
  backward        extra pages sent before each requested page (default 0)
  --agent PATH    the process's agent socket
  --pid PID       the process's agent at the conventional path (${agentSocketPath(0).replace(/0\.sock$/, '<PID>.sock')})
  --json          print the final stats as JSON
  -h, --help      this help
`;

export interface CliArgs {
  agent: string;
  request: Omit<AgentMigrateRequest, 'type'>;
  json: boolean;
}

export class UsageError extends Error {
  override name = 'UsageError';
  readonly code = 'USAGE';
}

/** Parse argv (without node and script). Throws UsageError with a message that names the problem. */
export function parseArgs(argv: readonly string[]): CliArgs | 'help' {
  let p = false, n = false, m = false, json = false;
  let agent: string | undefined;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') return 'help';
    if (a === '--json') { json = true; continue; }
    if (a === '--agent' || a === '--pid') {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      if (agent !== undefined) throw new UsageError('give only one of --agent and --pid');
      if (a === '--pid') {
        if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`--pid must be a positive integer, got "${v}"`);
        agent = agentSocketPath(Number(v));
      } else agent = v;
      continue;
    }
    if (/^-[a-zA-Z]+$/.test(a) && positional.length === 0) {
      for (const f of a.slice(1)) {
        if (f === 'p') p = true;
        else if (f === 'n') n = true;
        else if (f === 'm') m = true;
        else throw new UsageError(`unknown option -${f} (the seed's -d -b -i are not supported; use -p [-n] [-m])`);
      }
      continue;
    }
    if (a.startsWith('--')) throw new UsageError(`unknown option ${a}`);
    positional.push(a);
  }
  if (agent === undefined) throw new UsageError('say which process to migrate: --agent PATH or --pid PID');
  if (positional.length === 0) throw new UsageError('missing URI');
  if (positional.length > 3) throw new UsageError(`too many arguments: ${positional.slice(3).join(' ')}`);
  if (!p) throw new UsageError('only post-copy migration is implemented: add -p');
  if (n && m) throw new UsageError('-m moves the background scan, -n disables it: use one of them');
  const [uri, fwd, bwd] = positional;
  parseMigrationUri(uri); // throws MigrationError BAD_URI with the reason
  const count = (s: string | undefined, what: string): number => {
    if (s === undefined) return 0;
    if (!/^\d+$/.test(s)) throw new UsageError(`${what} must be an integer ≥ 0, got "${s}"`);
    return Number(s);
  };
  return {
    agent,
    json,
    request: { uri, postcopy: true, background: !n, restartAfterRequest: m, forward: count(fwd, 'forward'), backward: count(bwd, 'backward') },
  };
}

export function formatStats(s: MigrationStats): string {
  const mib = (b: number): string => (b / 1048576).toFixed(1);
  return [
    `migrated ${s.pagesTotal} pages (${mib(s.pagesTotal * s.pageSize)} MiB) to ${s.uri}`,
    `  background ${s.pagesBackground}, on demand ${s.pagesUrgent} (+${s.pagesPrefault} prefault, ${s.pagesResent} re-sent), zero ${s.pagesZero}, requests ${s.requests}`,
    `  bytes: main ${mib(s.bytesMain)} MiB, urgent ${mib(s.bytesUrgent)} MiB; ${s.throughputMBps.toFixed(0)} MB/s`,
    `  stop → state+RUN sent ${s.handoverMs.toFixed(2)} ms; connect ${s.connectMs.toFixed(1)} ms; stream ${s.streamMs.toFixed(0)} ms; until SHUT ${s.completionMs.toFixed(0)} ms; total ${s.totalMs.toFixed(0)} ms`,
  ].join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  let args: CliArgs | 'help';
  try {
    args = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`postcopy-migrate: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args === 'help') { process.stdout.write(USAGE); return 0; }
  const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ format: 'migrating [{bar}] {percentage}% | {value}/{total} pages | on demand {urgent}', stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  const onReply = (r: AgentReply): void => {
    if (!bar) return;
    if (r.type === 'started') bar.start(r.pagesTotal, 0, { urgent: 0 });
    if (r.type === 'progress') {
      if (!bar.isActive) bar.start(r.progress.pagesTotal, 0, { urgent: 0 });
      bar.update(r.progress.pagesSent, { urgent: r.progress.pagesUrgent });
    }
  };
  try {
    const stats = await requestMigration(args.agent, args.request, onReply);
    bar?.stop();
    process.stdout.write(args.json ? `${JSON.stringify(stats, null, 2)}\n` : `${formatStats(stats)}\n`);
    return 0;
  } catch (e) {
    bar?.stop();
    const err = e as Error & { code?: string };
    process.stderr.write(`postcopy-migrate: migration failed${err.code ? ` (${err.code})` : ''}: ${err.message}\n`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try { return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url); } catch { return false; }
}
if (invokedDirectly()) {
  void main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
