// PageSink: wire records → validated, coalesced placements. A fake umem-compat device records each call, so
// these tests check what would reach the kernel: runs, zero handling, and that a bad record never does.
import test from 'ava';
import { PageSink } from '../../src/daemon/page-sink.js';
import { WireMap } from '../../src/daemon/regions.js';
import { SharedStats, F } from '../../src/daemon/stats.js';
import { ProtocolError, type RamRecord } from '../../src/protocol/index.js';
import { PageStateMap, type UmemDevice } from '../../src/umem-compat/index.js';
import { viewAt } from '../../src/uffd/memory.js';

const PS = 4096;
type Call = { op: 'copy' | 'zero'; first: number; count: number; bytes?: number[] };

function fakeDevice(pageCount: number, calls: Call[], failWith = 0, pageState = new PageStateMap(pageCount)): UmemDevice {
  return {
    pageSize: PS, pageCount, stats: { eagain: 0 }, pageState,
    placeFromAddressRaw(first: number, count: number, src: number): number {
      if (failWith) return -failWith;
      // Record the first byte of each page as the kernel would read it from the staging address.
      const v = viewAt(src, count * PS);
      calls.push({ op: 'copy', first, count, bytes: Array.from({ length: count }, (_, i) => v[i * PS]) });
      return count;
    },
    placeZeroRaw(first: number, count: number): number {
      if (failWith) return -failWith;
      calls.push({ op: 'zero', first, count });
      return count;
    },
  } as unknown as UmemDevice;
}

const wire = () => new WireMap([
  { name: 'a', base: 0x100000, size: 64 * PS, offset: 0, pageSize: PS },
  { name: 'b', base: 0x900000, size: 16 * PS, offset: 0, pageSize: PS },
], PS);
const page = (block: string, n: number, fill: number): RamRecord =>
  ({ kind: 'page', offset: 0, block, blockOffset: n * PS, continued: false, data: new Uint8Array(PS).fill(fill) });
const zero = (block: string, n: number, fill = 0): RamRecord =>
  ({ kind: 'zero', offset: 0, block, blockOffset: n * PS, continued: false, fill });

function sink(calls: Call[], opts: { stagingPages?: number; total?: number; fail?: number; onAll?: () => void } = {}) {
  const stats = new SharedStats();
  const s = new PageSink(fakeDevice(opts.total ?? 80, calls, opts.fail), wire(), stats, 'background', opts.onAll ?? (() => {}), (opts.stagingPages ?? 256) * PS);
  return { s, stats };
}

test('contiguous pages become one placement; a gap, another block or a full staging buffer start a new one', (t) => {
  const calls: Call[] = [];
  const { s, stats } = sink(calls, { stagingPages: 4 });
  for (const r of [page('a', 0, 1), page('a', 1, 2), page('a', 2, 3), page('a', 5, 4), page('b', 0, 5), page('b', 1, 6),
    page('b', 2, 7), page('b', 3, 8), page('b', 4, 9)]) t.true(s.add(r));
  s.flush();
  t.deepEqual(calls.map((c) => [c.first, c.count]), [[0, 3], [5, 1], [64, 4], [68, 1]]);
  t.deepEqual(calls[0].bytes, [1, 2, 3], 'page contents staged in order');
  t.deepEqual(calls[2].bytes, [5, 6, 7, 8]);
  t.is(stats.v[F.pagesBackground], 9);
  t.is(stats.present, 9);
});

test('zero pages: a long stretch uses UFFDIO_ZEROPAGE, an isolated one rides along in the data run', (t) => {
  const calls: Call[] = [];
  const { s, stats } = sink(calls);
  const recs: RamRecord[] = [];
  for (let i = 0; i < 10; i++) recs.push(zero('a', i)); // leading zeros → zero run
  recs.push(page('a', 10, 1), zero('a', 11), page('a', 12, 2)); // isolated zero merged
  for (let i = 13; i < 30; i++) recs.push(zero('a', i)); // long stretch after data → back to zero run
  recs.push(page('a', 30, 3));
  for (const r of recs) s.add(r);
  s.flush();
  t.deepEqual(calls.map((c) => [c.op, c.first, c.count]), [
    ['zero', 0, 10], ['copy', 10, 3], ['zero', 13, 17], ['copy', 30, 1],
  ]);
  t.deepEqual(calls[1].bytes, [1, 0, 2], 'merged zero page is zero-filled in staging');
  t.is(stats.v[F.zeroBackground], 10 + 1 + 17);
  t.is(stats.present, 31);
});

test('a ZERO record with a non-zero fill byte (pre-1.5 senders) is placed as a filled page', (t) => {
  const calls: Call[] = [];
  const { s } = sink(calls);
  s.add(zero('a', 3, 0x5a));
  s.flush();
  t.deepEqual(calls, [{ op: 'copy', first: 3, count: 1, bytes: [0x5a] }]);
});

test('an invalid record throws before anything reaches the device (and earlier staged pages are not lost)', (t) => {
  const calls: Call[] = [];
  const { s } = sink(calls);
  s.add(page('a', 0, 1));
  for (const bad of [page('a', 64, 9), page('zz', 0, 9), { ...page('a', 1, 9), blockOffset: PS + 8 } as RamRecord,
    { ...page('a', 1, 9), data: new Uint8Array(100) } as RamRecord, { kind: 'xbzrle', offset: 7, block: 'a', blockOffset: 0, continued: false, data: new Uint8Array(4) } as RamRecord]) {
    t.throws(() => s.add(bad), { instanceOf: ProtocolError });
  }
  t.deepEqual(calls, [], 'nothing placed by a rejected record');
  s.flush();
  t.deepEqual(calls.map((c) => [c.first, c.count]), [[0, 1]]);
});

test('records that carry no page are left to the caller; completion fires once when the last page lands', (t) => {
  const calls: Call[] = [];
  let all = 0;
  const { s } = sink(calls, { total: 3, onAll: () => all++ });
  t.false(s.add({ kind: 'eos', offset: 0 }));
  s.add(page('a', 0, 1)); s.add(page('a', 1, 1)); s.flush();
  t.is(all, 0);
  s.add(page('a', 2, 1)); s.flush();
  t.is(all, 1);
});

test('a failed placement is a DaemonError; ESRCH means the destination process is gone', (t) => {
  const calls: Call[] = [];
  const { s } = sink(calls, { fail: 3 });
  s.add(page('a', 0, 1));
  const e = t.throws(() => s.flush());
  t.is((e as { code?: string }).code, 'PROCESS_DIED');
  const { s: s2 } = sink(calls, { fail: 22 });
  s2.add(page('a', 0, 1));
  t.is((t.throws(() => s2.flush()) as { code?: string }).code, 'PLACE_FAILED');
  const { s: s3 } = sink(calls, { fail: 3 });
  for (let n = 0; n < 12; n++) s3.add(zero('a', n));
  t.is((t.throws(() => s3.flush()) as { code?: string }).code, 'PROCESS_DIED', 'a zero run fails the same way');
});

test('background sink: pages the fault worker requested count as on demand when they arrive inline (exec:)', (t) => {
  const calls: Call[] = [];
  const state = new PageStateMap(80);
  for (const p of [2, 3, 10]) state.tryRequest(p);
  const stats = new SharedStats();
  const s = new PageSink(fakeDevice(80, calls, 0, state), wire(), stats, 'background', () => {});
  for (let n = 0; n < 6; n++) s.add(page('a', n, n + 1));
  s.add(page('a', 10, 9));
  s.flush();
  t.is(stats.v[F.pagesOnDemandInline], 3, 'pages 2, 3 and 10 were requested');
  t.is(stats.v[F.pagesBackground], 4, 'the others are background');
  const fault = new PageSink(fakeDevice(80, [], 0, state), wire(), stats, 'fault', () => {});
  fault.add(page('a', 20, 1));
  fault.flush();
  t.is(stats.v[F.pagesOnDemand], 1, 'the fault sink counts its own pages as on demand');
  t.is(stats.v[F.pagesOnDemandInline], 3, 'and never touches the stream worker\'s field');
});
