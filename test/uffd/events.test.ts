// Non-cooperative events (kernel uffd-unit-tests `events`): FORK, REMAP, REMOVE, UNMAP followed by a monitor
// in another process, plus in-memory decoding of uffd_msg and the eventfd/poll helpers.
import test from 'ava';
import fc from 'fast-check';
import { runInChild } from '../helpers/child.js';
import { testNeeding } from './support.js';
import {
  decodeUffdMessage, UffdEventReader, Userfaultfd, createEventfd, eventfdWrite, eventfdRead, closeFd, Poller, pollIn,
  UFFD_MSG_SIZE,
} from '../../src/uffd/index.js';

const monitor = new URL('./children/events-monitor.js', import.meta.url).href;

testNeeding('events fork / remap / remove / unmap followed by a monitor in another process',
  { features: ['EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE', 'EVENT_UNMAP'], reason: process.getuid?.() === 0 ? undefined : 'EVENT_FORK needs CAP_SYS_PTRACE (not root)' },
  async (t) => {
    const r = await runInChild(monitor, 'nonCooperativeEvents', undefined, { timeoutMs: 30000 });
    t.true(r.ok, r.summary);
    const res = r.result as { skipped?: string; code: number; out: string; err: string; events: { fd: string; ev: { kind: string } }[] };
    if (res.skipped) { t.log(`skipped: ${res.skipped}`); t.pass(); return; }
    t.is(res.code, 0, `target output:\n${res.out}\n${res.err}`);
    const checks = [...res.out.matchAll(/CHECK (\S+) (\d+) (\d+)/g)];
    t.is(checks.length, 6, res.out);
    for (const [, name, got, want] of checks) t.is(got, want, name);
    const kinds = res.events.map((e) => `${e.fd}:${e.ev.kind}`);
    t.deepEqual(kinds, [
      'parent:pagefault', 'parent:pagefault', 'parent:fork', 'child:pagefault', 'parent:remap', 'parent:unmap' /* old range, from mremap */, 'parent:pagefault',
      'parent:remove', 'parent:pagefault', 'parent:unmap',
    ]);
  });

test('decodeUffdMessage decodes every event kind from the packed 32-byte layout', (t) => {
  const b = Buffer.alloc(32);
  b[0] = 0x12; b.writeBigUInt64LE(5n, 8); b.writeBigUInt64LE(0x7f0000001000n, 16); b.writeUInt32LE(4242, 24);
  t.deepEqual(decodeUffdMessage(b), { kind: 'pagefault', address: 0x7f0000001000, flags: 5, write: true, wp: false, minor: true, threadId: 4242 });
  b.fill(0); b[0] = 0x13; b.writeUInt32LE(17, 8);
  t.deepEqual(decodeUffdMessage(b), { kind: 'fork', ufd: 17 });
  b.fill(0); b[0] = 0x14; b.writeBigUInt64LE(0x1000n, 8); b.writeBigUInt64LE(0x5000n, 16); b.writeBigUInt64LE(0x3000n, 24);
  t.deepEqual(decodeUffdMessage(b), { kind: 'remap', from: 0x1000, to: 0x5000, len: 0x3000 });
  b.fill(0); b[0] = 0x15; b.writeBigUInt64LE(0x1000n, 8); b.writeBigUInt64LE(0x3000n, 16);
  t.deepEqual(decodeUffdMessage(b), { kind: 'remove', start: 0x1000, end: 0x3000 });
  b[0] = 0x16;
  t.deepEqual(decodeUffdMessage(b), { kind: 'unmap', start: 0x1000, end: 0x3000 });
  b[0] = 0x99;
  t.deepEqual(decodeUffdMessage(b), { kind: 'unknown', event: 0x99 });
  t.throws(() => decodeUffdMessage(b.subarray(0, 31)), { instanceOf: RangeError });
});

test('decodeUffdMessage never throws on arbitrary 32-byte content', (t) => {
  fc.assert(fc.property(fc.uint8Array({ minLength: UFFD_MSG_SIZE, maxLength: UFFD_MSG_SIZE }), (bytes) => {
    const ev = decodeUffdMessage(bytes);
    return typeof ev.kind === 'string';
  }));
  t.pass();
});

test('UffdEventReader on a non-blocking uffd with nothing pending reads 0; bad capacity is refused', (t) => {
  const u = Userfaultfd.open({ nonBlocking: true });
  const r = new UffdEventReader(u.fd, 8);
  t.is(r.read(), 0);
  t.is(r.count, 0);
  t.throws(() => r.event(0), { instanceOf: RangeError });
  t.throws(() => new UffdEventReader(u.fd, 0), { instanceOf: RangeError });
  u.close();
  t.throws(() => r.read(), { message: /EBADF/ });
});

test('eventfd + Poller: readiness, counter, timeout', (t) => {
  const efd = createEventfd();
  const u = Userfaultfd.open({ nonBlocking: true });
  const p = new Poller([u.fd, efd]);
  t.is(p.wait(0), 0, 'nothing ready');
  eventfdWrite(efd, 2);
  eventfdWrite(efd);
  t.is(p.wait(100), 1);
  t.false(p.ready(0));
  t.true(p.ready(1));
  t.deepEqual(pollIn([u.fd, efd], 0), [efd]);
  t.is(eventfdRead(efd), 3);
  t.is(eventfdRead(efd), 0, 'non-blocking read of an empty eventfd');
  const t0 = Date.now();
  t.is(p.wait(30), 0);
  t.true(Date.now() - t0 >= 25, 'waited for the timeout');
  closeFd(efd); u.close();
});

test('a blocking uffd: read() still never waits (RWF_NOWAIT), readBlocking() waits until the wake signal interrupts it', async (t) => {
  const r = await runInChild(new URL('./children/wait-in-read.js', import.meta.url).href, 'waitInRead', undefined, { timeoutMs: 15000 });
  t.true(r.ok, r.summary);
  const res = r.result as { skipped?: string; nowaitMs: number; nowaitCount: number; interrupted?: { n: number; ms: number }; signal: number | null };
  if (res.skipped) { t.log(`skipped: ${res.skipped}`); t.pass(); return; }
  t.is(res.nowaitCount, 0);
  t.true(res.nowaitMs < 100, `read() took ${res.nowaitMs} ms`);
  t.is(res.interrupted?.n, 0, 'interrupted wait returns 0 messages');
  t.true((res.interrupted?.ms ?? 0) >= 100, `the wait lasted until the signal (${res.interrupted?.ms} ms)`);
});
