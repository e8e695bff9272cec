// Where the source reaches the daemon (--listen): tcp:HOST:PORT (port 0 = pick one), unix:PATH, or
// exec:CMD (QEMU's: the stream comes from CMD's stdout, the return path goes to its stdin). Sockets are
// accepted paused and their fds taken over (dup, then the net.Socket destroyed) so libuv never reads
// migration bytes: the worker threads own them.
import net from 'node:net';
import fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import createDebug from 'debug';
import { FdChannel } from '../uffd/fdpass.js';
import { closeFd } from '../uffd/events.js';
import { DaemonError } from './errors.js';
import { makePipe, shutdownFd, tuneSocket } from './sockets.js';

const log = createDebug('postcopy:daemon:listen');

export type ListenSpec =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'exec'; command: string };

/** Parse --listen. Unlike the source's URI parser, port 0 is allowed (the kernel picks a free port). */
export function parseListenSpec(s: string): ListenSpec {
  const bad = (why: string): DaemonError => new DaemonError('BAD_OPTION', `--listen ${JSON.stringify(s)}: ${why} (expected tcp:HOST:PORT, unix:PATH or exec:CMD)`);
  const colon = s.indexOf(':');
  const scheme = colon < 0 ? s : s.slice(0, colon);
  const rest = colon < 0 ? '' : s.slice(colon + 1);
  switch (scheme) {
    case 'tcp': {
      const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(rest);
      if (!m) throw bad('expected tcp:HOST:PORT');
      const port = Number(m[3]);
      if (port > 65535) throw bad(`port ${port} is above 65535`);
      return { kind: 'tcp', host: m[1] ?? (m[2] || '0.0.0.0'), port };
    }
    case 'unix':
      if (!rest) throw bad('missing path');
      return { kind: 'unix', path: rest };
    case 'exec':
      if (!rest.trim()) throw bad('missing command');
      return { kind: 'exec', command: rest };
    default:
      throw bad(`unknown transport "${scheme}"`);
  }
}

/** The fds of one migration. */
export interface MigrationChannels {
  transport: string;
  mainFd: number;
  mainIsSocket: boolean;
  returnFd: number;
  returnIsSocket: boolean;
  /** Resolves to the urgent connection's fd, or -1 when the source opened none in time (or exec:). */
  urgent: Promise<number>;
  /** performance.now() when the main channel was established. */
  acceptedAt: number;
  /** Unblock readers (shutdown sockets / end the command). */
  interrupt(): void;
  close(): void;
}

export class MigrationListener {
  private readonly pending: net.Socket[] = [];
  private waiters: ((s: net.Socket) => void)[] = [];
  private constructor(readonly spec: ListenSpec, readonly address: string, private readonly server: net.Server | null) {
    server?.on('connection', (s) => {
      const w = this.waiters.shift();
      if (w) w(s); else this.pending.push(s);
    });
  }

  static async open(spec: ListenSpec): Promise<MigrationListener> {
    if (spec.kind === 'exec') return new MigrationListener(spec, `exec:${spec.command}`, null);
    if (spec.kind === 'unix' && fs.existsSync(spec.path)) {
      if (!fs.lstatSync(spec.path).isSocket()) throw new DaemonError('BAD_OPTION', `--listen unix:${spec.path} exists and is not a socket`);
      fs.unlinkSync(spec.path);
    }
    const server = net.createServer({ pauseOnConnect: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new DaemonError('BAD_OPTION', `cannot listen on ${spec.kind === 'tcp' ? `tcp:${spec.host}:${spec.port}` : `unix:${spec.path}`}: ${e.message}`)));
      if (spec.kind === 'tcp') server.listen(spec.port, spec.host, () => resolve());
      else server.listen(spec.path, () => resolve());
    });
    let address: string;
    if (spec.kind === 'tcp') {
      const a = server.address() as net.AddressInfo;
      address = `tcp:${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    } else {
      address = `unix:${spec.path}`;
    }
    return new MigrationListener(spec, address, server);
  }

  private next(timeoutMs: number, signal?: AbortSignal): Promise<net.Socket | null> {
    const s = this.pending.shift();
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (x: net.Socket | null): void => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(x);
      };
      const waiter = (sock: net.Socket): void => done(sock);
      const onAbort = (): void => done(null);
      if (timeoutMs >= 0) timer = setTimeout(() => done(null), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Wait for the next migration (null when aborted). */
  async accept(opts: { signal?: AbortSignal; urgentWaitMs?: number } = {}): Promise<MigrationChannels | null> {
    if (this.spec.kind === 'exec') return this.spawnExec(this.spec.command);
    const first = await this.next(-1, opts.signal);
    if (!first) return null;
    const acceptedAt = performance.now();
    const peer = `${first.remoteAddress ?? 'local'}${first.remotePort ? `:${first.remotePort}` : ''}`;
    const mainFd = FdChannel.adopt(first).fd;
    if (this.spec.kind === 'tcp') tuneSocket(mainFd, { noDelay: true });
    log('main connection from %s (fd %d)', peer, mainFd);
    let urgentFd = -1;
    let closed = false;
    const urgent = this.next(opts.urgentWaitMs ?? 2000, opts.signal).then((s) => {
      if (!s) return -1;
      urgentFd = FdChannel.adopt(s).fd;
      if (this.spec.kind === 'tcp') tuneSocket(urgentFd, { noDelay: true });
      log('urgent connection (fd %d)', urgentFd);
      if (closed) { closeFd(urgentFd); urgentFd = -1; }
      return urgentFd;
    });
    return {
      transport: `${this.spec.kind} from ${peer}`,
      mainFd, mainIsSocket: true, returnFd: mainFd, returnIsSocket: true, urgent, acceptedAt,
      interrupt: () => { shutdownFd(mainFd); if (urgentFd >= 0) shutdownFd(urgentFd); },
      close: () => { if (closed) return; closed = true; closeFd(mainFd); if (urgentFd >= 0) closeFd(urgentFd); },
    };
  }

  private spawnExec(command: string): MigrationChannels {
    const [streamR, streamW] = makePipe(); // command's stdout → us
    const [retR, retW] = makePipe(); // us → command's stdin
    let child: ChildProcess;
    try {
      child = spawn(command, { shell: true, stdio: [retR, streamW, 'inherit'] });
    } finally {
      closeFd(streamW);
      closeFd(retR);
    }
    child.on('error', (e) => log('exec: %s', e.message));
    child.on('exit', (code, sig) => log('exec command exited (%s)', sig ?? code));
    let closed = false;
    log('exec: started %s (pid %d)', command, child.pid);
    return {
      transport: `exec:${command}`,
      mainFd: streamR, mainIsSocket: false, returnFd: retW, returnIsSocket: false,
      urgent: Promise.resolve(-1), acceptedAt: performance.now(),
      interrupt: () => { if (child.exitCode === null) child.kill('SIGTERM'); },
      close: () => {
        if (closed) return;
        closed = true;
        closeFd(streamR); closeFd(retW);
        if (child.exitCode === null && child.signalCode === null) setTimeout(() => child.kill('SIGKILL'), 2000).unref();
      },
    };
  }

  close(): void {
    this.server?.close();
    for (const s of this.pending) s.destroy();
    if (this.spec.kind === 'unix') { try { fs.unlinkSync(this.spec.path); } catch { /* gone */ } }
  }
}
