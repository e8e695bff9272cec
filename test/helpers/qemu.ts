// Test harness around a real qemu-system-x86_64 (installed by .ci/run; never installed from here):
// start a paused destination with `-incoming defer`, feed it a stream file, wait for the incoming
// migration to finish, and dump guest-physical memory with QMP `pmemsave`.
// QEMU is always killed, whatever happens, and every wait has a hard deadline.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** Absolute path of qemu-system-x86_64 ($QEMU if set, like tools/qemu/make-fixtures.sh, else PATH), or undefined. */
export function findQemu(): string | undefined {
  const wanted = process.env.QEMU || QEMU_BINARY;
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', wanted], { encoding: 'utf8' });
  const p = r.status === 0 ? r.stdout.trim() : '';
  return p.length > 0 ? p : undefined;
}

export class QmpError extends Error {
  readonly code = 'QMP_ERROR';
  constructor(message: string, readonly reply?: unknown) {
    super(message);
    this.name = 'QmpError';
  }
}

type QmpReply = { return?: unknown; error?: { class: string; desc: string }; event?: string; QMP?: unknown };

/** Minimal QMP client: one command in flight at a time, events are ignored. */
export class QmpClient {
  private buffered = '';
  private waiting: ((line: QmpReply | Error) => void) | undefined;
  private readonly queue: QmpReply[] = [];
  private closedError: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.onData(text));
    const onGone = (err?: Error) => {
      this.closedError = err ?? new QmpError('QMP socket closed');
      this.waiting?.(this.closedError);
      this.waiting = undefined;
    };
    socket.on('error', onGone);
    socket.on('close', () => onGone());
  }

  /** Connect (retrying while QEMU creates the socket), read the greeting, negotiate capabilities. */
  static async connect(socketPath: string, timeoutMs: number): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(socketPath);
          s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        const greeting = await client.next(Math.max(1, deadline - Date.now()));
        if (greeting.QMP === undefined) throw new QmpError('no QMP greeting', greeting);
        await client.execute('qmp_capabilities', undefined, Math.max(1, deadline - Date.now()));
        return client;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() < deadline) {
          await delay(50);
          continue;
        }
        throw err;
      }
    }
  }

  /** Run one command; resolves with its `return` value, rejects on a QMP error or timeout. */
  async execute(name: string, args?: unknown, timeoutMs = 10_000): Promise<unknown> {
    const msg = args === undefined ? { execute: name } : { execute: name, arguments: args };
    this.socket.write(JSON.stringify(msg) + '\n');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = await this.next(Math.max(1, deadline - Date.now()));
      if (reply.event !== undefined) continue;
      if (reply.error !== undefined) throw new QmpError(`${name}: ${reply.error.class}: ${reply.error.desc}`, reply);
      return reply.return;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(text: string): void {
    this.buffered += text;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line.length === 0) continue;
      const reply = JSON.parse(line) as QmpReply;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(reply);
      } else {
        this.queue.push(reply);
      }
    }
  }

  private next(timeoutMs: number): Promise<QmpReply> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new QmpError(`QMP reply timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r); else resolve(r);
      };
    });
  }
}

export interface IncomingOptions {
  /** Stream file to load with `migrate-incoming exec:cat FILE`. */
  streamFile: string;
  /** Guest RAM in bytes (the fixtures use 64 MiB). */
  memBytes?: number;
  machine?: string;
  /** Migration capabilities to set on the destination before loading, e.g. { xbzrle: true }. */
  capabilities?: Record<string, boolean>;
  /** Hard deadline for the whole run, QEMU is killed when it passes. */
  timeoutMs?: number;
}

export interface IncomingResult {
  /** pmemsave of guest-physical [0, memBytes) after the load. */
  dump: Buffer;
  /** The final query-migrate reply. */
  migrate: Record<string, unknown>;
  /** QEMU's stderr (for diagnostics). */
  stderr: string;
}

/**
 * Start a paused destination QEMU (`-S -incoming defer`), load `streamFile`, wait until the
 * incoming migration is completed (rejects when it fails), pmemsave guest RAM, kill QEMU.
 */
export async function loadStreamInQemu(opts: IncomingOptions): Promise<IncomingResult> {
  const qemu = findQemu();
  if (!qemu) throw new Error(`${process.env.QEMU || QEMU_BINARY} not found`);
  const memBytes = opts.memBytes ?? 64 * 1024 * 1024;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postcopy-qemu-'));
  const qmpPath = path.join(dir, 'qmp.sock');
  const dumpPath = path.join(dir, 'guest.pmem');
  const args = [
    '-nodefaults', '-display', 'none',
    '-machine', `${opts.machine ?? 'pc-i440fx-7.2'},accel=tcg`,
    '-m', `${memBytes / (1024 * 1024)}M`,
    '-S', '-incoming', 'defer',
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
  ];
  let child: ChildProcess | undefined;
  let stderr = '';
  let client: QmpClient | undefined;
  const killTimer = setTimeout(() => child?.kill('SIGKILL'), timeoutMs);
  try {
    child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => { if (stderr.length < 65536) stderr += s; });
    const exited = new Promise<never>((_, reject) => {
      child!.once('exit', (code, sig) => reject(new Error(`QEMU exited early (code ${code}, signal ${sig}): ${stderr.trim()}`)));
      child!.once('error', reject);
    });
    exited.catch(() => undefined); // observed through race() below
    const race = <T>(p: Promise<T>) => Promise.race([p, exited]);

    client = await race(QmpClient.connect(qmpPath, left()));
    if (opts.capabilities && Object.keys(opts.capabilities).length > 0) {
      const capabilities = Object.entries(opts.capabilities).map(([capability, state]) => ({ capability, state }));
      await race(client.execute('migrate-set-capabilities', { capabilities }, left()));
    }
    await race(client.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(path.resolve(opts.streamFile))}` }, left()));
    let migrate: Record<string, unknown> = {};
    for (;;) {
      migrate = (await race(client.execute('query-migrate', undefined, left()))) as Record<string, unknown>;
      const status = migrate.status as string | undefined;
      if (status === 'completed') break;
      if (status === 'failed' || status === 'cancelled') {
        throw new Error(`incoming migration ${status}: ${JSON.stringify(migrate)}; stderr: ${stderr.trim()}`);
      }
      if (Date.now() >= deadline) throw new Error(`incoming migration still '${status}' after ${timeoutMs} ms`);
      await delay(20);
    }
    await race(client.execute('pmemsave', { val: 0, size: memBytes, filename: dumpPath }, left()));
    const dump = readFileSync(dumpPath);
    if (dump.length !== memBytes) throw new Error(`pmemsave wrote ${dump.length} bytes, expected ${memBytes}`);
    return { dump, migrate, stderr };
  } finally {
    clearTimeout(killTimer);
    client?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await Promise.race([gone, delay(5000)]);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
