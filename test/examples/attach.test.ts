// The destination process's side of the control socket (src/dest/attach.ts), driven by a fake daemon built
// on the daemon's own control-socket code: TS toy and C toy destinations, missing and minor modes, failure
// messages, and the control-message parser.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlServer, placeAll } from './fake-daemon.js';
import { ControlReader, ControlProtocolError } from '../../src/dest/control-reader.js';
import { attachToDaemon, prepareDestRegion, describeRegions, AttachError } from '../../src/dest/attach.js';
import { createMigratableRegion } from '../../src/source/region.js';
import { createWorkload, windowsFromView, type AccessPattern } from '../../examples/toy/workload.js';
import { buildCToy, haveCompiler } from '../../examples/c-toy/build.js';
import { spawnWithTimeout } from '../helpers/child.js';
import { referenceRun } from '../helpers/workload.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TOY_MAIN = path.resolve(here, '../../examples/toy/main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'postcopy-attach-'));
let sockN = 0;
const sockPath = (): string => path.join(tmp, `ctl-${process.pid}-${sockN++}.sock`);
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SIZE = 8 * 1024 * 1024;

/** Source at step M on a memfd region → fake daemon → destination child running to K. */
async function migrateThroughFakeDaemon(t: import('ava').ExecutionContext, dest: 'ts' | 'c', mode: 'missing' | 'minor', pattern: AccessPattern): Promise<void> {
  const M = 40_000, K = 100_000, seed = 21;
  const expected = referenceRun(SIZE, pattern, seed, K).digest;
  const src = createMigratableRegion(SIZE, 'toy.ram');
  const w = createWorkload({ size: SIZE, pattern, seed });
  w.init(windowsFromView(SIZE, (o, l) => src.view(o, l)));
  w.step(M);
  const state = w.snapshotState();

  const control = sockPath();
  const server = await ControlServer.listen(control, { handshakeTimeoutMs: 10_000 });
  const args = ['dest', '--control', control, '--size', String(SIZE), '--steps', String(K), '--mode', mode];
  const child = dest === 'ts' ? spawnWithTimeout(process.execPath, [TOY_MAIN, ...args], { timeoutMs: 30_000 }) : spawnWithTimeout(buildCToy(), args, { timeoutMs: 30_000 });
  try {
    const client = await Promise.race([
      server.accept(),
      child.done.then((o) => { throw new Error(`destination exited before attaching: ${o.stderr}`); }),
    ]);
    t.is(client.hello.mode, mode);
    t.is(client.hello.regions[0].name, 'toy.ram');
    t.true(client.pid > 0);
    const placed = placeAll(client, src.view(0, SIZE), src.addr);
    // (the sequential pattern has written every page by step M: no zero page left)
    if (mode === 'missing' && pattern !== 'sequential') t.true(placed.zero > 0, 'some pages were all zero (placed with ZEROPAGE)');
    await client.sendState(state);
    // `complete` may come before the process has finished its steps: it reads it when it is done.
    await client.sendComplete({ pages: SIZE / 4096 });
    const res = await child.done;
    t.false(res.timedOut, `destination hung: ${res.stderr}`);
    t.is(res.code, 0, res.stderr);
    const digest = /digest=([0-9a-f]{32}) steps=(\d+)/.exec(res.stdout);
    t.truthy(digest, res.stdout);
    t.is(digest![2], String(K));
    t.is(digest![1], expected, 'digest after a migration at step M = never-migrated digest');
    t.regex(res.stdout, /complete/);
    await client.close();
  } finally {
    child.kill();
    server.close();
    src.close();
  }
}

test.serial('TS toy destination, missing mode (UFFDIO_COPY/ZEROPAGE): digest = never-migrated', async (t) => {
  await migrateThroughFakeDaemon(t, 'ts', 'missing', 'hotset');
});

test.serial('TS toy destination, minor mode (memfd write + UFFDIO_CONTINUE): digest = never-migrated', async (t) => {
  await migrateThroughFakeDaemon(t, 'ts', 'minor', 'uniform');
});

const ctest = haveCompiler() ? test.serial : test.skip;
ctest('C toy destination (same handshake, not Node), missing mode: digest = TS never-migrated', async (t) => {
  await migrateThroughFakeDaemon(t, 'c', 'missing', 'sequential');
});

ctest('C toy destination, minor mode', async (t) => {
  await migrateThroughFakeDaemon(t, 'c', 'minor', 'hotset');
});

// ----- failure paths (in this process: the registered memory is never touched, so nothing can block)

async function attachPair(): Promise<{ server: ControlServer; dest: ReturnType<typeof prepareDestRegion>; att: ReturnType<typeof attachToDaemon>; client: Awaited<ReturnType<ControlServer['accept']>> }> {
  const control = sockPath();
  const server = await ControlServer.listen(control, { handshakeTimeoutMs: 5000 });
  const dest = prepareDestRegion({ size: 64 * 1024, mode: 'missing' });
  const att = attachToDaemon(control, { uffd: dest.uffd, memfdFd: dest.region.fd, regions: [dest.spec], mode: 'missing' });
  const client = await server.accept();
  return { server, dest, att, client };
}

test.serial('the hello carries the region table in Firecracker layout and both fds', async (t) => {
  const { server, dest, att, client } = await attachPair();
  try {
    t.is(client.pid, process.pid);
    t.deepEqual(client.hello.regions.map((r) => ({ base: r.base, size: r.size, name: r.name, off: r.offset ?? 0 })),
      [{ base: dest.region.addr, size: 64 * 1024, name: 'toy.ram', off: 0 }]);
    t.true(client.memfdFd >= 0 && client.uffdFd >= 0);
    await client.sendState(Buffer.from('hello state'));
    t.is((await att.state).toString(), 'hello state');
    await client.sendComplete({ pagesTotal: 16 });
    t.deepEqual(await att.done, { pagesTotal: 16 });
  } finally {
    att.close(); await client.close(); server.close(); dest.close();
  }
});

test.serial('a daemon error rejects state and done with DAEMON_ERROR', async (t) => {
  const { server, dest, att, client } = await attachPair();
  try {
    await client.sendError('source vanished');
    const e = await t.throwsAsync(att.state, { instanceOf: AttachError });
    t.is(e!.code, 'DAEMON_ERROR');
    t.regex(e!.message, /source vanished/);
    await t.throwsAsync(att.done, { instanceOf: AttachError });
  } finally {
    att.close(); await client.close(); server.close(); dest.close();
  }
});

test.serial('the daemon going away before the state / before completion is reported, not a hang', async (t) => {
  {
    const { server, dest, att, client } = await attachPair();
    await client.close();
    const e = await t.throwsAsync(att.state, { instanceOf: AttachError });
    t.is(e!.code, 'CLOSED');
    t.regex(e!.message, /before sending the state/);
    server.close(); dest.close();
  }
  {
    const { server, dest, att, client } = await attachPair();
    await client.sendState(Buffer.alloc(3));
    t.is((await att.state).length, 3);
    await client.close();
    const e = await t.throwsAsync(att.done, { instanceOf: AttachError });
    t.regex(e!.message, /before reporting completion/);
    server.close(); dest.close();
  }
});

test('attaching to a path where nothing listens fails at once with CONNECT', (t) => {
  const dest = prepareDestRegion({ size: 64 * 1024 });
  try {
    const e = t.throws(() => attachToDaemon(path.join(tmp, 'nobody.sock'), { uffd: dest.uffd, regions: [dest.spec] }), { instanceOf: AttachError });
    t.is(e!.code, 'CONNECT');
    t.throws(() => attachToDaemon(sockPath(), { uffd: dest.uffd, regions: [dest.spec], mode: 'minor' }), { instanceOf: AttachError }, 'minor without memfd');
  } finally {
    dest.close();
  }
});

test('describeRegions writes docs/migration-protocol.md\'s line and validates', (t) => {
  const line = describeRegions([{ name: 'toy.ram', addr: 0x7f0000000000, size: 8192 }], 'minor', 42);
  t.true(line.endsWith('\n'));
  t.deepEqual(JSON.parse(line), {
    version: 1, pid: 42, mode: 'minor',
    regions: [{ base_host_virt_addr: 0x7f0000000000, size: 8192, offset: 0, page_size: 4096, page_size_kib: 4096, name: 'toy.ram' }],
  });
  t.throws(() => describeRegions([], 'missing'), { instanceOf: AttachError });
  t.throws(() => describeRegions([{ name: 'x', addr: 100, size: 4096 }], 'missing'), { instanceOf: AttachError });
  t.throws(() => describeRegions([{ name: 'x', addr: 4096, size: 100 }], 'missing'), { instanceOf: AttachError });
});

// ----- ControlReader

test('ControlReader: every split of a state + complete stream gives the same messages', (t) => {
  const blob = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
  blob[10] = 0x0a; // newlines inside the blob are data
  const stream = Buffer.concat([
    Buffer.from('{"type":"state","length":300}\n'), blob,
    Buffer.from('\n{"type":"progress","x":1}\n{"type":"complete","stats":{"pages":5}}\n'),
  ]);
  for (let cut = 0; cut <= stream.length; cut += 7) {
    const r = new ControlReader();
    const msgs = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
    t.is(msgs.length, 3, `cut ${cut}`);
    t.deepEqual(msgs[0], { type: 'state', state: blob });
    t.is(msgs[1].type, 'other');
    t.deepEqual(msgs[2], { type: 'complete', stats: { pages: 5 } });
    t.false(r.midMessage);
  }
  const r = new ControlReader();
  for (const b of stream) r.push(Buffer.of(b)); // byte by byte (result collected below)
  const r2 = new ControlReader();
  const all = [...stream].flatMap((b) => r2.push(Buffer.of(b)));
  t.is(all.length, 3);
  t.deepEqual(new ControlReader().push(Buffer.from('{"type":"state","length":0}\n')), [{ type: 'state', state: Buffer.alloc(0) }]);
});

test('ControlReader: bad input is a ControlProtocolError, never an unbounded allocation', (t) => {
  const err = (chunk: string, code: ControlProtocolError['code'], opts = {}): void => {
    const e = t.throws(() => new ControlReader(opts).push(Buffer.from(chunk)), { instanceOf: ControlProtocolError });
    t.is(e!.code, code, chunk.slice(0, 40));
  };
  err('not json\n', 'BAD_JSON');
  err('[1,2]\n', 'BAD_MESSAGE');
  err('{"type":"state","length":-1}\n', 'BAD_MESSAGE');
  err('{"type":"state","length":"9"}\n', 'BAD_MESSAGE');
  err('{"type":"state","length":1e15}\n', 'STATE_TOO_LARGE');
  err('{"type":"state","length":2000}\n', 'STATE_TOO_LARGE', { maxStateBytes: 1000 });
  err('x'.repeat(70_000), 'LINE_TOO_LONG');
  t.deepEqual(new ControlReader().push(Buffer.from('{"type":"error","message":"boom"}\n')), [{ type: 'error', message: 'boom' }]);
});

test('createMigratableRegion: shared memfd mapping, views, validation', (t) => {
  const r = createMigratableRegion(64 * 1024, 'toy.test');
  try {
    t.is(r.size, 64 * 1024);
    t.is(r.fdOffset, 0);
    t.true(r.addr > 0 && r.addr % 4096 === 0);
    t.regex(fs.readlinkSync(`/proc/self/fd/${r.fd}`), /memfd:toy\.test/);
    const v = r.view();
    t.is(v.length, 64 * 1024);
    v[5] = 42;
    t.is(r.view(4, 4)[1], 42);
    // the memfd sees what the mapping wrote (MAP_SHARED)
    const b = Buffer.alloc(8);
    fs.readSync(r.fd, b, 0, 8, 0);
    t.is(b[5], 42);
  } finally {
    r.close();
    r.close();
  }
  t.throws(() => r.view(), { message: /closed/ });
  t.throws(() => createMigratableRegion(1000, 'x'), { code: 'BAD_REGION' } as never);
  t.throws(() => createMigratableRegion(4096, ''), { code: 'BAD_REGION' } as never);
});
