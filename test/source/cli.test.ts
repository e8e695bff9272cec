// postcopy-migrate's argument parsing and the agent round trip (CLI → agent socket → migrate() → receiver).
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, UsageError } from '../../src/cli/migrate.js';
import { serveMigrationAgent, requestMigration, agentSocketPath } from '../../src/source/agent.js';
import { MigrationError } from '../../src/source/errors.js';
import { startReceiver } from './helpers/receiver.js';
import { heapRegion, PAGE } from './helpers/regions.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '../../src/cli/migrate.js');
const tmp = (tag: string): string => path.join(os.tmpdir(), `pc-cli-${process.pid}-${tag}.sock`);

test('parseArgs: the seed\'s migrate [-p [-n] [-m]] URI [forward] [backward]', (t) => {
  t.deepEqual(parseArgs(['--agent', '/a', '-p', 'tcp:h:1']), { agent: '/a', json: false, request: { uri: 'tcp:h:1', postcopy: true, background: true, restartAfterRequest: false, forward: 0, backward: 0 } });
  t.deepEqual(parseArgs(['--agent', '/a', '-p', '-n', 'unix:/x', '4', '2']).valueOf(), { agent: '/a', json: false, request: { uri: 'unix:/x', postcopy: true, background: false, restartAfterRequest: false, forward: 4, backward: 2 } });
  const m = parseArgs(['--pid', '42', '-pm', 'exec:cat', '8']);
  t.true(m !== 'help' && m.request.restartAfterRequest && m.request.forward === 8 && m.agent === agentSocketPath(42));
  t.is(parseArgs(['-h']), 'help');
  const bad: [string[], RegExp][] = [
    [['--agent', '/a', 'tcp:h:1'], /add -p/],
    [['--agent', '/a', '-p'], /missing URI/],
    [['-p', 'tcp:h:1'], /--agent PATH or --pid PID/],
    [['--agent', '/a', '-p', '-x', 'tcp:h:1'], /unknown option -x/],
    [['--agent', '/a', '-pnm', 'tcp:h:1'], /use one of them/],
    [['--agent', '/a', '-p', 'tcp:h:1', '-3'], /forward must be an integer/],
    [['--agent', '/a', '-p', 'tcp:h:1', '1', 'x'], /backward must be an integer/],
    [['--agent', '/a', '-p', 'tcp:h:1', '1', '2', '3'], /too many arguments/],
    [['--pid', 'abc', '-p', 'tcp:h:1'], /--pid must be a positive integer/],
    [['--agent', '/a', '-p', 'gopher:x'], /unknown scheme/],
  ];
  for (const [argv, re] of bad) {
    const err = t.throws(() => parseArgs(argv), undefined, argv.join(' '));
    t.true(err instanceof UsageError || err instanceof MigrationError, argv.join(' '));
    t.regex(err!.message, re, argv.join(' '));
  }
});

test('agent: the CLI migrates a process through its agent socket (stop → state → pages → SHUT)', async (t) => {
  t.timeout(30000);
  const region = heapRegion('agent.ram', 256, [1, 2]);
  let stopped = 0;
  let done: unknown;
  const agent = await serveMigrationAgent(tmp('agent'), {
    regions: [region],
    stop: () => { stopped++; },
    getState: () => Buffer.from('agent-state'),
    onDone: (r) => { done = r; },
  });
  const rx = await startReceiver('tcp');
  try {
    const child = spawn(process.execPath, [cli, '--agent', agent.path, '--json', '-p', rx.uri, '2', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    clearTimeout(timer);
    t.is(code, 0, err);
    const stats = JSON.parse(out);
    t.is(stats.pagesTotal, 256);
    t.is(stats.pagesZero, 2);
    t.is(stopped, 1);
    const result = await rx.result;
    t.deepEqual(result.state, Buffer.from('agent-state'));
    t.is(result.pages.length, 256);
    t.true(result.pages.every((p) => p.kind === 'zero' || region.bytes.subarray(p.blockOffset, p.blockOffset + PAGE).equals(p.data!)));
    t.is((done as { ok: boolean }).ok, true);
  } finally {
    rx.close();
    await agent.close();
  }
});

test('agent: failures come back as clear errors (no agent, bad URI, unreachable destination)', async (t) => {
  t.timeout(20000);
  const e1 = await requestMigration(tmp('absent'), { uri: 'tcp:127.0.0.1:1' }).then(() => null, (e) => e);
  t.regex(String(e1?.message), /cannot reach the migration agent.*serveMigrationAgent/);
  const region = heapRegion('r', 4);
  let failure: unknown;
  const agent = await serveMigrationAgent(tmp('agent2'), { regions: [region], stop: () => {}, getState: () => Buffer.alloc(0), onDone: (r) => { failure = r; } });
  try {
    const e2 = await requestMigration(agent.path, { uri: 'tcp:127.0.0.1:1' }).then(() => null, (e) => e);
    t.is(e2?.code, 'CONNECT_FAILED');
    t.like(failure, { ok: false, stopped: false });
    const e3 = await requestMigration(agent.path, { uri: 'nope' }).then(() => null, (e) => e);
    t.is(e3?.code, 'BAD_URI');
    // The CLI exits 1 with the message on stderr.
    const child = spawn(process.execPath, [cli, '--agent', agent.path, '-p', 'tcp:127.0.0.1:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    t.is(code, 1);
    t.regex(err, /migration failed \(CONNECT_FAILED\)/);
    const usage = spawn(process.execPath, [cli, '-p'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let uerr = '';
    usage.stderr.on('data', (d) => { uerr += d; });
    t.is(await new Promise<number | null>((r) => usage.on('exit', r)), 2);
    t.regex(uerr, /usage: postcopy-migrate/);
  } finally {
    await agent.close();
  }
});
