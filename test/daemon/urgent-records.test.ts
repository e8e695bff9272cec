// The fault worker's allocation-free urgent-channel parser: the same records the protocol encoder writes,
// split anywhere; hostile records (unknown block, out of range, unaligned, CONTINUE first, other flags) cut off
// with a ProtocolError before anything could be placed.
import test from 'ava';
import { RamRecordEncoder, ProtocolError } from '../../src/protocol/index.js';
import { WireMap } from '../../src/daemon/regions.js';
import { UrgentRecordParser, URGENT_EOS, URGENT_PAGE, URGENT_ZERO } from '../../src/daemon/urgent-records.js';

const PS = 4096;
const wire = (): WireMap => new WireMap([
  { name: 'a.ram', base: 0x10000000, size: 16 * PS, pageSize: PS },
  { name: 'b', base: 0x20000000, size: 8 * PS, pageSize: PS },
], PS);

function encode(records: Array<[string, number, Uint8Array | null]>, eos = true): Buffer {
  const enc = new RamRecordEncoder({ targetPageSize: PS });
  const buf = Buffer.alloc(records.length * (PS + 300) + 8);
  let pos = 0;
  for (const [block, off, data] of records) pos = enc.recordInto(buf, pos, block, off, data);
  if (eos) { buf.writeUInt32BE(0, pos); buf.writeUInt32BE(0x10, pos + 4); pos += 8; }
  return buf.subarray(0, pos);
}

function parseAll(p: UrgentRecordParser, b: Buffer, split: number): Array<[number, number, number]> {
  // Feed in two pieces the way the worker does (incomplete record kept, then completed).
  const out: Array<[number, number, number]> = [];
  const buf = Buffer.alloc(b.length);
  let have = 0;
  for (const piece of [b.subarray(0, split), b.subarray(split)]) {
    piece.copy(buf, have);
    const end = have + piece.length;
    let pos = 0;
    for (;;) {
      const q = p.next(buf, pos, end);
      if (q < 0) break;
      out.push([p.kind, p.kind === URGENT_EOS ? -1 : p.page, p.kind === URGENT_PAGE ? buf[p.payload] : p.kind === URGENT_ZERO ? p.fill : -1]);
      pos = q;
    }
    buf.copyWithin(0, pos, end);
    have = end - pos;
  }
  return out;
}

test('PAGE / ZERO / CONTINUE / EOS records parse to device pages, split anywhere', (t) => {
  const page = Buffer.alloc(PS, 7);
  const b = encode([['a.ram', 3 * PS, page], ['a.ram', 4 * PS, null], ['b', 2 * PS, page], ['b', 7 * PS, page]]);
  const expected = [[URGENT_PAGE, 3, 7], [URGENT_ZERO, 4, 0], [URGENT_PAGE, 16 + 2, 7], [URGENT_PAGE, 16 + 7, 7], [URGENT_EOS, -1, -1]];
  for (const split of [0, 1, 7, 8, 9, 14, 100, PS + 10, b.length - 3, b.length]) {
    t.deepEqual(parseAll(new UrgentRecordParser(wire()), b, split), expected, `split at ${split}`);
  }
});

const hostile: Array<[string, () => Buffer, string]> = [
  ['unknown block', () => encode([['nope', 0, Buffer.alloc(PS)]]), 'UNKNOWN_BLOCK'],
  ['offset past the block', () => encode([['b', 8 * PS, Buffer.alloc(PS)]]), 'BAD_OFFSET'],
  ['huge offset', () => { const x = encode([['b', 0, Buffer.alloc(PS)]]); x.writeUInt32BE(0x1fffff, 0); return x; }, 'BAD_OFFSET'],
  ['offset above 2^53', () => { const x = encode([['b', 0, Buffer.alloc(PS)]]); x.writeUInt32BE(0xffffffff, 0); return x; }, 'BAD_OFFSET'],
  ['CONTINUE before any block', () => { const x = Buffer.alloc(8 + PS); x.writeUInt32BE(0x8 | 0x20, 4); return x; }, 'CONTINUE_WITHOUT_BLOCK'],
  ['empty block name', () => { const x = Buffer.alloc(9 + PS); x.writeUInt32BE(0x8, 4); return x; }, 'BAD_IDSTR'],
  ['XBZRLE on the urgent channel', () => { const x = Buffer.alloc(16); x.writeUInt32BE(0x40, 4); return x; }, 'BAD_RECORD'],
  ['MEM_SIZE on the urgent channel', () => { const x = Buffer.alloc(16); x.writeUInt32BE(0x4, 4); return x; }, 'BAD_RECORD'],
  ['EOS with an address', () => { const x = Buffer.alloc(16); x.writeUInt32BE(1, 0); x.writeUInt32BE(0x10, 4); return x; }, 'BAD_RECORD'],
  ['garbage', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'BAD_RECORD'],
];
for (const [name, make, code] of hostile) {
  test(`hostile: ${name} → ${code}`, (t) => {
    const p = new UrgentRecordParser(wire());
    const b = make();
    const e = t.throws(() => { let pos = 0; for (;;) { const q = p.next(b, pos, b.length); if (q < 0) break; pos = q; } }, { instanceOf: ProtocolError });
    t.is(String((e as ProtocolError).code), code, e?.message);
  });
}

test('an incomplete record is not consumed and changes nothing', (t) => {
  const p = new UrgentRecordParser(wire());
  const b = encode([['a.ram', 0, Buffer.alloc(PS, 1)]], false);
  for (let n = 0; n < b.length; n++) t.is(p.next(b, 0, n), -1);
  t.is(p.next(b, 0, b.length), b.length);
  t.is(p.page, 0);
  // The block was named: a CONTINUE record now refers to it.
  const c = Buffer.alloc(8 + PS); c.writeUInt32BE(PS | 0x8 | 0x20, 4);
  t.is(p.next(c, 0, c.length), c.length);
  t.is(p.page, 1);
});
