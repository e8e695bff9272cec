// The local agent a migratable process runs so that `postcopy-migrate` (src/cli/migrate.ts) can migrate it:
// a unix socket (mode 0600) taking one JSON line {"type":"migrate", uri, options}, answering with progress
// lines and a final {"type":"done", stats} or {"type":"error", code, message}. The process keeps its
// memory and state private; the agent only stops the workload, asks for its state and calls migrate().
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import createDebug from 'debug';
import { migrate, type MigrateOptions, type MigrationStats, type MigrationProgress } from './migrate.js';
import { MigrationError } from './errors.js';
import type { SourceRegion } from './page-map.js';

const log = createDebug('postcopy:source:agent');
const MAX_REQUEST_BYTES = 64 * 1024;

/** Where a process with pid `pid` listens by convention (the CLI's --pid). */
export function agentSocketPath(pid: number = process.pid): string {
  return path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `postcopy-agent-${pid}.sock`);
}

/** The migration options the CLI may set (the seed's -p -n -m forward backward). */
export interface AgentMigrateRequest {
  type: 'migrate';
  uri: string;
  postcopy?: boolean;
  background?: boolean;
  restartAfterRequest?: boolean;
  forward?: number;
  backward?: number;
}

export type AgentReply =
  | { type: 'started'; pagesTotal: number }
  | { type: 'progress'; progress: MigrationProgress }
  | { type: 'done'; stats: MigrationStats }
  | { type: 'error'; code: string; message: string };

export interface AgentOptions {
  regions: readonly SourceRegion[];
  /** Stop the workload (called once the connection is up, right before the state is taken). */
  stop: () => void | Promise<void>;
  /** The execution state to send, taken after stop(). */
  getState: () => Uint8Array | Promise<Uint8Array>;
  /** Called when a migration ends (the process usually exits on success; on failure the workload may resume only if the destination never ran). */
  onDone?: (result: { ok: true; stats: MigrationStats } | { ok: false; error: Error; stopped: boolean }) => void;
  /** Extra options for migrate() (batch size, timeouts…). */
  migrateOptions?: Partial<Omit<MigrateOptions, 'regions' | 'state'>>;
}

export interface MigrationAgent {
  readonly path: string;
  close(): Promise<void>;
}

export async function serveMigrationAgent(socketPath: string = agentSocketPath(), opts: AgentOptions): Promise<MigrationAgent> {
  try { if (fs.statSync(socketPath).isSocket()) fs.unlinkSync(socketPath); } catch { /* absent */ }
  let busy = false;
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    const reply = (r: AgentReply): void => { if (!sock.destroyed) sock.write(`${JSON.stringify(r)}\n`); };
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST_BYTES) { reply({ type: 'error', code: 'AGENT', message: 'request too long' }); sock.end(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      sock.removeAllListeners('data');
      let req: AgentMigrateRequest;
      try {
        req = JSON.parse(line) as AgentMigrateRequest;
        if (req?.type !== 'migrate' || typeof req.uri !== 'string') throw new Error('expected {"type":"migrate","uri":...}');
      } catch (e) {
        reply({ type: 'error', code: 'AGENT', message: `bad request: ${(e as Error).message}` });
        sock.end();
        return;
      }
      if (busy) { reply({ type: 'error', code: 'AGENT', message: 'a migration is already running' }); sock.end(); return; }
      busy = true;
      void run(req, reply).finally(() => { busy = false; sock.end(); });
    });
  });

  async function run(req: AgentMigrateRequest, reply: (r: AgentReply) => void): Promise<void> {
    let stopped = false;
    log('migrate to %s', req.uri);
    try {
      const stats = await migrate(req.uri, {
        ...opts.migrateOptions,
        regions: opts.regions,
        postcopy: req.postcopy,
        background: req.background,
        restartAfterRequest: req.restartAfterRequest,
        forward: req.forward,
        backward: req.backward,
        state: async () => {
          await opts.stop();
          stopped = true;
          return opts.getState();
        },
        onProgress: (progress) => reply({ type: 'progress', progress }),
      });
      reply({ type: 'done', stats });
      opts.onDone?.({ ok: true, stats });
    } catch (e) {
      const err = e as Error & { code?: string };
      reply({ type: 'error', code: err.code ?? 'ERROR', message: err.message });
      opts.onDone?.({ ok: false, error: err, stopped });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MigrationError('AGENT', `cannot listen on ${socketPath}: ${e.message}`, { path: socketPath }, { cause: e })));
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o600);
  log('agent listening on %s', socketPath);
  return {
    path: socketPath,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      try { fs.unlinkSync(socketPath); } catch { /* gone */ }
    }),
  };
}

/**
 * Client side (what the CLI does): ask the agent at `socketPath` to migrate; `onReply` sees every line.
 * Resolves with the stats, rejects with a MigrationError carrying the agent's code.
 */
export function requestMigration(socketPath: string, req: Omit<AgentMigrateRequest, 'type'>, onReply?: (r: AgentReply) => void): Promise<MigrationStats> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path: socketPath });
    let buf = '';
    let settled = false;
    const settle = (fn: () => void): void => { if (!settled) { settled = true; fn(); sock.destroy(); } };
    sock.setEncoding('utf8');
    sock.on('error', (e: NodeJS.ErrnoException) => settle(() => reject(new MigrationError('AGENT', `cannot reach the migration agent at ${socketPath}: ${e.code ?? e.message}${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? ' (is the process running with serveMigrationAgent()?)' : ''}`, { path: socketPath }, { cause: e }))));
    sock.on('connect', () => sock.write(`${JSON.stringify({ type: 'migrate', ...req })}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let r: AgentReply;
        try { r = JSON.parse(line) as AgentReply; } catch { settle(() => reject(new MigrationError('AGENT', `agent sent garbage: ${line.slice(0, 80)}`))); return; }
        onReply?.(r);
        if (r.type === 'done') settle(() => resolve(r.stats));
        else if (r.type === 'error') settle(() => reject(new MigrationError((r.code as never) ?? 'AGENT', r.message, { agentCode: r.code })));
      }
    });
    sock.on('close', () => settle(() => reject(new MigrationError('AGENT', 'the migration agent closed the connection without a result'))));
  });
}
