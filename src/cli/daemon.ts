#!/usr/bin/env node
// postcopy-daemon: the destination side of a post-copy migration (issue 4). See --help.
import { parseArgs } from 'node:util';
import { startDaemon } from '../daemon/daemon.js';

const HELP = `Usage: postcopy-daemon --listen URI --control PATH [--flags N] [--stats FILE] [--once]

Destination daemon of a post-copy migration. A destination process connects to the control
socket and hands over its userfaultfd (+ memfd) and region table; the source connects to the
listen address. The process runs as soon as the source's state arrives; its memory follows on
demand (faults) and in the background. When every page is present the daemon unregisters the
memory, reports to both sides, prints stats, and waits for the next migration (or exits: --once).

Options:
  --listen URI       where the source connects:
                       tcp:HOST:PORT   (port 0 picks a free port; the chosen one is printed as
                                        "listening tcp:HOST:PORT")
                       unix:PATH
                       exec:CMD        run CMD: the stream is read from its stdout, the return
                                       path is written to its stdin (e.g. exec:"ssh src migrate ...")
  --control PATH     Unix socket for destination processes (docs/migration-protocol.md handshake; Firecracker's
                     region-array handshake is accepted too)
  --flags N          seed flags. Bit 0 (1): touch arrived pages. Moot with userfaultfd: placing a
                     page (UFFDIO_COPY / UFFDIO_CONTINUE) already maps it in the process's page
                     tables, so accepted and ignored.
  --stats FILE       write the last migration's stats as JSON to FILE
  --once             exit after one migration (exit code 0 on success, 1 on failure)
  --timeout SEC      fail when a page request stays unanswered, or no state arrives, for SEC
                     seconds (default 30)
  --no-progress      no progress bar (default: shown when stderr is a TTY)
  -h, --help         this text

Failure policy: a bad stream, a source that disconnects or stalls before every page arrived,
or a destination process that dies ends the migration with a clear error; the process is sent
the error and killed (SIGKILL) rather than left hanging on a fault or run with zero-filled pages.
Debug logs: DEBUG=postcopy:* postcopy-daemon ...`;

function die(msg: string): never {
  process.stderr.write(`postcopy-daemon: ${msg} (see --help)\n`);
  process.exit(2);
}

function intOption(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(v)) die(`${name} expects a non-negative integer, got "${v}"`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) die(`${name} must be at least ${min}, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        listen: { type: 'string' },
        control: { type: 'string' },
        flags: { type: 'string' },
        stats: { type: 'string' },
        once: { type: 'boolean' },
        timeout: { type: 'string' },
        'no-progress': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    die((e as Error).message.split('\n')[0]);
  }
  if (values.help) { process.stdout.write(HELP + '\n'); return; }
  if (!values.listen) die('--listen is required (tcp:HOST:PORT, unix:PATH or exec:CMD)');
  if (!values.control) die('--control PATH is required (the Unix socket destination processes connect to)');
  const flags = intOption(values.flags as string | undefined, '--flags', 0);
  const timeout = intOption(values.timeout as string | undefined, '--timeout', 1);
  // Signals first: a SIGTERM right after "listening" is printed must already stop us cleanly.
  const abort = new AbortController();
  // A migration in progress fails cleanly (process told + stopped, source told); give it a few seconds.
  const stop = (): void => { abort.abort(); setTimeout(() => process.exit(130), 8000).unref(); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let handle;
  try {
    handle = await startDaemon({
      signal: abort.signal,
      listen: values.listen as string, control: values.control as string, flags, statsFile: values.stats as string | undefined,
      once: Boolean(values.once), stallTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
      progress: values['no-progress'] ? false : undefined, exitOnCrash: true,
    });
  } catch (e) {
    die((e as Error).message);
  }
  process.exitCode = await handle.done;
  // Worker threads and sockets are closed; nothing else should keep us alive, but do not hang if it does.
  setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
}

void main();
