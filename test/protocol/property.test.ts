import test from 'ava';
import fc from 'fast-check';
import {
  ProtocolError,
  RamRecordDecoder,
  RamRecordEncoder,
  ReturnPathDecoder,
  StreamDecoder,
  UmemRequestDecoder,
  encodeReturnPathPong,
  encodeReturnPathRecvBitmap,
  encodeReturnPathReqPages,
  encodeUmemRequests,
} from '../../src/protocol/index.js';
import { BLOCKS, concat, decodeInPieces, normalize, sampleStream } from './codec-helpers.js';

const { bytes: SAMPLE } = sampleStream(3);
const ONE_SHOT = normalize(decodeInPieces(new StreamDecoder(), SAMPLE, []));

test('stream decoding gives the same records for any chunking', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: SAMPLE.length - 1 }), { maxLength: 40 }), (cuts) => {
      const recs = normalize(decodeInPieces(new StreamDecoder(), SAMPLE, cuts));
      t.deepEqual(recs, ONE_SHOT);
    }),
    { numRuns: 60 },
  );
  t.true(ONE_SHOT.length > 40);
});

test('stream decoding one byte at a time gives the same records', (t) => {
  const cuts = Array.from({ length: SAMPLE.length - 1 }, (_, i) => i + 1);
  t.deepEqual(normalize(decodeInPieces(new StreamDecoder(), SAMPLE, cuts)), ONE_SHOT);
});

type Op = { kind: 'zero' | 'page' | 'xbzrle' | 'compress'; block: number; page: number; seed: number };
const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('zero', 'page', 'xbzrle', 'compress'),
  block: fc.integer({ min: 0, max: BLOCKS.length - 1 }),
  page: fc.integer({ min: 0, max: 3 }),
  seed: fc.integer({ min: 0, max: 255 }),
});

function encodeOps(ops: Op[]): Buffer {
  const enc = new RamRecordEncoder();
  const parts: Uint8Array[] = [enc.memSize(BLOCKS)];
  for (const op of ops) {
    const b = BLOCKS[op.block].idstr;
    const off = op.page * 4096;
    const page = Buffer.alloc(4096, op.seed);
    page[op.seed * 7] = op.seed ^ 0x5a;
    if (op.kind === 'zero') parts.push(enc.zero(b, off));
    else if (op.kind === 'page') parts.push(...enc.page(b, off, page));
    else if (op.kind === 'compress') parts.push(...enc.compressPage(b, off, page));
    else parts.push(...enc.xbzrlePage(b, off, Buffer.alloc(4096), page));
  }
  parts.push(enc.eos());
  return concat(parts);
}

test('bare ram records: random record sequences round-trip under random chunking', (t) => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 12 }), (ops, rawCuts) => {
      const bytes = encodeOps(ops);
      const whole = decodeInPieces(new RamRecordDecoder(), bytes, []);
      const cuts = rawCuts.map((c) => 1 + (c % (bytes.length - 1)));
      t.deepEqual(normalize(decodeInPieces(new RamRecordDecoder(), bytes, cuts)), normalize(whole));
      const enc = new RamRecordEncoder();
      t.true(concat(whole.flatMap((r) => enc.encode(r))).equals(bytes));
    }),
    { numRuns: 60 },
  );
});

/** Runs a decoder; anything thrown must be a ProtocolError. Returns false if it threw something else. */
function onlyProtocolErrors(make: () => { push(c: Uint8Array): unknown[]; end(): unknown[] }, data: Uint8Array, cuts: number[] = []): boolean {
  try {
    decodeInPieces(make(), data, cuts);
    return true;
  } catch (e) {
    return e instanceof ProtocolError;
  }
}

const DECODERS: Record<string, () => { push(c: Uint8Array): unknown[]; end(): unknown[] }> = {
  stream: () => new StreamDecoder(),
  ram: () => new RamRecordDecoder(),
  returnPath: () => new ReturnPathDecoder(),
  umem: () => new UmemRequestDecoder(),
};

test('random input never throws anything but ProtocolError, for every decoder', (t) => {
  const header = Buffer.from('5145564d00000003', 'hex');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (raw, withHeader) => {
      for (const [name, make] of Object.entries(DECODERS)) {
        const data = name === 'stream' && withHeader ? concat([header, raw]) : raw;
        t.true(onlyProtocolErrors(make, data), name);
      }
    }),
    { numRuns: 300 },
  );
});

test('mutated valid streams (bit flips, truncation, splices) end in records or ProtocolError, quickly', (t) => {
  const rp = concat([encodeReturnPathPong(1), encodeReturnPathReqPages(0, 4096, 'pc.ram'), encodeReturnPathReqPages(8192, 4096), ...encodeReturnPathRecvBitmap('pc.ram', new Uint8Array(16))]);
  const umem = concat([...encodeUmemRequests('ON_DEMAND', 'pc.ram', [1, 2, 3]), ...encodeUmemRequests('ON_DEMAND', 'pc.ram', [4])]);
  const ram = encodeOps([{ kind: 'page', block: 0, page: 1, seed: 3 }, { kind: 'xbzrle', block: 0, page: 2, seed: 9 }, { kind: 'compress', block: 1, page: 0, seed: 1 }]);
  const bases: [string, Buffer][] = [['stream', SAMPLE], ['returnPath', rp], ['umem', umem], ['ram', ram]];
  const mutation = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }), n: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('splice' as const), at: fc.nat(), from: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
    fc.record({ op: fc.constant('byte' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
  );
  const started = Date.now();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: bases.length - 1 }), mutation, fc.array(fc.nat(), { maxLength: 4 }), (which, m, rawCuts) => {
      const [name, base] = bases[which];
      let data = Buffer.from(base);
      const at = m.at % data.length;
      if (m.op === 'flip') for (let k = 0; k < m.n && at + k < data.length; k++) data[at + k] ^= 1 << m.bit;
      else if (m.op === 'byte') data[at] = m.v;
      else if (m.op === 'truncate') data = data.subarray(0, at);
      else {
        const from = m.from % data.length;
        data = Buffer.concat([data.subarray(0, at), data.subarray(from, from + m.len), data.subarray(at)]);
      }
      const cuts = rawCuts.map((c) => 1 + (c % Math.max(1, data.length - 1)));
      t.true(onlyProtocolErrors(DECODERS[name], data, cuts), `${name} ${JSON.stringify(m)}`);
    }),
    { numRuns: 1500 },
  );
  t.true(Date.now() - started < 60_000, 'mutation runs finished in time');
});

test('a device section without a footer is bounded by maxDeviceSectionBytes (no unbounded buffering)', (t) => {
  const head = Buffer.concat([Buffer.from('5145564d00000003', 'hex'), Buffer.from([4, 0, 0, 0, 9, 3, 0x61, 0x62, 0x63, 0, 0, 0, 0, 0, 0, 0, 1])]);
  const dec = new StreamDecoder({ maxDeviceSectionBytes: 1 << 20 });
  dec.push(head);
  const chunk = Buffer.alloc(64 * 1024, 0x7e);
  const e = t.throws(() => {
    for (let i = 0; i < 64; i++) dec.push(chunk);
  }, { instanceOf: ProtocolError });
  t.is(e?.code, 'DEVICE_SECTION_END');
});
