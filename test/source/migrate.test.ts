// The outgoing side against a small decoder-based receiver: stream content, order, options, transports,
// hostile requests. No userfaultfd here (the source never touches registered memory), so no child needed;
// every test has a hard timeout and every receiver is closed.
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { migrate, type MigrateOptions } from '../../src/source/migrate.js';
import { MigrationError } from '../../src/source/errors.js';
import { parseMigrationUri } from '../../src/source/uri.js';
import { createMigratableRegion } from '../../src/source/region.js';
import { startReceiver, type ReceiverResult, type ArrivedPage } from './helpers/receiver.js';
import { heapRegion, PAGE } from './helpers/regions.js';
import type { SourceRegion } from '../../src/source/page-map.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const relay = path.join(here, 'helpers', 'relay.js');
const STATE = Buffer.from('the application state: registers, counters, step 42');

function tmpSock(tag: string): string {
  return path.join(os.tmpdir(), `pc-src-${process.pid}-${tag}-${Math.random().toString(36).slice(2)}.sock`);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms); })]).finally(() => clearTimeout(timer));
}

/** Every page of every region exactly once with the right bytes (ZERO exactly for all-zero pages). */
function checkImage(t: import('ava').ExecutionContext, regions: (SourceRegion & { bytes: Buffer })[], r: ReceiverResult, allowDuplicates = false): void {
  t.falsy(r.error, r.error?.message);
  const seen = new Map<string, number>();
  for (const pg of r.pages) {
    const key = `${pg.block}@${pg.blockOffset}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const reg = regions.find((x) => x.name === pg.block);
    if (!reg) { t.fail(`page of unknown block ${pg.block}`); return; }
    const want = reg.bytes.subarray(pg.blockOffset, pg.blockOffset + PAGE);
    const isZero = want.every((b) => b === 0);
    if (pg.kind === 'zero') { if (!isZero) { t.fail(`${key}: ZERO record for a non-zero page`); return; } }
    else {
      if (isZero) { t.fail(`${key}: PAGE record for an all-zero page`); return; }
      if (!want.equals(pg.data!)) { t.fail(`${key}: wrong bytes`); return; }
    }
  }
  let total = 0;
  for (const reg of regions) {
    for (let off = 0; off < reg.size; off += PAGE) {
      const n = seen.get(`${reg.name}@${off}`) ?? 0;
      if (n === 0 || (!allowDuplicates && n !== 1)) { t.fail(`${reg.name}@${off} arrived ${n} times`); return; }
      total++;
    }
  }
  t.pass(`all ${total} pages present`);
}

async function runPair(kind: 'tcp' | 'unix', regions: SourceRegion[], opts: Partial<MigrateOptions>, recvOpts: Parameters<typeof startReceiver>[1] = {}) {
  const rx = await startReceiver(kind, recvOpts, kind === 'unix' ? tmpSock('u') : undefined);
  try {
    const stats = await withTimeout(migrate(rx.uri, { regions, state: STATE, ...opts }), 20000, 'migrate');
    const result = await withTimeout(rx.result, 5000, 'receiver');
    return { stats, result };
  } finally {
    rx.close();
  }
}

test('tcp: header, blocks, state and RUN come first; every page once with the right bytes; zero pages as ZERO', async (t) => {
  const a = heapRegion('a.ram', 300, [0, 5, 6, 299]);
  const b = heapRegion('b.ram', 17, [3]);
  const { stats, result } = await runPair('tcp', [a, b], {});
  t.deepEqual(result.blocks.map((x) => [x.idstr, x.usedLength]), [['a.ram', a.size], ['b.ram', b.size]]);
  t.deepEqual(result.state, STATE);
  const kinds = result.records.map((r) => r.kind);
  const firstPage = kinds.findIndex((k) => k === 'page' || k === 'zero');
  const runIdx = result.records.findIndex((r) => r.kind === 'command' && r.command === 'POSTCOPY_RUN');
  const stateIdx = result.records.findIndex((r) => r.kind === 'device-state');
  const memIdx = kinds.indexOf('mem-size');
  t.true(memIdx >= 0 && memIdx < stateIdx && stateIdx < runIdx && runIdx < firstPage, `order: mem-size ${memIdx}, state ${stateIdx}, run ${runIdx}, first page ${firstPage}`);
  const cmds = result.records.filter((r) => r.kind === 'command').map((r) => (r as { command: string }).command);
  t.deepEqual(cmds.slice(0, 4), ['OPEN_RETURN_PATH', 'POSTCOPY_ADVISE', 'PING', 'POSTCOPY_RUN']);
  t.is(kinds[kinds.length - 1], 'eof');
  checkImage(t, [a, b], result);
  t.is(result.pages.filter((p) => p.kind === 'zero').length, 5);
  t.is(stats.pagesTotal, 317);
  t.is(stats.pagesBackground, 317);
  t.is(stats.pagesZero, 5);
  t.is(stats.shutStatus, 0);
  t.true(stats.handoverMs >= 0 && stats.handoverMs < 1000);
  t.is(result.urgentEos, 1);
});

test('unix: a state function runs after the connection is up and its time is the downtime start', async (t) => {
  const a = heapRegion('r', 64);
  let calledAt = 0;
  const { stats, result } = await runPair('unix', [a], { state: () => { calledAt = performance.timeOrigin + performance.now(); return STATE; } });
  t.true(calledAt > 0);
  // The stop is stamped right before state() runs, and the state leaves after it returns (no fixed bound on
  // the gaps: on a loaded 2-vCPU machine a thread can be descheduled for tens of ms between two lines).
  t.true(stats.downtimeStart <= calledAt && calledAt <= stats.stateSentAt, `stop ${stats.downtimeStart}, state() ${calledAt}, sent ${stats.stateSentAt}`);
  t.true(stats.downtimeStart > 0 && stats.handoverMs >= 0);
  t.deepEqual(result.state, STATE);
  checkImage(t, [a], result);
});

test('-n (background: false): only requested pages, requested order, prefault forward then backward, EOS when all were sent', async (t) => {
  const a = heapRegion('a', 32, [11]);
  const order = [10, 0, 31, 20, 25];
  const { stats, result } = await runPair('tcp', [a], { background: false, forward: 2, backward: 1 }, {
    onRun: async (ctx) => {
      for (const p of order) {
        const before = ctx.pages.length;
        ctx.request('a', p * PAGE, PAGE);
        // Wait for the answer so the arrival order is the request order.
        await ctx.waitPages(before + 1);
        await new Promise((r) => setTimeout(r, 20));
      }
      // Now ask for every page (already-sent ones go out again: resendRequested) until the source ends.
      for (let p = 0; p < 32; p++) ctx.request('a', p * PAGE, PAGE);
    },
  });
  const urgent = result.pages.filter((p) => p.channel === 'urgent').map((p) => p.blockOffset / PAGE);
  // 10 → 10, 11, 12 (forward), 9 (backward); 0 → 0, 1, 2; 31 → 31, 30; 20 → 20, 21, 22, 19; 25 → 25, 26, 27, 24
  t.deepEqual(urgent.slice(0, 16), [10, 11, 12, 9, 0, 1, 2, 31, 30, 20, 21, 22, 19, 25, 26, 27, 24].slice(0, 16));
  t.is(result.pages.filter((p) => p.channel === 'main').length, 0, 'no background page with -n');
  checkImage(t, [a], result, true);
  t.is(stats.pagesBackground, 0);
  t.true(stats.pagesPrefault >= 10);
});

test('background with a request: the requested page goes on the urgent channel and is not sent twice', async (t) => {
  const a = heapRegion('big', 16384); // 64 MiB
  const target = 16380;
  const { stats, result } = await runPair('tcp', [a], { resendRequested: false }, {
    onRun: (ctx) => ctx.request('big', target * PAGE, PAGE),
  });
  const copies = result.pages.filter((p) => p.blockOffset === target * PAGE);
  t.is(copies.length, 1);
  t.is(copies[0].channel, 'urgent');
  t.is(stats.requests, 1);
  checkImage(t, [a], result);
});

test('-m (restartAfterRequest): the background continues right after the requested page (+forward)', async (t) => {
  const a = heapRegion('m', 16384); // 64 MiB so the request lands while the scan is near the start
  const target = 12000;
  const { result } = await runPair('tcp', [a], { restartAfterRequest: true, forward: 3 }, {
    // Once the scan is under way (background pages start only after the PONG that follows RUN).
    onRun: async (ctx) => { await ctx.waitPages(64); ctx.request('m', target * PAGE, PAGE); },
  });
  const main = result.pages.filter((p: ArrivedPage) => p.channel === 'main').map((p) => p.blockOffset / PAGE);
  const jump = main.indexOf(target + 4);
  t.true(jump > 0, 'page after the prefault window is in the main stream');
  t.true(main[jump - 1] < target, `the scan jumped: page before it in the stream is ${main[jump - 1]}`);
  // The pages skipped by the jump are sent after the wrap-around.
  t.true(main.lastIndexOf(main[jump - 1] + 1) > jump);
  checkImage(t, [a], result);
});

test('exec: transport through a relay command (single bidirectional pipe, requests inline)', async (t) => {
  const a = heapRegion('x', 2048, [7]);
  const sockPath = tmpSock('exec');
  const rx = await startReceiver('unix', { onRun: (ctx) => ctx.request('x', 2000 * PAGE, PAGE) }, sockPath);
  try {
    const stats = await withTimeout(migrate(`exec:${process.execPath} ${relay} ${sockPath}`, { regions: [a], state: STATE }), 20000, 'migrate exec');
    const result = await withTimeout(rx.result, 5000, 'receiver');
    checkImage(t, [a], result); // exactly once: no re-send over a single pipe
    t.is(result.urgentEos, 0);
    t.is(stats.shutStatus, 0);
    t.is(stats.requests, 1);
  } finally {
    rx.close();
  }
});

test('memfd region: untouched pages (holes) go as ZERO, written ones as PAGE', async (t) => {
  const r = createMigratableRegion(8 << 20, 'memfd.ram');
  try {
    const v = r.view();
    v.fill(0xab, 0, PAGE); // page 0
    v[5 * PAGE + 100] = 1; // page 5
    v.fill(0x11, 2000 * PAGE, 2001 * PAGE); // page 2000
    const bytes = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    const { result, stats } = await runPair('tcp', [r], {});
    checkImage(t, [{ ...r, view: r.view, bytes }], result);
    t.is(stats.pagesZero, 2048 - 3);
  } finally {
    r.close();
  }
});

test('a region over 4 GiB: offsets above 2^32 and 1 GiB view windows (sparse memfd)', async (t) => {
  t.timeout(60000);
  const size = 4.5 * 2 ** 30;
  let r;
  try { r = createMigratableRegion(size, 'huge.ram'); } catch (e) { t.log(`skipped: cannot map a 4.5 GiB memfd: ${(e as Error).message}`); t.pass(); return; }
  try {
    const marks = [0, 2 ** 30 - PAGE, 2 ** 30, 2 ** 32 + 2 * PAGE, size - PAGE];
    for (const m of marks) r.view(m, PAGE).fill((m / PAGE) & 0xff || 0x5a);
    const { result, stats } = await runPair('tcp', [r], {}, { countZeroOnly: true, onRun: (ctx) => ctx.request('huge.ram', 2 ** 32 + 2 * PAGE, PAGE) });
    t.falsy(result.error);
    const got = result.pages.filter((p) => p.kind === 'page').map((p) => p.blockOffset).sort((a, b) => a - b);
    t.deepEqual([...new Set(got)], marks);
    for (const p of result.pages) t.true(Buffer.from(r.view(p.blockOffset, PAGE)).equals(p.data!), `page at 0x${p.blockOffset.toString(16)}`);
    t.is(result.zeroCount, size / PAGE - marks.length);
    t.is(stats.pagesTotal, size / PAGE);
    t.true(result.pages.some((p) => p.channel === 'urgent' && p.blockOffset === 2 ** 32 + 2 * PAGE) || stats.pagesUrgent === 0);
  } finally {
    r.close();
  }
});

test('hostile requests: unknown block, out of range, unaligned, garbage → clear errors, no hang', async (t) => {
  const cases: [string, (ctx: { request: (b: string, s: number, l: number) => void; raw: (b: Uint8Array) => void }) => void, string][] = [
    ['unknown block', (c) => c.request('nope', 0, PAGE), 'BAD_REQUEST'],
    ['past the end', (c) => c.request('h', 64 * PAGE, PAGE), 'BAD_REQUEST'],
    ['straddles the end', (c) => c.request('h', 63 * PAGE, 2 * PAGE), 'BAD_REQUEST'],
    ['unaligned start', (c) => c.request('h', 100, PAGE), 'BAD_REQUEST'],
    ['huge length', (c) => c.request('h', 0, 0xfffff000), 'BAD_REQUEST'],
    ['huge offset', (c) => c.request('h', 2 ** 52, PAGE), 'BAD_REQUEST'],
    ['garbage', (c) => c.raw(Buffer.from('\x00\x63\xff\xffgarbage garbage garbage garbage')), 'BAD_RETURN_PATH'],
  ];
  for (const [what, send, code] of cases) {
    const a = heapRegion('h', 64);
    const rx = await startReceiver('tcp', { onRun: (ctx) => send(ctx), shutStatus: null });
    try {
      const err = await withTimeout(migrate(rx.uri, { regions: [a], state: STATE, background: false }).then(() => null, (e) => e), 10000, what);
      t.true(err instanceof MigrationError, `${what}: ${err}`);
      t.is((err as MigrationError).code as string, code, `${what}: ${(err as Error).message}`);
      t.log(`${what}: ${(err as Error).message}`);
    } finally {
      rx.close();
    }
  }
});

test('destination failure: SHUT(1) → DESTINATION_FAILED; closing without SHUT → NO_SHUT', async (t) => {
  const a = heapRegion('f', 16);
  const rx = await startReceiver('tcp', { shutStatus: 1 });
  try {
    const err = await withTimeout(migrate(rx.uri, { regions: [a], state: STATE }).then(() => null, (e) => e), 10000, 'shut 1');
    t.is((err as MigrationError)?.code, 'DESTINATION_FAILED');
  } finally { rx.close(); }
  const rx2 = await startReceiver('tcp', { shutStatus: null });
  const p = migrate(rx2.uri, { regions: [a], state: STATE }).then(() => null, (e) => e);
  await withTimeout(rx2.result, 5000, 'receiver');
  rx2.close();
  const err2 = await withTimeout(p, 10000, 'no shut');
  t.true((err2 as MigrationError)?.code === 'NO_SHUT' || (err2 as MigrationError)?.code === 'TRANSPORT_ERROR', String(err2));
});

test('the destination disappears mid-stream; an exec command that exits at once: clear errors, no hang', async (t) => {
  t.timeout(30000);
  const a = heapRegion('gone', 8192); // 32 MiB: still streaming when the receiver hangs up
  const rx = await startReceiver('tcp', { shutStatus: null, onRun: () => { setTimeout(() => rx.close(), 5); } });
  const err = await withTimeout(migrate(rx.uri, { regions: [a], state: STATE }).then(() => null, (e) => e), 10000, 'hang-up');
  t.true(err instanceof MigrationError, String(err));
  t.true(['TRANSPORT_CLOSED', 'TRANSPORT_ERROR'].includes((err as MigrationError).code), (err as Error).message);
  t.log((err as Error).message);
  const err2 = await withTimeout(migrate('exec:echo oops >&2; exit 3', { regions: [a], state: STATE }).then(() => null, (e) => e), 10000, 'exec exit');
  t.true(err2 instanceof MigrationError, String(err2));
  t.regex((err2 as Error).message, /exec:echo oops/);
  t.log((err2 as Error).message);
});

test('abort signal and connect errors', async (t) => {
  const a = heapRegion('s', 16);
  const rx = await startReceiver('tcp', { shutStatus: null });
  try {
    const ac = new AbortController();
    const p = migrate(rx.uri, { regions: [a], state: STATE, signal: ac.signal }).then(() => null, (e) => e);
    await withTimeout(rx.result, 5000, 'receiver');
    ac.abort();
    const err = await withTimeout(p, 5000, 'abort');
    t.is((err as MigrationError)?.code, 'ABORTED');
  } finally { rx.close(); }
  const err = await migrate(`unix:${tmpSock('nobody')}`, { regions: [a], state: STATE }).then(() => null, (e) => e);
  t.is((err as MigrationError)?.code, 'CONNECT_FAILED');
  t.regex((err as Error).message, /ENOENT|connect/);
});

test('options and URIs are checked', async (t) => {
  const a = heapRegion('o', 4);
  const bad = async (uri: string, o: Partial<MigrateOptions>, code: string) => {
    const err = await migrate(uri, { regions: [a], state: STATE, ...o } as MigrateOptions).then(() => null, (e) => e);
    t.is((err as MigrationError)?.code as string, code, `${uri} ${JSON.stringify(o)}: ${err}`);
  };
  await bad('tcp:127.0.0.1:1', { forward: -1 }, 'BAD_OPTIONS');
  await bad('tcp:127.0.0.1:1', { backward: 1.5 }, 'BAD_OPTIONS');
  await bad('tcp:127.0.0.1:1', { postcopy: false }, 'BAD_OPTIONS');
  await bad('tcp:127.0.0.1:1', { background: false, restartAfterRequest: true }, 'BAD_OPTIONS');
  await bad('tcp:127.0.0.1:1', { regions: [] }, 'BAD_OPTIONS');
  await bad('tcp:127.0.0.1:1', { regions: [a, a] }, 'BAD_OPTIONS');
  await bad('ftp:x', {}, 'BAD_URI');
  await bad('tcp:host', {}, 'BAD_URI');
  await bad('tcp:host:70000', {}, 'BAD_URI');
  t.deepEqual(parseMigrationUri('tcp:[::1]:4444'), { kind: 'tcp', host: '::1', port: 4444 });
  t.deepEqual(parseMigrationUri('tcp::4444'), { kind: 'tcp', host: '127.0.0.1', port: 4444 });
  t.deepEqual(parseMigrationUri('unix:/tmp/x'), { kind: 'unix', path: '/tmp/x' });
  t.deepEqual(parseMigrationUri('exec:ssh host nc -U /x'), { kind: 'exec', command: 'ssh host nc -U /x' });
});

test.after.always(() => {
  for (const f of fs.readdirSync(os.tmpdir())) if (f.startsWith(`pc-src-${process.pid}-`)) fs.rmSync(path.join(os.tmpdir(), f), { force: true });
});

test('the workload is stopped only after the destination answers PING; no PONG → TIMEOUT, state() never called', async (t) => {
  const a = heapRegion('a.ram', 8, [1]);
  // A destination that answers: PING goes out before the state section, state() is called once.
  let calls = 0;
  const ok = await runPair('tcp', [a], { state: () => { calls++; return STATE; } });
  const kinds = ok.result.records.map((r) => (r.kind === 'command' ? (r as { command: string }).command : r.kind));
  t.true(kinds.indexOf('PING') >= 0 && kinds.indexOf('PING') < kinds.indexOf('device-state'), kinds.join(','));
  t.is(calls, 1);
  t.true(ok.stats.readyMs >= 0 && ok.stats.readyMs < 5000);
  // One that never answers: migrate() gives up without stopping the workload.
  const rx = await startReceiver('tcp', { answerPing: false });
  try {
    let called = false;
    const e = await t.throwsAsync(withTimeout(migrate(rx.uri, { regions: [a], state: () => { called = true; return STATE; }, readyTimeoutMs: 300 }), 10000, 'migrate'));
    t.true(e instanceof MigrationError && e.code === 'TIMEOUT', String(e));
    t.regex(e!.message, /did not answer PING/);
    t.false(called);
  } finally {
    rx.close();
  }
});
