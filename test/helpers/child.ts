// Run test code that may block on a userfaultfd fault in a separate process with a hard timeout.
//
// Why a process and not a worker: a thread blocked in a fault (or in a synchronous koffi call) cannot be
// terminated, and it makes process exit hang (baseline.md §2.6). A child process can always be SIGKILLed.
//
// Three ways to use it:
//   runChild({ script, args })              spawn `node <script> <JSON args>` (a self-contained script)
//   runInChild(moduleUrl, 'exportName', a)  fork the runner below, which imports the module and calls the
//                                           named export with `a`; its return value comes back as `result`.
//   spawnWithTimeout(cmd, args)             any command (a CLI, the C toy), output collected.
// In either child, `sendToParent(x)` posts a message the parent collects in `messages`.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface ChildOptions {
  /** Hard timeout; the child is SIGKILLed when it expires. Default 20 s. */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Extra node flags (e.g. ['--expose-gc']). */
  execArgv?: string[];
  /** Run the child as this uid/gid (e.g. 65534 to test unprivileged behaviour; needs root). */
  uid?: number;
  gid?: number;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Messages the child sent with process.send / sendToParent, in order. */
  messages: unknown[];
  /** runInChild only: the return value of the called export (undefined if it threw or never returned). */
  result?: unknown;
  /** runInChild only: the error the export threw, as { name, message, stack, code }. */
  error?: { name: string; message: string; stack?: string; code?: string };
  timedOut: boolean;
  durationMs: number;
  /** true when the child exited 0 without timing out (and, for runInChild, without throwing). */
  ok: boolean;
  /** One line saying what happened, for assertion messages. */
  summary: string;
}

const runnerPath = fileURLToPath(new URL('./child-runner.js', import.meta.url));

/** Post a message to the parent harness (no-op when not run under it). */
export function sendToParent(message: unknown): void {
  if (process.send) process.send({ kind: 'user', message });
}

function collect(child: ChildProcess, timeoutMs: number, started: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const messages: unknown[] = [];
    let result: unknown;
    let error: ChildResult['error'];
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('message', (m: any) => {
      if (m && m.kind === 'user') messages.push(m.message);
      else if (m && m.kind === 'result') result = m.result;
      else if (m && m.kind === 'error') error = m.error;
      else messages.push(m);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const durationMs = Date.now() - started;
      const ok = !timedOut && code === 0 && !error;
      let summary: string;
      if (timedOut) summary = `child timed out after ${timeoutMs} ms and was SIGKILLed (a fault was probably never resolved)`;
      else if (error) summary = `child threw ${error.name}: ${error.message}`;
      else if (signal) summary = `child killed by ${signal}`;
      else summary = `child exited with code ${code}`;
      if (!ok && stderr.trim()) summary += `; stderr: ${stderr.trim().slice(-2000)}`;
      resolve({ code, signal, stdout, stderr, messages, result, error, timedOut, durationMs, ok, summary });
    });
  });
}

/** Spawn `node <script> <JSON.stringify(args)>` with an IPC channel; the script reads JSON.parse(process.argv[2]). */
export function runChild(opts: ChildOptions & { script: string; args?: unknown }): Promise<ChildResult> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const started = Date.now();
  const child = spawn(process.execPath, [...(opts.execArgv ?? []), opts.script, JSON.stringify(opts.args ?? null)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, ...opts.env },
    uid: opts.uid,
    gid: opts.gid,
  });
  return collect(child, timeoutMs, started);
}

/**
 * Fork a child that imports `moduleUrl` (a file URL or path of a compiled .js module, typically
 * `import.meta.url` of the test itself) and awaits `module[exportName](args)`. The resolved value must be
 * structured-cloneable; it is returned as `result`.
 */
export function runInChild(moduleUrl: string, exportName: string, args?: unknown, opts: ChildOptions = {}): Promise<ChildResult> {
  return startInChild(moduleUrl, exportName, args, opts).done;
}

/** A child started by startInChild: talk to it while it runs. */
export interface RunningChild {
  child: ChildProcess;
  /** Resolves when the child has exited (never rejects), as runInChild. */
  done: Promise<ChildResult>;
  /** The next sendToParent() message (rejects when the child exits first or after timeoutMs, default 10 s). */
  nextMessage(timeoutMs?: number): Promise<unknown>;
  kill(): void;
}

/**
 * runInChild for a child that must stay alive while the test acts on it (e.g. it hands over an fd, then the
 * test kills it). The hard timeout still applies.
 */
export function startInChild(moduleUrl: string, exportName: string, args?: unknown, opts: ChildOptions = {}): RunningChild {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const started = Date.now();
  const modulePath = moduleUrl.startsWith('file:') ? fileURLToPath(moduleUrl) : path.resolve(moduleUrl);
  const child = fork(runnerPath, [modulePath, exportName, JSON.stringify(args ?? null)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, ...opts.env },
    execArgv: opts.execArgv ?? [],
    uid: opts.uid,
    gid: opts.gid,
  });
  const done = collect(child, timeoutMs, started);
  const queue: unknown[] = [];
  const waiters: ((m: unknown) => void)[] = [];
  child.on('message', (m: any) => {
    if (!m || m.kind !== 'user') return;
    const w = waiters.shift();
    if (w) w(m.message); else queue.push(m.message);
  });
  const nextMessage = (ms = 10_000): Promise<unknown> => {
    if (queue.length) return Promise.resolve(queue.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message from the child within ${ms} ms`)), ms);
      const w = (m: unknown): void => { clearTimeout(timer); resolve(m); };
      waiters.push(w);
      void done.then((r) => {
        const k = waiters.indexOf(w);
        if (k >= 0) { waiters.splice(k, 1); clearTimeout(timer); reject(new Error(`child ended before sending a message: ${r.summary}`)); }
      });
    });
  };
  return { child, done, nextMessage, kill: () => { child.kill('SIGKILL'); } };
}

/**
 * Spawn any command with piped stdout/stderr and a hard timeout (SIGKILL). `done` resolves when it has
 * exited (never rejects); `kill()` ends it early.
 */
export function spawnWithTimeout(cmd: string, args: string[], opts: ChildOptions = {}): { child: ChildProcess; done: Promise<ChildResult>; kill(): void } {
  const started = Date.now();
  const child = spawn(cmd, [...(opts.execArgv ?? []), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
    uid: opts.uid,
    gid: opts.gid,
  });
  return { child, done: collect(child, opts.timeoutMs ?? 20_000, started), kill: () => { child.kill('SIGKILL'); } };
}

/** Run a command to its end (hard timeout, default 60 s); its stdout, or an Error saying what went wrong. */
export async function runCommand(cmd: string, args: string[], opts: ChildOptions = {}): Promise<string> {
  const r = await spawnWithTimeout(cmd, args, { timeoutMs: 60_000, ...opts }).done;
  if (!r.ok) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: ${r.summary}`);
  return r.stdout;
}

/** True when this process is a child started by runInChild (so a test file can skip registering tests). */
export const isHarnessChild = process.env.POSTCOPY_TEST_CHILD === '1';
