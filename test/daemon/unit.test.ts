// Unit tests of the daemon's pure parts: control hello parsing, wire range validation (the guard that keeps
// a hostile source inside the regions), block-list binding, request encoding, the shared present counter and
// latency histogram, --listen parsing, and the control handshake receiver over a real socketpair.
import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import { parseHello, WireMap } from '../../src/daemon/regions.js';
import { RequestEncoder } from '../../src/daemon/requests.js';
import { SharedStats, latencyBucket, bucketValue, snapshot, formatSummary } from '../../src/daemon/stats.js';
import { parseListenSpec } from '../../src/daemon/listener.js';
import { workerError } from '../../src/daemon/worker-common.js';
import { recvHello, ControlClient } from '../../src/daemon/control.js';
import { DaemonError } from '../../src/daemon/errors.js';
import { ProtocolError, ReturnPathDecoder, encodeReturnPathShut, encodeReturnPathReqPages } from '../../src/protocol/index.js';
import { unixSocketPair, sendFds, sendBytesWithFds as sendRaw } from '../../src/uffd/fdpass.js';
import { createEventfd, closeFd } from '../../src/uffd/events.js';
import { libc } from '../../src/uffd/libc.js';

const PS = 4096;
const region = (name: string, base: number, size: number, offset = 0) => ({
  base_host_virt_addr: base, size, offset, page_size: PS, page_size_kib: PS, name,
});

// ---------------------------------------------------------------------------------------------------------
// hello

test('parseHello accepts the docs/migration-protocol.md hello', (t) => {
  const h = parseHello({ version: 1, pid: 42, mode: 'minor', regions: [region('toy.ram', 0x7f0000000000, 1 << 20)] });
  t.is(h.mode, 'minor');
  t.is(h.pid, 42);
  t.deepEqual(h.regions, [{ name: 'toy.ram', base: 0x7f0000000000, size: 1 << 20, offset: 0, pageSize: PS }]);
  t.deepEqual(h.named, [true]);
  t.false(h.firecracker);
});

test('parseHello accepts Firecracker\'s bare region array (missing mode, unnamed regions)', (t) => {
  const h = parseHello([{ base_host_virt_addr: 0x10000000, size: 0x200000, offset: 0, page_size_kib: PS }]);
  t.true(h.firecracker);
  t.is(h.mode, 'missing');
  t.deepEqual(h.named, [false]);
  t.is(h.regions[0].name, 'region0');
});

test('parseHello rejects bad input with a clear BAD_HELLO message', (t) => {
  const cases: [unknown, RegExp][] = [
    ['nope', /expected a JSON object/],
    [{ version: 2, regions: [region('a', 0, PS)] }, /version 2/],
    [{ mode: 'wp', regions: [region('a', 0, PS)] }, /mode must be/],
    [{ regions: [] }, /non-empty/],
    [{ regions: [region('a', 100, PS)] }, /aligned/],
    [{ regions: [region('a', 0, 0)] }, /non-empty and page aligned|size/],
    [{ regions: [{ ...region('a', 0, PS), page_size: 2 << 20 }] }, /page size/],
    [{ regions: [region('a', 0, 2 * PS), region('b', PS, PS)] }, /overlap/],
    [{ regions: [region('a', 0, PS), region('a', 4 * PS, PS)] }, /same name/],
    [{ regions: [{ size: PS }] }, /base_host_virt_addr/],
    [{ pid: -1, regions: [region('a', 0, PS)] }, /pid/],
  ];
  for (const [payload, re] of cases) {
    const e = t.throws(() => parseHello(payload), { instanceOf: DaemonError }, JSON.stringify(payload));
    t.is(e?.code, 'BAD_HELLO');
    t.regex(e?.message ?? '', re);
  }
});

// ---------------------------------------------------------------------------------------------------------
// wire validation

const twoRegions = () => new WireMap([
  { name: 'a', base: 0x100000, size: 16 * PS, offset: 0, pageSize: PS },
  { name: 'b', base: 0x900000, size: 8 * PS, offset: 16 * PS, pageSize: PS },
], PS);

test('WireMap.validate maps (block, offset) to device pages across regions', (t) => {
  const w = twoRegions();
  t.is(w.validate('a', 0, PS), 0);
  t.is(w.validate('a', 15 * PS, PS), 15);
  t.is(w.validate('b', 0, PS), 16);
  t.is(w.validate('b', 7 * PS, PS), 23);
  t.is(w.validate('b', 2 * PS, 6 * PS), 18);
  t.deepEqual(w.blockOf(18), { name: 'b', offset: 2 * PS });
});

test('WireMap.validate rejects everything outside a region with a ProtocolError', (t) => {
  const w = twoRegions();
  const bad: [string, number, number, string][] = [
    ['c', 0, PS, 'UNKNOWN_BLOCK'],
    ['a', 16 * PS, PS, 'BAD_OFFSET'], // one past the end
    ['a', 100, PS, 'BAD_OFFSET'], // unaligned
    ['a', -PS, PS, 'BAD_OFFSET'],
    ['a', 2 ** 60, PS, 'BAD_OFFSET'],
    ['a', NaN, PS, 'BAD_OFFSET'],
    ['a', 15 * PS, 2 * PS, 'BAD_LENGTH'], // runs past the end
    ['a', 0, 100, 'BAD_LENGTH'],
    ['a', 0, 0, 'BAD_LENGTH'],
    ['b', 0, 9 * PS, 'BAD_LENGTH'],
  ];
  for (const [block, off, len, code] of bad) {
    const e = t.throws(() => w.validate(block, off, len, 1234, 'ram record PAGE'), { instanceOf: ProtocolError }, `${block} ${off} ${len}`);
    t.is(e?.code as string, code, `${block} ${off} ${len}`);
    t.is(e?.offset, 1234);
  }
});

test('WireMap.validate: whatever it accepts lies inside the named region (property)', (t) => {
  const w = twoRegions();
  const sizes: Record<string, number> = { a: 16 * PS, b: 8 * PS };
  const first: Record<string, number> = { a: 0, b: 16 };
  fc.assert(fc.property(
    fc.constantFrom('a', 'b', 'c', ''),
    fc.oneof(fc.integer({ min: -PS, max: 40 * PS }), fc.double(), fc.constant(2 ** 53)),
    fc.oneof(fc.integer({ min: -PS, max: 40 * PS }), fc.double()),
    (block, off, len) => {
      let page: number;
      try { page = w.validate(block, off, len); } catch (e) { return e instanceof ProtocolError; }
      return block in sizes && off >= 0 && off % PS === 0 && len > 0 && len % PS === 0 && off + len <= sizes[block] &&
        page === first[block] + off / PS;
    },
  ), { numRuns: 2000 });
  t.pass();
});

test('WireMap.bindBlockList checks names, count and sizes; unnamed (Firecracker) regions take the block names', (t) => {
  const w = twoRegions();
  t.notThrows(() => w.bindBlockList([{ idstr: 'a', usedLength: 16 * PS }, { idstr: 'b', usedLength: 8 * PS }]));
  t.is(t.throws(() => w.bindBlockList([{ idstr: 'a', usedLength: 16 * PS }]))?.message.includes('1 RAM block'), true);
  t.is((t.throws(() => w.bindBlockList([{ idstr: 'a', usedLength: 17 * PS }, { idstr: 'b', usedLength: 8 * PS }])) as ProtocolError).code, 'BAD_LENGTH');
  t.is((t.throws(() => w.bindBlockList([{ idstr: 'x', usedLength: 16 * PS }, { idstr: 'b', usedLength: 8 * PS }])) as ProtocolError).code, 'UNKNOWN_BLOCK');
  const fcMap = new WireMap([{ name: 'region0', base: 0, size: 4 * PS, offset: 0, pageSize: PS }], PS, [false]);
  fcMap.bindBlockList([{ idstr: 'pc.ram', usedLength: 4 * PS }]);
  t.deepEqual(fcMap.names, ['pc.ram']);
  t.is(fcMap.validate('pc.ram', PS, PS), 1);
  t.throws(() => fcMap.validate('region0', 0, PS), { instanceOf: ProtocolError });
});

// ---------------------------------------------------------------------------------------------------------
// return path

test('RequestEncoder output decodes with the protocol ReturnPathDecoder (REQ_PAGES_ID, then REQ_PAGES)', (t) => {
  const enc = new RequestEncoder();
  enc.add('toy.ram', 0x1000, PS);
  enc.add('toy.ram', 5 * 2 ** 32, 3 * PS); // offset above 4 GiB
  enc.add('other', 0, PS);
  const ours = Buffer.from(enc.buf.subarray(0, enc.length));
  // Byte-identical to the protocol module's (allocating) encoder.
  t.deepEqual(ours, Buffer.concat([encodeReturnPathReqPages(0x1000, PS, 'toy.ram'), encodeReturnPathReqPages(5 * 2 ** 32, 3 * PS), encodeReturnPathReqPages(0, PS, 'other')]));
  const bytes = Buffer.concat([ours, encodeReturnPathShut(0)]);
  const msgs = new ReturnPathDecoder().push(bytes);
  t.is(msgs.length, 4);
  t.like(msgs[0], { kind: 'req-pages', start: 0x1000, length: PS, idstr: 'toy.ram', block: 'toy.ram' });
  t.like(msgs[1], { kind: 'req-pages', start: 5 * 2 ** 32, length: 3 * PS, block: 'toy.ram' });
  t.is((msgs[1] as { idstr?: string }).idstr, undefined);
  t.like(msgs[2], { kind: 'req-pages', idstr: 'other', block: 'other' });
  t.like(msgs[3], { kind: 'shut', status: 0 });
});

test('RequestEncoder writes a block name with bytes ≥ 0x80 as the protocol does (latin-1: one byte per char)', (t) => {
  const name = 'ram-\u00e9\u00ff'; // as decoded from a MEM_SIZE record naming bytes 72 61 6d 2d e9 ff
  const enc = new RequestEncoder();
  enc.add(name, 0, PS);
  const ours = Buffer.from(enc.buf.subarray(0, enc.length));
  t.deepEqual(ours, Buffer.from(encodeReturnPathReqPages(0, PS, name)));
  t.deepEqual([...ours.subarray(ours.length - 6)], [0x72, 0x61, 0x6d, 0x2d, 0xe9, 0xff]);
  t.like(new ReturnPathDecoder().push(ours)[0], { kind: 'req-pages', idstr: name });
});

// ---------------------------------------------------------------------------------------------------------
// shared counters

test('SharedStats.addPresent reports completion exactly once, also across views of the same buffer', (t) => {
  const a = new SharedStats();
  const b = new SharedStats(a.buffer);
  let completions = 0;
  for (let i = 0; i < 99; i++) if ((i % 2 ? a : b).addPresent(1, 100)) completions++;
  t.is(completions, 0);
  t.is(a.present, 99);
  t.true(b.addPresent(5, 100)); // crossing the total completes
  t.false(a.addPresent(1, 100)); // beyond the total: not again
  t.false(a.addPresent(0, 100));
});

test('latency histogram: buckets are monotonic and percentiles land within 3% of the value', (t) => {
  let last = -1;
  for (let us = 0; us < 1e7; us = us * 1.01 + 1) {
    const b = latencyBucket(us);
    t.true(b >= last);
    last = b;
  }
  const s = new SharedStats();
  for (let i = 1; i <= 1000; i++) s.recordLatency(i); // 1..1000 µs
  const p50 = s.percentile(50), p99 = s.percentile(99);
  t.true(Math.abs(p50 - 500) / 500 < 0.03, `p50 ${p50}`);
  t.true(Math.abs(p99 - 990) / 990 < 0.03, `p99 ${p99}`);
  t.is(s.percentile(100), 1000);
  t.true(bucketValue(latencyBucket(5000)) <= 5000);
  const m = snapshot(s, { pagesTotal: 10, pagesPresent: 10, downtimeMs: 1.5, stateDeliveredAt: null, totalTimeMs: 1000, pageSize: PS, mode: 'missing', transport: 'tcp', ok: true });
  t.is(m.faultLatencyUs.max, 1000);
  t.regex(formatSummary(m), /p50 \d/);
});

// ---------------------------------------------------------------------------------------------------------
// --listen

test('parseListenSpec: tcp (port 0 allowed, IPv6), unix, exec; clear errors otherwise', (t) => {
  t.deepEqual(parseListenSpec('tcp:127.0.0.1:0'), { kind: 'tcp', host: '127.0.0.1', port: 0 });
  t.deepEqual(parseListenSpec('tcp:[::1]:4444'), { kind: 'tcp', host: '::1', port: 4444 });
  t.deepEqual(parseListenSpec('tcp::4444'), { kind: 'tcp', host: '0.0.0.0', port: 4444 });
  t.deepEqual(parseListenSpec('unix:/tmp/x.sock'), { kind: 'unix', path: '/tmp/x.sock' });
  t.deepEqual(parseListenSpec('exec:ssh host cat'), { kind: 'exec', command: 'ssh host cat' });
  for (const bad of ['tcp:host', 'tcp:h:99999', 'udp:1:2', 'unix:', 'exec: ', '']) {
    const e = t.throws(() => parseListenSpec(bad), { instanceOf: DaemonError }, bad);
    t.is(e?.code, 'BAD_OPTION');
    t.regex(e?.message ?? '', /expected tcp:HOST:PORT/);
  }
});

// ---------------------------------------------------------------------------------------------------------
// control handshake over a real socketpair

const writeFn = libc.func('intptr_t write(int fd, const void *buf, size_t n)');
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)');
const isOpen = (fd: number): boolean => (fcntlFn(fd, 1 /* F_GETFD */, 0) as number) >= 0;

test('recvHello: a bare JSON line with two fds (docs/migration-protocol.md), split over two writes', (t) => {
  const [a, b] = unixSocketPair('stream');
  const e1 = createEventfd(), e2 = createEventfd();
  const line = Buffer.from(JSON.stringify({ version: 1, mode: 'missing', regions: [region('toy.ram', 0x1000000, PS)] }) + '\n');
  sendRaw(a, [e1, e2], line.subarray(0, 10));
  writeFn(a, line.subarray(10), line.length - 10);
  const m = recvHello(b, 2000);
  t.is(m.fds.length, 2);
  t.true(m.fds.every(isOpen));
  t.is((m.payload as { mode: string }).mode, 'missing');
  for (const f of [...m.fds, a, b, e1, e2]) closeFd(f);
});

test('recvHello: Firecracker array without newline, and fdpass.ts PCFD frames', (t) => {
  const [a, b] = unixSocketPair('stream');
  const e1 = createEventfd();
  sendRaw(a, [e1], Buffer.from(JSON.stringify([{ base_host_virt_addr: 0x1000000, size: PS, offset: 0, page_size: PS }])));
  const m = recvHello(b, 2000);
  t.true(Array.isArray(m.payload));
  t.is(m.fds.length, 1);
  sendFds(a, [e1], { version: 1, regions: [region('x', 0x2000000, PS)] });
  const m2 = recvHello(b, 2000);
  t.is(m2.fds.length, 1);
  t.is((m2.payload as { regions: unknown[] }).regions.length, 1);
  for (const f of [...m.fds, ...m2.fds, a, b, e1]) closeFd(f);
});

test('recvHello: garbage, a closed peer and silence give clear errors and close received fds', (t) => {
  {
    const [a, b] = unixSocketPair('stream');
    const e1 = createEventfd();
    sendRaw(a, [e1, e1], Buffer.from('GET / HTTP/1.0\r\n'));
    const before = fs.readdirSync('/proc/self/fd').length;
    const err = t.throws(() => recvHello(b, 1000), { instanceOf: DaemonError });
    t.is(err?.code, 'BAD_HELLO');
    t.regex(err?.message ?? '', /not JSON/);
    t.is(fs.readdirSync('/proc/self/fd').length, before, 'the two fds that came with the garbage were closed');
    closeFd(a); closeFd(b); closeFd(e1);
  }
  {
    const [a, b] = unixSocketPair('stream');
    sendRaw(a, [], Buffer.from('{"version":1,'));
    closeFd(a);
    t.regex(t.throws(() => recvHello(b, 1000))?.message ?? '', /closed after 13 bytes/);
    closeFd(b);
  }
  {
    const [a, b] = unixSocketPair('stream');
    const t0 = Date.now();
    const err = t.throws(() => recvHello(b, 200), { instanceOf: DaemonError });
    t.is(err?.code, 'HANDSHAKE_TIMEOUT');
    t.true(Date.now() - t0 < 2000);
    closeFd(a); closeFd(b);
  }
});

test('ControlClient: a hello without any fd is refused with NO_FDS and says what was expected', (t) => {
  const [a, b] = unixSocketPair('stream');
  sendRaw(a, [], Buffer.from(JSON.stringify({ version: 1, regions: [region('toy.ram', 0x1000000, PS)] }) + '\n'));
  const m = recvHello(b, 1000);
  t.is(m.fds.length, 0);
  const err = t.throws(() => new ControlClient(b, m), { instanceOf: DaemonError });
  t.is(err?.code, 'NO_FDS');
  t.regex(err?.message ?? '', /userfaultfd/);
  closeFd(a); closeFd(b);
});

test('ControlClient: minor mode with only the uffd is refused (the memfd is needed)', (t) => {
  const [a, b] = unixSocketPair('stream');
  const e1 = createEventfd();
  sendRaw(a, [e1], Buffer.from(JSON.stringify({ version: 1, mode: 'minor', regions: [region('toy.ram', 0x1000000, PS)] }) + '\n'));
  const m = recvHello(b, 1000);
  const err = t.throws(() => new ControlClient(b, m), { instanceOf: DaemonError });
  t.is(err?.code, 'NO_FDS');
  t.regex(err?.message ?? '', /memfd/);
  for (const f of [...m.fds, a, b, e1]) closeFd(f);
});

test('workerError: a ProtocolError from either worker is a PROTOCOL failure naming the source; others keep their code', (t) => {
  const p = workerError(new ProtocolError('BAD_OFFSET', 'offset 4096 is outside block "a"', { offset: 9, context: 'urgent channel ram record', expected: 'x' }));
  t.like(p, { type: 'error', code: 'PROTOCOL' });
  t.regex((p as { message: string }).message, /^bad migration stream from the source: offset 4096 is outside/);
  t.like(workerError(new DaemonError('SOURCE_LOST', 'gone')), { type: 'error', code: 'SOURCE_LOST', message: 'gone' });
  t.like(workerError(new Error('boom')), { type: 'error', code: 'INTERNAL', message: 'boom' });
});
