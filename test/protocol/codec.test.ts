import test from 'ava';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import {
  ProtocolError,
  RamImage,
  RamRecordDecoder,
  RamRecordEncoder,
  ReturnPathDecoder,
  StreamDecoder,
  StreamEncoder,
  UmemRequestDecoder,
  UmemRequestEncoder,
  encodeReturnPath,
  encodeReturnPathPong,
  encodeReturnPathRecvBitmap,
  encodeReturnPathReqPages,
  encodeReturnPathResumeAck,
  encodeReturnPathShut,
  encodeReturnPathSwitchoverAck,
  encodeUmemRequest,
  encodeUmemRequests,
  xbzrleDecode,
  xbzrleEncode,
  type DecodedRecord,
  type ProtocolErrorCode,
  type RamRecord,
} from '../../src/protocol/index.js';
import { BLOCKS, concat, normalize, sampleStream } from './codec-helpers.js';

function decodeRam(bytes: Uint8Array, opts = {}): RamRecord[] {
  const d = new RamRecordDecoder({ blocks: BLOCKS, ...opts });
  return [...d.push(bytes), ...d.end()];
}
function decodeStream(bytes: Uint8Array, opts = {}): DecodedRecord[] {
  const d = new StreamDecoder(opts);
  return [...d.push(bytes), ...d.end()];
}
function expectCode(t: import('ava').ExecutionContext, fn: () => unknown, code: ProtocolErrorCode, offset?: number): void {
  const e = t.throws(fn, { instanceOf: ProtocolError });
  t.is(e?.code, code, e?.message);
  if (offset !== undefined) t.is(e?.offset, offset, e?.message);
  t.truthy(e?.context);
  t.truthy(e?.expected);
}

test('ram records: every kind round-trips through encoder and decoder', (t) => {
  const enc = new RamRecordEncoder();
  const page = randomBytes(4096);
  const newer = Buffer.from(page);
  newer.fill(7, 10, 30);
  const parts = [
    enc.memSize(BLOCKS),
    enc.zero('pc.ram', 0),
    ...enc.page('pc.ram', 4096, page),
    ...enc.xbzrlePage('pc.ram', 4096, page, newer),
    ...enc.compressPage('pc.bios', 8192, page),
    enc.zero('pc.bios', 0, 0x55),
    enc.multifdFlush(),
    enc.eos(),
  ];
  const recs = decodeRam(concat(parts));
  t.deepEqual(recs.map((r) => r.kind), ['mem-size', 'zero', 'page', 'xbzrle', 'compressed-page', 'zero', 'multifd-flush', 'eos']);
  t.deepEqual((recs[0] as any).blocks, BLOCKS);
  t.like(recs[1], { block: 'pc.ram', blockOffset: 0, continued: false, fill: 0 });
  t.like(recs[2], { block: 'pc.ram', blockOffset: 4096, continued: true });
  t.like(recs[4], { block: 'pc.bios', blockOffset: 8192, continued: false });
  t.true(Buffer.from((recs[4] as any).page).equals(page));
  t.like(recs[5], { block: 'pc.bios', continued: true, fill: 0x55 });
  // Re-encoding with a fresh encoder honours each record's CONTINUE flag, so the bytes are identical.
  const enc2 = new RamRecordEncoder();
  t.true(concat(recs.flatMap((r) => enc2.encode(r))).equals(concat(parts)));
});

test('page payloads are views of the pushed chunk, not copies', (t) => {
  const enc = new RamRecordEncoder();
  const page = randomBytes(4096);
  const bytes = concat([...enc.page('pc.ram', 0, page), enc.eos()]);
  const recs = decodeRam(bytes);
  const p = recs[0] as any;
  t.is(p.data.buffer, bytes.buffer);
  t.is(p.data.byteOffset, bytes.byteOffset + 8 + 1 + 6);
});

test('encoder passes the page view through without staging; pageInto writes in place', (t) => {
  const enc = new RamRecordEncoder();
  const page = randomBytes(4096);
  const v = enc.page('pc.ram', 0, page);
  t.is(v[1], page);
  const target = new Uint8Array(10000);
  const n = enc.pageInto(target, 100, 'pc.ram', 4096, page);
  t.is(n, 8 + 4096); // CONTINUE: same block as the previous record
  const recs = decodeRam(concat([v[0], v[1], target.subarray(100, 100 + n)]));
  t.true(Buffer.from((recs[1] as any).data).equals(page));
});

test('MEM_SIZE optional fields: page size (auto and explicit) and guest address', (t) => {
  const blocks = [{ idstr: 'pc.ram', usedLength: 0x400000, pageSize: 0x200000 }, { idstr: 'pc.rom', usedLength: 0x20000, pageSize: 0x200000 }];
  const enc = new RamRecordEncoder();
  const bytes = concat([enc.memSize(blocks), enc.eos()]);
  t.deepEqual((decodeRam(bytes, { blocks: undefined, postcopyAdvised: true })[0] as any).blocks, blocks);
  t.deepEqual((decodeRam(bytes, { blocks: undefined, memSizePageSize: () => true })[0] as any).blocks, blocks);
  // without the option the page size is read as the next block name → error, not garbage
  t.throws(() => decodeRam(bytes, { blocks: undefined, memSizePageSize: 'never' }), { instanceOf: ProtocolError });
  const g = new RamRecordEncoder({ memSizeGuestAddress: true, memSizePageSize: false });
  const gb = [{ idstr: 'pc.ram', usedLength: 0x1000, guestAddress: 0x100000 }];
  t.deepEqual((decodeRam(concat([g.memSize(gb), g.eos()]), { blocks: undefined, memSizeGuestAddress: true })[0] as any).blocks, gb);
});

test('CONTINUE state is per channel: each decoder starts without a last block', (t) => {
  const main = new RamRecordEncoder();
  const first = concat([main.zero('pc.ram', 0), main.zero('pc.ram', 4096)]);
  t.is(decodeRam(first).length, 2);
  // the second record alone (CONTINUE) on a fresh channel has no block to continue
  expectCode(t, () => decodeRam(first.subarray(8 + 1 + 6 + 1)), 'CONTINUE_WITHOUT_BLOCK', 0);
  // a sender that re-sends the idstr for the same block (7.2 preempt channel) is accepted
  const preempt = new RamRecordEncoder();
  const b = concat([preempt.zero('pc.ram', 0, 0, false), preempt.zero('pc.ram', 4096, 0, false)]);
  t.deepEqual(decodeRam(b).map((r) => (r as any).continued), [false, false]);
});

test('XBZRLE: encode/decode, unchanged page, overflow falls back', (t) => {
  const old = randomBytes(4096);
  const neu = Buffer.from(old);
  neu.fill(1, 0, 3);
  neu.fill(2, 4000, 4096);
  const e = xbzrleEncode(old, neu)!;
  const target = Buffer.from(old);
  xbzrleDecode(e, target);
  t.true(target.equals(neu));
  t.is(xbzrleEncode(old, Buffer.from(old))!.length, 0);
  t.is(xbzrleEncode(old, randomBytes(4096)), null);
  const enc = new RamRecordEncoder();
  t.deepEqual(enc.xbzrlePage('pc.ram', 0, old, Buffer.from(old)), []);
  const fallback = enc.xbzrlePage('pc.ram', 0, old, randomBytes(4096));
  t.is(decodeRam(concat(fallback))[0].kind, 'page');
});

test('XBZRLE decoder errors: run overflowing the page, zero literal run, bad encoding byte', (t) => {
  const mk = (payload: number[], encByte = 1): Buffer => {
    const hdr = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x40, 6, ...Buffer.from('pc.ram'), encByte, 0, payload.length]);
    return Buffer.concat([hdr, Buffer.from(payload)]);
  };
  // zero run 0x7f|0x80, 0x20 = 4095, then a 2-byte literal run overflows 4096
  expectCode(t, () => decodeRam(mk([0xff, 0x1f, 2, 1, 2])), 'XBZRLE_OVERFLOW');
  expectCode(t, () => decodeRam(mk([0, 0, 0])), 'BAD_XBZRLE');
  expectCode(t, () => decodeRam(mk([0, 1, 5], 2)), 'BAD_XBZRLE', 15);
  t.throws(() => xbzrleDecode(Uint8Array.of(0x80, 0x80, 1, 1), new Uint8Array(4096)), { instanceOf: ProtocolError });
});

test('COMPRESS_PAGE: zlib output must be exactly one page; length capped', (t) => {
  const enc = new RamRecordEncoder();
  const small = deflateSync(Buffer.alloc(4000));
  expectCode(t, () => decodeRam(concat(enc.compressedPage('pc.ram', 0, small))), 'BAD_COMPRESSED_PAGE');
  const big = deflateSync(Buffer.alloc(8192));
  expectCode(t, () => decodeRam(concat(new RamRecordEncoder().compressedPage('pc.ram', 0, big))), 'BAD_COMPRESSED_PAGE');
  const junk = Buffer.from('not zlib at all');
  expectCode(t, () => decodeRam(concat(new RamRecordEncoder().compressedPage('pc.ram', 0, junk))), 'BAD_COMPRESSED_PAGE');
  const long = Buffer.from([0, 0, 0, 0, 0, 0, 1, 0, 6, ...Buffer.from('pc.ram'), 0, 0, 0x20, 0]);
  expectCode(t, () => decodeRam(long), 'BAD_LENGTH', 15);
});

test('ram record errors: unknown block, beyond block, bad flags, HOOK, truncation', (t) => {
  const rec = (hi: number, lo: number, name?: string, extra: number[] = []): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(hi, 0);
    b.writeUInt32BE(lo, 4);
    return Buffer.concat([b, name ? Buffer.from([name.length, ...Buffer.from(name)]) : Buffer.alloc(0), Buffer.from(extra)]);
  };
  expectCode(t, () => decodeRam(rec(0, 0x2, 'nope', [0])), 'UNKNOWN_BLOCK', 9);
  expectCode(t, () => decodeRam(rec(0, 0x40000 | 0x2, 'pc.ram', [0])), 'BAD_OFFSET', 0);
  expectCode(t, () => decodeRam(rec(0, 0x2, '', [0])), 'BAD_IDSTR');
  expectCode(t, () => decodeRam(rec(0, 0x1000 | 0x10)), 'BAD_FLAGS');
  expectCode(t, () => decodeRam(rec(0, 0x402, 'pc.ram', [0])), 'BAD_FLAGS');
  expectCode(t, () => decodeRam(rec(0, 0x30)), 'BAD_FLAGS');
  expectCode(t, () => decodeRam(rec(0, 0x1)), 'BAD_FLAGS');
  expectCode(t, () => decodeRam(rec(0, 0x80)), 'HOOK_UNSUPPORTED', 0);
  expectCode(t, () => decodeRam(rec(0x200000, 0x2, 'pc.ram', [0])), 'BAD_OFFSET');
  expectCode(t, () => decodeRam(rec(0, 0x8, 'pc.ram', [1, 2, 3])), 'TRUNCATED', 0);
  // MEM_SIZE whose blocks exceed the announced total / block count cap
  const ms = Buffer.concat([rec(0, 0x1000 | 0x4), Buffer.from([1, 0x61]), Buffer.from([0, 0, 0, 0, 0, 0, 0x20, 0])]);
  expectCode(t, () => decodeRam(ms), 'BAD_LENGTH', 10);
  const many = Buffer.concat([rec(0, 0x2000 | 0x4), Buffer.from([1, 0x61, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([1, 0x62, 0, 0, 0, 0, 0, 0, 0, 0])]);
  expectCode(t, () => decodeRam(many, { maxRamBlocks: 1 }), 'BAD_LENGTH');
});

test('stream: decode → encode gives identical bytes; records are complete', (t) => {
  const { bytes } = sampleStream();
  const recs = decodeStream(bytes);
  const kinds: string[] = recs.map((r) => (r.kind === 'command' ? r.command : r.kind));
  t.deepEqual(kinds.slice(0, 5), ['header', 'configuration', 'OPEN_RETURN_PATH', 'PING', 'POSTCOPY_ADVISE']);
  for (const k of ['xbzrle', 'compressed-page', 'device-state', 'POSTCOPY_RAM_DISCARD', 'PACKAGED', 'POSTCOPY_LISTEN', 'POSTCOPY_RUN', 'package-end', 'eof', 'vmdesc']) t.true(kinds.includes(k), k);
  t.like(recs[1], { machine: 'pc-i440fx-7.2', capabilities: ['x-ignore-shared'], targetPageBits: 12 });
  const cpu = recs.find((r) => r.kind === 'device-state' && r.idstr === 'cpu') as any;
  t.is(cpu.data.length, 50); // the fake footer inside the payload was not taken as the end
  t.is(cpu.endFoundBy, 'footer-scan');
  const apic = recs.find((r) => r.kind === 'device-state' && r.idstr === 'apic') as any;
  t.deepEqual([...apic.data], [9, 9, 9]);
  t.is(kinds.indexOf('package-end'), kinds.indexOf('POSTCOPY_RUN') + 1);
  t.true(new StreamEncoder({ memSizeGuestAddress: true }).encodeAll(recs).equals(bytes));
});

test('stream: device section sizes given by option are used and checked', (t) => {
  const { bytes } = sampleStream();
  const recs = decodeStream(bytes, { deviceSectionSize: (s: any) => (s.idstr === 'cpu' ? 50 : undefined) });
  t.is((recs.find((r) => r.kind === 'device-state' && r.idstr === 'cpu') as any).endFoundBy, 'size-option');
  expectCode(t, () => decodeStream(bytes, { deviceSectionSize: (s: any) => (s.idstr === 'cpu' ? 49 : undefined) }), 'BAD_FOOTER');
  // without footers the 0x7e after the first ram section is not a known element
  expectCode(t, () => decodeStream(bytes, { sectionFooters: false }), 'UNKNOWN_SECTION_TYPE');
});

test('RamImage applies records, discards, and reports received pages', (t) => {
  const { bytes, pages } = sampleStream();
  const img = new RamImage();
  img.applyAll(decodeStream(bytes));
  const ram = img.content('pc.ram');
  for (const [k, v] of pages) {
    const block = k.slice(0, k.lastIndexOf('@'));
    const off = k.slice(k.lastIndexOf('@') + 1);
    const content = block === 'pc.ram' ? ram : img.content(block);
    t.true(content.subarray(+off, +off + 4096).equals(v), k);
  }
  t.true(img.isReceived('pc.ram', 16 * 4096));
  t.false(img.isReceived('pc.ram', 63 * 4096));
  t.is(img.receivedPages('pc.ram'), 16);
  const bm = img.receivedBitmap('pc.ram');
  t.is(bm.length, 8);
  t.is(bm[0], 0xff);
  t.is(bm[2], 0xff);
  expectCode(t, () => img.apply({ kind: 'page', offset: 0, block: 'pc.ram', blockOffset: 64 * 4096, continued: false, data: new Uint8Array(4096) }), 'BAD_OFFSET');
  expectCode(t, () => img.apply({ kind: 'zero', offset: 0, block: 'x', blockOffset: 0, continued: false, fill: 1 }), 'UNKNOWN_BLOCK');
});

test('savevm errors: magic, version, section type, command, section id, footer, truncation, trailing data', (t) => {
  const enc = new StreamEncoder();
  const hdr = enc.header();
  expectCode(t, () => decodeStream(Buffer.from('QEVX\0\0\0\x03\0')), 'BAD_MAGIC', 0);
  expectCode(t, () => decodeStream(concat([enc.header(2), enc.eof()])), 'BAD_VERSION', 4);
  expectCode(t, () => decodeStream(concat([hdr, Uint8Array.of(0x09)])), 'UNKNOWN_SECTION_TYPE', 8);
  expectCode(t, () => decodeStream(concat([hdr, Uint8Array.of(8, 0, 12, 0, 0)])), 'UNKNOWN_COMMAND', 9);
  expectCode(t, () => decodeStream(concat([hdr, Uint8Array.of(8, 0, 0, 0, 0)])), 'UNKNOWN_COMMAND');
  expectCode(t, () => decodeStream(concat([hdr, Uint8Array.of(8, 0, 2, 0, 3, 1, 2, 3)])), 'BAD_LENGTH');
  expectCode(t, () => decodeStream(concat([hdr, enc.section('part', 7), enc.eof()])), 'UNKNOWN_SECTION_ID', 9);
  expectCode(t, () => decodeStream(concat([hdr, enc.section('start', 2, 'ram', 0, 3)])), 'BAD_VERSION');
  expectCode(t, () => decodeStream(concat([hdr, enc.section('start', 2, 'ram', 0, 4), enc.ram.eos(), enc.footer(3)])), 'BAD_FOOTER');
  expectCode(t, () => decodeStream(concat([hdr, enc.section('start', 2, 'ram', 0, 4), enc.ram.eos()])), 'TRUNCATED');
  expectCode(t, () => decodeStream(hdr), 'TRUNCATED', 8);
  expectCode(t, () => decodeStream(concat([hdr, enc.eof(), Uint8Array.of(1)])), 'TRAILING_DATA', 9);
  expectCode(t, () => decodeStream(concat([hdr, enc.configuration('m'), enc.configuration('m')])), 'UNKNOWN_SECTION_TYPE');
  expectCode(t, () => decodeStream(concat([hdr, enc.command({ command: 'PACKAGED', length: 3 }), enc.eof(), enc.eof()])), 'TRUNCATED');
  expectCode(t, () => decodeStream(concat([hdr, enc.section('full', 4, 'dev', 0, 1), Uint8Array.of(1, 2, 3), enc.eof()])), 'TRUNCATED');
  expectCode(t, () => decodeStream(concat([hdr, enc.section('full', 4, 'dev', 0, 1), Uint8Array.of(1, 2, 3), enc.eof()]), { maxDeviceSectionBytes: 2 }), 'DEVICE_SECTION_END');
  const discard = Buffer.from(enc.command({ command: 'POSTCOPY_RAM_DISCARD', version: 0, idstr: 'pc.ram', ranges: [{ start: 0x1000, length: 0x1001 }] }));
  expectCode(t, () => decodeStream(concat([hdr, discard, enc.eof()])), 'BAD_OFFSET');
  discard[5] = 1;
  expectCode(t, () => decodeStream(concat([hdr, discard, enc.eof()])), 'BAD_COMMAND', 13);
  expectCode(t, () => decodeStream(concat([hdr, Uint8Array.of(6, 0xff, 0xff, 0xff, 0xff)])), 'UNKNOWN_SECTION_TYPE');
  expectCode(t, () => decodeStream(concat([hdr, enc.eof(), Uint8Array.of(6, 0xff, 0xff, 0xff, 0xff)])), 'BAD_LENGTH');
});

test('postcopy discard and RECV_BITMAP commands against the block list', (t) => {
  const enc = new StreamEncoder();
  const start = [enc.header(), enc.section('start', 2, 'ram', 0, 4), enc.ram.memSize(BLOCKS), enc.ram.eos(), enc.footer(2)];
  const ok = decodeStream(concat([...start, enc.command({ command: 'RECV_BITMAP', idstr: 'pc.ram' }), enc.command({ command: 'POSTCOPY_RESUME' }), enc.eof()]));
  t.like(ok[ok.length - 3], { command: 'RECV_BITMAP', idstr: 'pc.ram' });
  expectCode(t, () => decodeStream(concat([...start, ...enc.discard('nope', [{ start: 0, length: 4096 }]), enc.eof()])), 'UNKNOWN_BLOCK');
  expectCode(t, () => decodeStream(concat([...start, ...enc.discard('pc.bios', [{ start: 0, length: 5 * 4096 }]), enc.eof()])), 'BAD_OFFSET');
});

test('seed private postcopy section: nested device stream, then bare records until EOS', (t) => {
  const enc = new StreamEncoder({ sectionFooters: false });
  const ram = enc.ram;
  const nested = [enc.section('full', 3, 'cpu', 0, 1), enc.eof()];
  const page = randomBytes(4096);
  const bytes = concat([
    enc.header(), enc.section('start', 1, 'ram', 0, 4), ram.memSize(BLOCKS), ram.eos(), enc.section('end', 1), ram.eos(),
    ...enc.seedPostcopy(nested), ...ram.page('pc.ram', 8192, page), ram.zero('pc.ram', 0), ram.eos(),
  ]);
  const recs = decodeStream(bytes, { sectionFooters: false, deviceSectionSize: () => 0 });
  const kinds = recs.map((r) => r.kind);
  t.deepEqual(kinds.slice(-8), ['seed-postcopy', 'section', 'device-state', 'eof', 'package-end', 'page', 'zero', 'eos']);
  expectCode(t, () => decodeStream(concat([bytes, Uint8Array.of(0)]), { sectionFooters: false, deviceSectionSize: () => 0 }), 'TRAILING_DATA');
});

test('return path: every message round-trips; RECV_BITMAP body and end mark', (t) => {
  const bitmap = randomBytes(16);
  const parts = [
    encodeReturnPathPong(7), encodeReturnPathReqPages(0x1000, 0x1000, 'pc.ram'), encodeReturnPathReqPages(0x3000, 0x2000),
    ...encodeReturnPathRecvBitmap('pc.bios', bitmap), encodeReturnPathResumeAck(), encodeReturnPathSwitchoverAck(), encodeReturnPathShut(0),
  ];
  const bytes = concat(parts);
  const d = new ReturnPathDecoder({ blocks: [{ idstr: 'pc.ram', usedLength: 0x10000 }, { idstr: 'pc.bios', usedLength: 128 * 4096 }] });
  const msgs = [...d.push(bytes), ...d.end()];
  t.deepEqual(msgs.map((m) => m.kind), ['pong', 'req-pages', 'req-pages', 'recv-bitmap', 'resume-ack', 'switchover-ack', 'shut']);
  t.like(msgs[2], { start: 0x3000, length: 0x2000, idstr: undefined, block: 'pc.ram' });
  t.true(Buffer.from((msgs[3] as any).bitmap).equals(bitmap));
  t.true(concat(msgs.flatMap((m) => encodeReturnPath(m))).equals(bytes));
  // real 7.2 bytes from spec-notes §3.6
  const real = Buffer.from('00030013' + '00000000000ff000' + '00001000' + '06' + Buffer.from('pc.ram').toString('hex') + '0004000c00000000000fd00000001000' + '0001000400000000', 'hex');
  const rd = new ReturnPathDecoder();
  t.deepEqual(normalize([...rd.push(real), ...rd.end()]), [
    { kind: 'req-pages', offset: 0, start: 0xff000, length: 4096, idstr: 'pc.ram', block: 'pc.ram' },
    { kind: 'req-pages', offset: 23, start: 0xfd000, length: 4096, idstr: undefined, block: 'pc.ram' },
    { kind: 'shut', offset: 39, status: 0 },
  ]);
});

test('return path errors', (t) => {
  const dec = (b: Uint8Array, o = {}): unknown[] => {
    const d = new ReturnPathDecoder(o);
    return [...d.push(b), ...d.end()];
  };
  expectCode(t, () => dec(Uint8Array.of(0, 9, 0, 0)), 'BAD_RETURN_PATH', 0);
  expectCode(t, () => dec(Uint8Array.of(0, 2, 2, 1)), 'BAD_LENGTH', 2);
  expectCode(t, () => dec(encodeReturnPathReqPages(0, 4096)), 'CONTINUE_WITHOUT_BLOCK');
  expectCode(t, () => dec(encodeReturnPathReqPages(10, 4096, 'pc.ram')), 'BAD_OFFSET');
  expectCode(t, () => dec(encodeReturnPathResumeAck(2)), 'BAD_RETURN_PATH');
  const bm = concat(encodeReturnPathRecvBitmap('pc.ram', new Uint8Array(8)));
  bm[bm.length - 1] ^= 1;
  expectCode(t, () => dec(bm), 'BAD_RETURN_PATH');
  expectCode(t, () => dec(concat(encodeReturnPathRecvBitmap('pc.ram', new Uint8Array(64))), { blocks: [{ idstr: 'pc.ram', usedLength: 64 * 4096 }] }), 'BAD_LENGTH', 11);
  t.throws(() => dec(concat(encodeReturnPathRecvBitmap('pc.ram', new Uint8Array(64))), { maxBitmapBytes: 8 }), { instanceOf: ProtocolError });
  expectCode(t, () => dec(concat([encodeReturnPathShut(0), encodeReturnPathPong(1)])), 'TRAILING_DATA');
  expectCode(t, () => dec(encodeReturnPathPong(1).subarray(0, 6)), 'TRUNCATED', 0);
});

test('seed page requests: 4063-offset split rule, CONT for the same block, REMOVE repeated', (t) => {
  const pages = Array.from({ length: 5000 }, (_, i) => i);
  const msgs = encodeUmemRequests('ON_DEMAND', 'pc.ram', pages);
  t.is(msgs.length, 2);
  t.is(msgs[0][0], 0x01);
  t.is(msgs[1][0], 0x02);
  t.is(msgs[0].length, 1 + 1 + 6 + 4 + 4063 * 8);
  const rm = encodeUmemRequests('REMOVE', 'pc.ram', pages);
  t.deepEqual(rm.map((m) => m[0]), [0x05, 0x05]);
  const e = new UmemRequestEncoder();
  const all = [...e.request('BACKGROUND', 'pc.ram', [1, 2]), ...e.request('BACKGROUND', 'pc.ram', [3]), ...e.request('ON_DEMAND', 'pc.bios', [0]), encodeUmemRequest({ cmd: 'INIT' }), e.eoc()];
  t.deepEqual(all.map((m) => m[0]), [3, 4, 1, 0, 6]);
  const d = new UmemRequestDecoder({ blocks: [{ idstr: 'pc.ram', usedLength: 5000 * 4096 }, { idstr: 'pc.bios', usedLength: 4096 }] });
  const reqs = [...d.push(concat([...msgs, ...all])), ...d.end()];
  t.deepEqual(reqs.map((r) => r.cmd), ['ON_DEMAND', 'ON_DEMAND_CONT', 'BACKGROUND', 'BACKGROUND_CONT', 'ON_DEMAND', 'INIT', 'EOC']);
  t.deepEqual([...reqs[0].pages, ...reqs[1].pages], pages);
  t.like(reqs[3], { block: 'pc.ram', idstr: undefined, pages: [3] });
  const dd = (b: Uint8Array): unknown[] => {
    const x = new UmemRequestDecoder({ blocks: [{ idstr: 'pc.ram', usedLength: 4096 }] });
    return [...x.push(b), ...x.end()];
  };
  expectCode(t, () => dd(Uint8Array.of(2, 0, 0, 0, 0)), 'CONTINUE_WITHOUT_BLOCK', 0);
  expectCode(t, () => dd(Uint8Array.of(7)), 'UNKNOWN_COMMAND', 0);
  expectCode(t, () => dd(encodeUmemRequest({ cmd: 'ON_DEMAND', idstr: 'pc.ram', pages: [1] })), 'BAD_OFFSET');
  expectCode(t, () => dd(Uint8Array.of(1, 6, ...Buffer.from('pc.ram'), 0, 0, 0x10, 0)), 'BAD_LENGTH');
  expectCode(t, () => dd(Uint8Array.of(1, 6, ...Buffer.from('pc.ram'), 0, 0, 0, 1, 0)), 'TRUNCATED');
  t.throws(() => encodeUmemRequest({ cmd: 'ON_DEMAND', idstr: 'x', pages: pages }), { instanceOf: ProtocolError });
});

test('encoder refuses names over 255 bytes, misaligned offsets and bad CONTINUE', (t) => {
  const enc = new RamRecordEncoder();
  expectCode(t, () => enc.zero('x'.repeat(256), 0), 'ENCODE');
  expectCode(t, () => enc.zero('pc.ram', 100), 'ENCODE');
  expectCode(t, () => enc.zero('pc.ram', 0, 0, true), 'ENCODE');
  enc.memSize(BLOCKS);
  expectCode(t, () => enc.zero('pc.ram', 64 * 4096), 'ENCODE');
  expectCode(t, () => new StreamEncoder().section('start', 1, 'y'.repeat(300)), 'ENCODE');
});

test('MEM_SIZE guest addresses follow the configuration capabilities (x-ignore-shared) unless given', (t) => {
  const blocks = [{ idstr: 'pc.ram', usedLength: 0x2000, guestAddress: 0 }, { idstr: 'pc.bios', usedLength: 0x1000, guestAddress: 0xfffc0000 }];
  const stream = (caps: string[] | undefined) => {
    const enc = new StreamEncoder({ memSizeGuestAddress: caps?.includes('x-ignore-shared') ?? false });
    return concat([enc.header(), enc.configuration('pc-q35-7.2', caps ? { capabilities: caps } : {}), enc.section('start', 2, 'ram', 0, 4), enc.ram.memSize(blocks), enc.ram.eos(), enc.footer(2), enc.eof()]);
  };
  const mem = (recs: DecodedRecord[]) => recs.find((r) => r.kind === 'mem-size') as any;
  t.deepEqual(mem(decodeStream(stream(['x-ignore-shared']))).blocks, blocks);
  t.deepEqual(mem(decodeStream(stream(undefined))).blocks, blocks.map(({ idstr, usedLength }) => ({ idstr, usedLength })));
  // An explicit option wins over the configuration.
  t.throws(() => decodeStream(stream(['x-ignore-shared']), { memSizeGuestAddress: false }), { instanceOf: ProtocolError });
});

test('MEM_SIZE page size auto-detection: last block with a page size above 4 GiB, middle blocks by the 0 byte', (t) => {
  const blocks = [{ idstr: 'ram0', usedLength: 0x1000, pageSize: 0x200000 }, { idstr: 'ram1', usedLength: 0x1000 }, { idstr: 'big', usedLength: 0x1000, pageSize: 2 ** 34 }];
  const enc = new StreamEncoder();
  const bytes = concat([enc.header(), enc.command({ command: 'POSTCOPY_ADVISE', pageSizeSummary: 2 ** 34 + 0x201000, targetPageSize: 4096 }), enc.section('start', 2, 'ram', 0, 4), enc.ram.memSize(blocks), enc.ram.eos(), enc.footer(2), enc.eof()]);
  t.deepEqual((decodeStream(bytes).find((r) => r.kind === 'mem-size') as any).blocks, blocks);
  // Byte by byte, the decision waits for enough bytes and comes out the same.
  const d = new StreamDecoder();
  const recs: DecodedRecord[] = [];
  for (let i = 0; i < bytes.length; i++) recs.push(...d.push(bytes.subarray(i, i + 1)));
  recs.push(...d.end());
  t.deepEqual((recs.find((r) => r.kind === 'mem-size') as any).blocks, blocks);
});
