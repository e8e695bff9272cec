// Every real QEMU 7.2 stream in ../shared/fixtures/qemu-7.2 decodes completely (in one buffer and in
// random chunkings, with identical records), the decoded pc.ram equals QEMU's own pmemsave dump of the
// source, device sections end where QEMU's VMDESCRIPTION says, and the return-path captures decode to
// the messages QEMU sent.
//
// Ground truth here is what QEMU wrote: the streams, the pmemsave dumps, the VMDESCRIPTION JSON and the
// relay's receive log (chunks.tsv). The record counts quoted in the fixture README and derived/*.json
// come from our old Python inspector: they are a cross-check, not ground truth.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import {
  RamImage,
  ReturnPathDecoder,
  StreamEncoder,
  vmDescriptionSectionSizes,
  type CommandRecord,
  type DecodedRecord,
  type MemSizeRecord,
  type ReturnPathMessage,
} from '../../src/protocol/index.js';
import {
  BIOS_SHADOW,
  FIXTURES,
  differingRanges,
  fixturePath,
  fixturesMissing,
  hexRanges,
  readFixture,
  readPmem,
  type Fixture,
} from '../helpers/fixtures.js';
import { randomChunks } from '../helpers/random.js';
import { decodeChunks, fingerprint, kindCounts, pageCounts } from '../helpers/records.js';

const MiB = 1024 * 1024;

/** Per-fixture facts from the fixture README (pc.ram counts come from our old inspector: cross-check). */
const EXPECTED: Record<string, { pcRam: Record<string, number>; ramSections: number; commands: Record<string, number> }> = {
  'precopy-paused': { pcRam: { ZERO: 15872, PAGE: 512 }, ramSections: 3, commands: {} },
  'precopy-compress': { pcRam: { ZERO: 15872, COMPRESS_PAGE: 512 }, ramSections: 16, commands: {} },
  'precopy-xbzrle-running': { pcRam: { PAGE: 706, ZERO: 15743, XBZRLE: 144 }, ramSections: 364, commands: {} },
  'precopy-postcopy-cap': { pcRam: { ZERO: 15872, PAGE: 512 }, ramSections: 3, commands: { OPEN_RETURN_PATH: 1, PING: 1, POSTCOPY_ADVISE: 1 } },
  'postcopy-immediate': {
    pcRam: { PAGE: 641, ZERO: 15743 }, ramSections: 3,
    commands: { OPEN_RETURN_PATH: 1, PING: 4, POSTCOPY_ADVISE: 1, POSTCOPY_RAM_DISCARD: 6, PACKAGED: 1, POSTCOPY_LISTEN: 1, POSTCOPY_RUN: 1 },
  },
  'postcopy-after-precopy': {
    pcRam: { PAGE: 706, ZERO: 15743 }, ramSections: 8,
    commands: { OPEN_RETURN_PATH: 1, PING: 4, POSTCOPY_ADVISE: 1, POSTCOPY_RAM_DISCARD: 6, PACKAGED: 1, POSTCOPY_LISTEN: 1, POSTCOPY_RUN: 1 },
  },
  'postcopy-throttled': {
    pcRam: { PAGE: 641, ZERO: 15743 }, ramSections: 29,
    commands: { OPEN_RETURN_PATH: 1, PING: 4, POSTCOPY_ADVISE: 1, POSTCOPY_RAM_DISCARD: 6, PACKAGED: 1, POSTCOPY_LISTEN: 1, POSTCOPY_RUN: 1 },
  },
  'postcopy-hugetlb': {
    pcRam: { PAGE: 741, ZERO: 16667 }, ramSections: 4,
    commands: { OPEN_RETURN_PATH: 1, PING: 4, POSTCOPY_ADVISE: 1, POSTCOPY_RAM_DISCARD: 5, PACKAGED: 1, POSTCOPY_LISTEN: 1, POSTCOPY_RUN: 1 },
  },
};

/** The MEM_SIZE block list of every fixture (README "Wire format as observed"). */
const BLOCKS: Array<[string, number]> = [
  ['pc.ram', 64 * MiB],
  ['/rom@etc/acpi/tables', 128 * 1024],
  ['pc.bios', 256 * 1024],
  ['pc.rom', 128 * 1024],
  ['/rom@etc/table-loader', 4096],
  ['/rom@etc/acpi/rsdp', 4096],
];

const commands = (records: readonly DecodedRecord[]) => records.filter((r): r is CommandRecord => r.kind === 'command');

const missing = fixturesMissing();
if (missing) {
  test('QEMU 7.2 fixtures', (t) => {
    t.log(`skipped: ${missing}`);
    t.pass();
  });
} else {
  for (const fx of FIXTURES) registerStreamTests(fx);
  for (const fx of FIXTURES.filter((f) => f.returnPath)) registerReturnPathTests(fx);
}

function registerStreamTests(fx: Fixture): void {
  const exp = EXPECTED[fx.name];

  test(`${fx.stream}: decodes completely; framing, blocks, commands and counts as documented`, (t) => {
    const data = readFixture(fx.stream);
    const records = decodeChunks([data]);
    t.is(records[0].kind, 'header');
    const last = records[records.length - 1];
    // Precopy ends EOF + VMDESCRIPTION; postcopy sends no VM description.
    if (fx.postcopy) {
      t.is(last.kind, 'eof');
      t.false(records.some((r) => r.kind === 'vmdesc'));
    } else {
      t.is(last.kind, 'vmdesc');
      t.is(records[records.length - 2].kind, 'eof');
      t.is(last.offset + 5 + Buffer.byteLength((last as { json: string }).json), data.length, 'VMDESCRIPTION ends the file');
    }
    const conf = records.find((r) => r.kind === 'configuration');
    t.like(conf, { machine: 'pc-i440fx-7.2' });

    const memSizes = records.filter((r): r is MemSizeRecord => r.kind === 'mem-size');
    t.is(memSizes.length, 1);
    t.is(memSizes[0].totalBytes, 67641344);
    t.deepEqual(memSizes[0].blocks.map((b) => [b.idstr, b.usedLength]), BLOCKS);
    const pcRam = memSizes[0].blocks[0];
    t.is(pcRam.pageSize, fx.hugetlb ? 0x200000 : undefined, 'per-block page size only for hugetlb pc.ram');

    const ramSections = records.filter((r) => r.kind === 'section' && r.idstr === 'ram');
    t.is(ramSections.length, exp.ramSections);
    t.true(ramSections.every((s) => s.kind === 'section' && s.versionId === 4 && s.instanceId === 0));
    t.deepEqual(pageCounts(records, 'pc.ram'), exp.pcRam);
    const cmdCounts: Record<string, number> = {};
    for (const c of commands(records)) cmdCounts[c.command] = (cmdCounts[c.command] ?? 0) + 1;
    t.deepEqual(cmdCounts, exp.commands);
    t.is(records.filter((r) => r.kind === 'device-state').length, 30, '30 device FULL sections');
    t.log(JSON.stringify(kindCounts(records)));
  });

  test(`${fx.stream}: same records in random chunkings and byte by byte`, (t) => {
    const data = readFixture(fx.stream);
    const whole = decodeChunks([data]).map(fingerprint);
    for (const seed of [1, 2, 3]) {
      const chunks = randomChunks(data, seed * 7919 + fx.name.length);
      const got = decodeChunks(chunks).map(fingerprint);
      t.is(got.length, whole.length, `seed ${seed}: record count`);
      const firstDiff = got.findIndex((g, i) => g !== whole[i]);
      t.is(firstDiff, -1, `seed ${seed}: first differing record ${firstDiff}: ${got[firstDiff]} vs ${whole[firstDiff]}`);
    }
    // One byte at a time over the first 256 KiB (header, MEM_SIZE, commands, the first pages), then the rest.
    const head = Math.min(data.length, 256 * 1024);
    const bytewise: Uint8Array[] = [];
    for (let i = 0; i < head; i++) bytewise.push(data.subarray(i, i + 1));
    bytewise.push(data.subarray(head));
    t.deepEqual(decodeChunks(bytewise).map(fingerprint), whole);
    // One byte at a time over the device sections too (ends found by scanning for the footer, the
    // PACKAGED blob of postcopy streams, EOF and the VM description).
    const recs = decodeChunks([data]);
    const devs = recs.filter((r) => r.kind === 'device-state');
    const from = Math.max(0, devs[0].offset - 64);
    const last = recs.filter((r) => r.kind === 'footer' && r.offset > devs[devs.length - 1].offset)[0];
    const to = fx.postcopy ? Math.min(data.length, last.offset + 5 + 64) : data.length;
    const around: Uint8Array[] = [data.subarray(0, from)];
    for (let i = from; i < to; i++) around.push(data.subarray(i, i + 1));
    around.push(data.subarray(to));
    t.deepEqual(decodeChunks(around).map(fingerprint), whole, `byte by byte over [${from}, ${to})`);
  });

  test(`${fx.stream}: decode → encode gives the same bytes and decodes to the same records`, (t) => {
    const data = readFixture(fx.stream);
    const records = decodeChunks([data]);
    const encoded = new StreamEncoder().encodeAll(records);
    t.is(encoded.length, data.length);
    t.true(encoded.equals(data), 're-encoded stream is byte-identical');
    t.deepEqual(decodeChunks([encoded]).map(fingerprint), records.map(fingerprint));
  });

  test(`${fx.stream}: decoded pc.ram equals QEMU's pmemsave of the source`, (t) => {
    const records = decodeChunks([readFixture(fx.stream)]);
    const image = new RamImage();
    image.applyAll(records);
    const pcRam = image.content('pc.ram');
    const dump = readPmem(fx);
    t.is(dump.length, 64 * MiB);
    if (fx.paused) {
      // README: a never-started guest's pmemsave reads 0xe0000-0xfffff through the isa-bios alias of
      // the top 128 KiB of pc.bios (SeaBIOS never shadowed itself into RAM); pc.ram has zeros there.
      t.deepEqual(differingRanges(pcRam, dump, [BIOS_SHADOW]), [], 'pc.ram outside the BIOS shadow');
      const bios = image.content('pc.bios');
      const top = bios.subarray(bios.length - (BIOS_SHADOW.end - BIOS_SHADOW.start));
      t.true(Buffer.from(top).equals(dump.subarray(BIOS_SHADOW.start, BIOS_SHADOW.end)), 'dump 0xe0000-0xfffff = top 128 KiB of pc.bios');
      t.true(pcRam.subarray(BIOS_SHADOW.start, BIOS_SHADOW.end).every((b) => b === 0), 'pc.ram is zero under the shadow');
    } else {
      const diff = differingRanges(pcRam, dump);
      t.deepEqual(diff, [], `pc.ram differs at ${hexRanges(diff)}`);
    }
    t.is(image.receivedPages('pc.ram'), 16384, 'every pc.ram page was received');
  });

  test(`${fx.stream}: device sections end where QEMU's VMDESCRIPTION says`, (t) => {
    const records = decodeChunks([readFixture(fx.stream)]);
    const devices = records.filter((r) => r.kind === 'device-state');
    t.is(devices.length, 30);
    let vmdesc = records.find((r) => r.kind === 'vmdesc');
    if (!vmdesc) {
      // Post-copy sends no VM description. The same machine and guest program ran precopy in
      // precopy-xbzrle-running, whose description gives the device sizes of a running guest.
      t.true(fx.postcopy, 'only postcopy streams lack a VMDESCRIPTION');
      vmdesc = decodeChunks([readFixture('precopy-xbzrle-running.mig')]).find((r) => r.kind === 'vmdesc');
    }
    if (!vmdesc || vmdesc.kind !== 'vmdesc') return t.fail('no VMDESCRIPTION');
    const sizes = vmDescriptionSectionSizes(vmdesc.json);
    t.is(sizes.size, 30);
    for (const d of devices) {
      if (d.kind !== 'device-state') continue;
      t.is(d.data.length, sizes.get(`${d.idstr}/${d.instanceId}`) ?? -1, `${d.idstr}/${d.instanceId}`);
    }
  });
}

/** Our own minimal reading of the return-path framing (be16 type, be16 len, body): independent of src/protocol. */
function splitReturnPath(buf: Buffer): Array<{ offset: number; type: number; body: Buffer }> {
  const out: Array<{ offset: number; type: number; body: Buffer }> = [];
  for (let p = 0; p < buf.length; ) {
    const len = buf.readUInt16BE(p + 2);
    out.push({ offset: p, type: buf.readUInt16BE(p), body: buf.subarray(p + 4, p + 4 + len) });
    p += 4 + len;
  }
  return out;
}

/** dst2src byte offsets at which the recording relay received a new chunk (chunks.tsv). */
function relayChunkStarts(fx: Fixture): number[] | undefined {
  const file = fixturePath(`${fx.name}.chunks.tsv`);
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .filter((f) => f[1] === 'dst2src')
    .map((f) => Number(f[2]));
}

function registerReturnPathTests(fx: Fixture): void {
  test(`${fx.returnPath}: decodes to the messages QEMU sent`, (t) => {
    const raw = readFixture(fx.returnPath!);
    const d = new ReturnPathDecoder();
    const msgs: ReturnPathMessage[] = [...d.push(raw), ...d.end()];
    // 1. Field by field against an independent reading of the framing (spec-notes §3.6).
    const frames = splitReturnPath(raw);
    t.is(msgs.length, frames.length);
    frames.forEach((f, i) => {
      const m = msgs[i];
      t.is(m.offset, f.offset);
      if (f.type === 1) t.deepEqual(m, { kind: 'shut', offset: f.offset, status: f.body.readUInt32BE(0) });
      else if (f.type === 2) t.deepEqual(m, { kind: 'pong', offset: f.offset, value: f.body.readUInt32BE(0) });
      else if (f.type === 3 || f.type === 4) {
        t.is(m.kind, 'req-pages');
        if (m.kind !== 'req-pages') return;
        t.is(m.start, Number(f.body.readBigUInt64BE(0)));
        t.is(m.length as number, f.body.readUInt32BE(8));
        t.is(m.idstr, f.type === 3 ? f.body.subarray(13, 13 + f.body[12]).toString('latin1') : undefined);
        t.is(m.block, 'pc.ram');
      } else t.fail(`unexpected return-path type ${f.type}`);
    });
    // 2. Message boundaries agree with the relay's receive log: every chunk QEMU's writes produced
    //    starts on a message boundary.
    const starts = relayChunkStarts(fx);
    if (starts) {
      const boundaries = new Set(msgs.map((m) => m.offset));
      t.deepEqual(starts.filter((s) => !boundaries.has(s)), [], 'relay chunks start at message starts');
    }
    // 3. Ends with SHUT(0), the destination finished OK.
    t.like(msgs[msgs.length - 1], { kind: 'shut', status: 0 });
    // 4. PONGs echo exactly the PINGs of the forward stream (PING 3 lives inside PACKAGED).
    const records = decodeChunks([readFixture(fx.stream)]);
    const pings = commands(records).flatMap((c) => (c.command === 'PING' ? [c.value] : []));
    const pongs = msgs.flatMap((m) => (m.kind === 'pong' ? [m.value] : []));
    t.deepEqual([...pongs].sort(), [...pings].sort());
    // 5. Requests: one whole host page (4 KiB, or 2 MiB for hugetlb pc.ram), aligned, inside the block,
    //    and inside a range the source had discarded (a page the destination did not have).
    const hostPage = fx.hugetlb ? 0x200000 : 4096;
    const discards = commands(records).flatMap((c) => (c.command === 'POSTCOPY_RAM_DISCARD' && c.idstr === 'pc.ram' ? c.ranges : []));
    const reqs = msgs.filter((m): m is Extract<ReturnPathMessage, { kind: 'req-pages' }> => m.kind === 'req-pages');
    for (const r of reqs) {
      t.is(r.length, hostPage);
      t.is(r.start % hostPage, 0);
      t.true(r.start + r.length <= 64 * MiB);
      t.true(discards.some((x) => r.start >= x.start && r.start + r.length <= x.start + x.length), `request 0x${r.start.toString(16)} inside a discarded range`);
    }
    // 6. Cross-check with our old inspector's output (not ground truth).
    const derived = fixturePath(`derived/${fx.name}.rp.json`);
    if (existsSync(derived)) {
      const old = JSON.parse(readFileSync(derived, 'utf8')) as {
        bytes: number; message_counts: Record<string, number>; first_requests: Array<{ start: number; len: number; block?: string }>;
      };
      t.is(raw.length, old.bytes);
      const counts: Record<string, number> = {};
      for (const f of frames) {
        const name = ['INVALID', 'SHUT', 'PONG', 'REQ_PAGES_ID', 'REQ_PAGES'][f.type] ?? String(f.type);
        counts[name] = (counts[name] ?? 0) + 1;
      }
      t.deepEqual(counts, old.message_counts);
      t.deepEqual(
        reqs.slice(0, old.first_requests.length).map((r) => ({ start: r.start, len: r.length, ...(r.idstr ? { block: r.idstr } : {}) })),
        old.first_requests,
      );
    } else {
      t.log(`no derived/${fx.name}.rp.json: cross-check skipped`);
    }
    t.log(`${msgs.length} messages, ${reqs.length} page requests`);
  });
}
