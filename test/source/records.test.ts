// The source's page-record writer (src/source/records.ts) on top of the protocol's allocation-free
// RamRecordEncoder.recordInto: what it writes decodes back to the same pages with QEMU's CONTINUE rule.
import test from 'ava';
import { RamRecordDecoder, RamRecordEncoder, ProtocolError } from '../../src/protocol/index.js';
import { PageMap } from '../../src/source/page-map.js';
import { PageReader } from '../../src/source/page-reader.js';
import { ChannelState, maxRecordBytes, writePageRecord, type RecordCounters } from '../../src/source/records.js';
import { heapRegion, PAGE } from './helpers/regions.js';

test('page records from two blocks decode back to the same bytes, ZERO for all-zero pages, CONTINUE within a block', (t) => {
  const a = heapRegion('a.ram', 4, [2]);
  const b = heapRegion('bee.ram', 3);
  const map = new PageMap([a, b], PAGE);
  const reader = new PageReader(map);
  const chan = new ChannelState(PAGE);
  const counters: RecordCounters = { pages: 0, zero: 0, bytes: 0 };
  const buf = Buffer.alloc(7 * maxRecordBytes(PAGE));
  let pos = 0;
  for (const page of [0, 1, 2, 3, 4, 5, 6, 0]) pos = writePageRecord(buf, pos, chan, map, reader, map.blockOfPage(page), page, counters);
  t.is(counters.pages, 8);
  t.is(counters.zero, 1);
  const recs = new RamRecordDecoder({ targetPageSize: PAGE }).push(buf.subarray(0, pos));
  t.deepEqual(recs.map((r) => `${r.kind}:${'block' in r ? r.block : ''}:${'blockOffset' in r ? r.blockOffset / PAGE : ''}:${'continued' in r ? r.continued : ''}`), [
    'page:a.ram:0:false', 'page:a.ram:1:true', 'zero:a.ram:2:true', 'page:a.ram:3:true',
    'page:bee.ram:0:false', 'page:bee.ram:1:true', 'page:bee.ram:2:true', 'page:a.ram:0:false',
  ]);
  for (const r of recs) {
    if (r.kind !== 'page') continue;
    const src = r.block === 'a.ram' ? a.bytes : b.bytes;
    t.true(Buffer.from(r.data).equals(src.subarray(r.blockOffset, r.blockOffset + PAGE)), `${r.block}@${r.blockOffset}`);
  }
  // exact size: 8-byte header (+ counted name when not CONTINUE) + page or 1 zero byte
  t.is(pos, 8 * 8 + (1 + 5) + (1 + 7) + (1 + 5) + 7 * PAGE + 1);
});

test('recordInto refuses bad offsets, unknown blocks and too little room, writing nothing', (t) => {
  const enc = new RamRecordEncoder({ targetPageSize: PAGE });
  enc.memSize([{ idstr: 'x', usedLength: 2 * PAGE }]);
  const page = new Uint8Array(PAGE).fill(7);
  const out = Buffer.alloc(2 * PAGE);
  t.throws(() => enc.recordInto(out, 0, 'x', 100, page), { instanceOf: ProtocolError });
  t.throws(() => enc.recordInto(out, 0, 'x', 2 * PAGE, page), { instanceOf: ProtocolError });
  t.throws(() => enc.recordInto(out, 0, 'nope', 0, page), { instanceOf: ProtocolError });
  t.throws(() => enc.recordInto(out, out.length - 100, 'x', 0, page), { instanceOf: ProtocolError });
  t.throws(() => enc.recordInto(out, 0, 'x', 0, page, 1), { instanceOf: ProtocolError }, 'source shorter than a page');
  t.true(out.every((v) => v === 0));
  const end = enc.recordInto(out, 0, 'x', PAGE, page);
  t.is(end, 8 + 2 + PAGE);
  const [rec] = new RamRecordDecoder({ targetPageSize: PAGE }).push(out.subarray(0, end));
  t.is(rec.kind, 'page');
  t.is((rec as { blockOffset: number }).blockOffset, PAGE);
});
