// Connections to the destination: tcp/unix open TWO sockets (main first, then urgent: QEMU 7.2's
// postcopy-preempt layout), exec:CMD runs the command and uses its stdin/stdout as one bidirectional pipe.
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import createDebug from 'debug';
import { MigrationError } from './errors.js';
import type { MigrationUri } from './uri.js';

const log = createDebug('postcopy:source:transport');

export interface Transport {
  readonly kind: MigrationUri['kind'];
  /** Forward stream (savevm framing). */
  readonly mainOut: Writable;
  /** Return path of the main stream (exec: the command's stdout). */
  readonly mainIn: Readable;
  /** Urgent channel (tcp/unix only): requests in, bare ram records out. */
  readonly urgent?: net.Socket;
  /** Tear everything down (idempotent). */
  destroy(): void;
  /** Describe the transport for errors (e.g. stderr tail of an exec command). */
  describe(): string;
}

export interface ConnectOptions {
  signal?: AbortSignal;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
}

export async function openTransport(uri: MigrationUri, opts: ConnectOptions = {}): Promise<Transport> {
  if (uri.kind === 'exec') return openExec(uri.command);
  const main = await connectSocket(uri, 'main', opts);
  let urgent: net.Socket;
  try {
    urgent = await connectSocket(uri, 'urgent', opts);
  } catch (e) {
    main.destroy();
    throw e;
  }
  const where = uri.kind === 'tcp' ? `tcp:${uri.host}:${uri.port}` : `unix:${uri.path}`;
  return {
    kind: uri.kind,
    mainOut: main,
    mainIn: main,
    urgent,
    destroy() { main.destroy(); urgent.destroy(); },
    describe: () => where,
  };
}

function connectSocket(uri: MigrationUri & { kind: 'tcp' | 'unix' }, role: string, opts: ConnectOptions): Promise<net.Socket> {
  const where = uri.kind === 'tcp' ? `tcp:${uri.host}:${uri.port}` : `unix:${uri.path}`;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) { reject(new MigrationError('ABORTED', `connect to ${where} aborted`)); return; }
    const sock = uri.kind === 'tcp' ? net.connect({ host: uri.host, port: uri.port }) : net.connect({ path: uri.path });
    const timer = setTimeout(() => fail(new MigrationError('CONNECT_FAILED', `connecting the ${role} channel to ${where} timed out after ${opts.connectTimeoutMs ?? 10000} ms`, { uri: where, role })), opts.connectTimeoutMs ?? 10000);
    const onAbort = (): void => fail(new MigrationError('ABORTED', `connect to ${where} aborted`));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      sock.removeListener('error', onError);
    };
    function fail(err: Error): void { cleanup(); sock.destroy(); reject(err); }
    function onError(err: NodeJS.ErrnoException): void {
      fail(new MigrationError('CONNECT_FAILED', `cannot connect the ${role} channel to ${where}: ${err.code ?? ''} ${err.message}`.trim(), { uri: where, role, errno: err.code }, { cause: err }));
    }
    sock.once('error', onError);
    sock.once('connect', () => {
      cleanup();
      sock.setNoDelay(true);
      log('%s channel connected to %s', role, where);
      resolve(sock);
    });
  });
}

function openExec(command: string): Transport {
  const child: ChildProcess = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderrTail = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString('utf8')).slice(-2000);
    log('exec stderr: %s', d.toString('utf8').trimEnd());
  });
  // A pipe error (EPIPE when the command exits early) surfaces through the migration's own error path.
  child.stdin!.on('error', (e) => log('exec stdin error: %s', e.message));
  log('exec: spawned pid %d: %s', child.pid, command);
  return {
    kind: 'exec',
    mainOut: child.stdin!,
    mainIn: child.stdout!,
    destroy() {
      child.stdin!.destroy();
      child.stdout!.destroy();
      child.stderr!.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
    describe: () => `exec:${command} (pid ${child.pid}${child.exitCode !== null ? `, exited ${child.exitCode}` : ''}${stderrTail ? `; stderr: ${stderrTail.trim().slice(-300)}` : ''})`,
  };
}
