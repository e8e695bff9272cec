// postcopy-daemon's main loop: listen for the source (--listen) and for destination processes
// (--control), run one migration per (control client, source connection) pair, report stats, repeat
// (or stop after one with --once).
import fs from 'node:fs';
import createDebug from 'debug';
import cliProgress from 'cli-progress';
import { ControlServer, type ControlClient } from './control.js';
import { MigrationListener, parseListenSpec, type MigrationChannels } from './listener.js';
import { runSession, type SessionResult } from './session.js';
import { formatSummary, F, type MigrationStats } from './stats.js';
import { spawnWorkerPair, retireWorker, type WorkerPair } from './worker-common.js';

const log = createDebug('postcopy:daemon');

export interface DaemonOptions {
  listen: string;
  control: string;
  flags?: number;
  statsFile?: string;
  once?: boolean;
  stallTimeoutMs?: number;
  urgentWaitMs?: number;
  /** Progress bar: default when stderr is a TTY. */
  progress?: boolean;
  /** Lines for stdout (default console.log) and stderr (default console.error). */
  out?: (line: string) => void;
  err?: (line: string) => void;
  signal?: AbortSignal;
  /**
   * Install process-wide uncaughtException/unhandledRejection handlers that stop the attached process
   * and exit(70) (what the CLI wants; off by default so an embedding program keeps its own crash handling).
   */
  exitOnCrash?: boolean;
}

export interface DaemonHandle {
  /** Resolves with the exit code (0: every migration succeeded). */
  done: Promise<number>;
  address: string;
  stop(): void;
}

function writeStats(file: string, s: MigrationStats): void {
  try {
    fs.writeFileSync(file, JSON.stringify(s, null, 2) + '\n');
  } catch (e) {
    console.error(`postcopy-daemon: cannot write --stats ${file}: ${(e as Error).message}`);
  }
}

/** Start the daemon; resolves once both sockets listen (so `address` is known). */
export async function startDaemon(opts: DaemonOptions): Promise<DaemonHandle> {
  const out = opts.out ?? ((l: string) => console.log(l));
  const err = opts.err ?? ((l: string) => console.error(l));
  const spec = parseListenSpec(opts.listen);
  const listener = await MigrationListener.open(spec);
  let control: ControlServer;
  try {
    control = await ControlServer.listen(opts.control);
  } catch (e) {
    listener.close();
    throw e;
  }
  const abort = new AbortController();
  if (opts.signal?.aborted) abort.abort();
  opts.signal?.addEventListener('abort', () => abort.abort(), { once: true });
  out(`listening ${listener.address}`);
  out(`control ${opts.control}`);
  const showProgress = opts.progress ?? Boolean(process.stderr.isTTY);

  // If the daemon itself crashes mid-migration, the attached process must not wait forever on a fault
  // (nor run on zero-filled pages): stop it before dying.
  let current: ControlClient | null = null;
  const onCrash = (e: unknown): void => {
    err(`postcopy-daemon: internal error: ${(e as Error)?.stack ?? String(e)}`);
    if (current) { void current.sendError(`postcopy-daemon crashed: ${(e as Error)?.message ?? String(e)}`); current.kill(); }
    process.exit(70);
  };
  if (opts.exitOnCrash) {
    process.once('uncaughtException', onCrash);
    process.once('unhandledRejection', onCrash);
  }

  const loop = async (): Promise<number> => {
    let failures = 0;
    let workers: WorkerPair | null = spawnWorkerPair();
    try {
      control.onReject = (e: Error): void => err(`postcopy-daemon: control client rejected: ${e.message}`);
      while (!abort.signal.aborted) {
        let client: ControlClient;
        let ch: MigrationChannels | null;
        if (spec.kind === 'exec') {
          client = await control.accept({ signal: abort.signal });
          ch = await listener.accept({ signal: abort.signal });
        } else {
          const [c, m] = await Promise.all([
            control.accept({ signal: abort.signal }),
            listener.accept({ signal: abort.signal, urgentWaitMs: opts.urgentWaitMs }),
          ]);
          client = c; ch = m;
        }
        if (!ch) { await client.close(); break; }
        out(`migration: process ${client.pid || '?'} (${client.hello.mode}, ${client.hello.regions.length} region(s)), source ${ch.transport}`);
        let bar: cliProgress.SingleBar | null = null;
        const pair = workers ?? spawnWorkerPair();
        workers = null;
        current = client;
        const result: SessionResult = await runSession(client, ch, {
          workers: pair, flags: opts.flags, signal: abort.signal, stallTimeoutMs: opts.stallTimeoutMs, urgentWaitMs: opts.urgentWaitMs,
          onProgress: showProgress ? (present, total, s) => {
            if (!bar) {
              bar = new cliProgress.SingleBar({
                format: 'pages {bar} {percentage}% {value}/{total} | on demand {od} | {mb} MiB',
                stream: process.stderr, hideCursor: true,
              }, cliProgress.Presets.shades_classic);
              bar.start(total, 0, { od: 0, mb: 0 });
            }
            bar.update(present, { od: s.v[F.pagesOnDemand] + s.v[F.pagesOnDemandInline], mb: ((s.v[F.bytesMain] + s.v[F.bytesUrgent]) / 1048576).toFixed(0) });
          } : undefined,
        });
        current = null;
        if (bar) {
          const st = result.stats;
          (bar as cliProgress.SingleBar).update(st.pagesPresent, { od: st.pagesOnDemand, mb: (st.bytesOnWire / 1048576).toFixed(0) });
          (bar as cliProgress.SingleBar).stop();
        }
        out(formatSummary(result.stats));
        if (!result.ok) {
          failures++;
          err(`postcopy-daemon: migration failed: ${result.error?.message}`);
        }
        if (opts.statsFile) writeStats(opts.statsFile, result.stats);
        if (opts.once) break;
        workers = spawnWorkerPair(); // warm the next pair (after the migration: no CPU taken from it)
      }
    } catch (e) {
      if (!abort.signal.aborted) { err(`postcopy-daemon: ${(e as Error).message}`); failures++; }
    } finally {
      listener.close();
      control.close();
      if (workers) await Promise.all([retireWorker(workers.fault), retireWorker(workers.stream)]);
    }
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    log('daemon loop ended (%d failures)', failures);
    return failures ? 1 : 0;
  };
  return { done: loop(), address: listener.address, stop: () => abort.abort() };
}
