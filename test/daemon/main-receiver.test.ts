// MainReceiver + StreamIngest + ScatterReceiver over a real pipe fed in random-sized writes by a child
// process (so receives end mid-header, mid-page, mid-framing): every page must reach the (fake) device once
// with its bytes, with the scatter receive on and off alike, and a bad record inside a page run is refused
// with the stream offset where it starts. No uffd here: the device records what would reach the kernel.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { MainReceiver } from '../../src/daemon/main-receiver.js';
import { StreamIngest } from '../../src/daemon/stream-ingest.js';
import { PageSink } from '../../src/daemon/page-sink.js';
import { WireMap } from '../../src/daemon/regions.js';
import { SharedStats, F } from '../../src/daemon/stats.js';
import { makePipe } from '../../src/daemon/sockets.js';
import { StreamDecoder, StreamEncoder, ProtocolError, RamRecordEncoder, QEMU_VM_EOF, QEMU_VM_SECTION_END, type DecodedRecord } from '../../src/protocol/index.js';
import { PageStateMap, type UmemDevice } from '../../src/umem-compat/index.js';
import { encodePrelude, encodeStateAndRun, RAM_SECTION_ID } from '../../src/source/prelude.js';
import { writeEos, writeFooter } from '../../src/source/records.js';
import { PageMap } from '../../src/source/page-map.js';
import { closeFn } from '../../src/uffd/libc.js';
import { viewAt } from '../../src/uffd/memory.js';

const PS = 4096;
const PAGES = 700;
const NAME = 'test.ram';

/** Page p's bytes: p in the first u32, then a pattern (pages in ZERO_PAGES are all zero). */
function pageBytes(p: number): Buffer {
  const b = Buffer.alloc(PS, (p * 7 + 1) & 0xff);
  b.writeUInt32LE(p, 0);
  return b;
}
const ZERO_PAGES = new Set([5, 6, 7, 300, 301, 555]);

/** Prelude, state + RUN, then the pages in three parts of different lengths, a few out of order, then the tail. */
function buildStream(badAt = -1): { bytes: Buffer; badOffset: number } {
  const map = new PageMap([{ name: NAME, size: PAGES * PS, view: () => new Uint8Array(0) }], PS);
  const chunks: Buffer[] = [encodePrelude(map), encodeStateAndRun(Buffer.from('state'))];
  const order = Array.from({ length: PAGES }, (_, i) => i);
  [order[10], order[400]] = [order[400], order[10]]; // two jumps inside runs
  const enc = new StreamEncoder();
  const ram = new RamRecordEncoder({ targetPageSize: PS });
  const rec = Buffer.alloc(RamRecordEncoder.maxRecordSize(PS));
  let badOffset = -1;
  let at = chunks.reduce((n, c) => n + c.length, 0);
  const push = (b: Buffer): void => { chunks.push(b); at += b.length; };
  for (const [from, to] of [[0, 250], [250, 420], [420, PAGES]]) {
    push(Buffer.from(enc.section('part', RAM_SECTION_ID)));
    for (let i = from; i < to; i++) {
      const p = order[i];
      if (i === badAt) badOffset = at;
      const offset = i === badAt ? PAGES * PS : p * PS; // one past the region
      const end = ram.recordInto(rec, 0, NAME, i === badAt ? 0 : offset, ZERO_PAGES.has(p) ? null : pageBytes(p));
      if (i === badAt) rec.writeBigUInt64BE(BigInt(offset) | BigInt(rec.readUInt32BE(4) & (PS - 1)), 0);
      push(Buffer.from(rec.subarray(0, end)));
    }
    const tail = Buffer.alloc(13);
    writeFooter(tail, writeEos(tail, 0), RAM_SECTION_ID);
    push(tail);
  }
  const end = Buffer.alloc(19);
  let p = writeSectionHeaderEnd(end);
  p = writeEos(end, p);
  p = writeFooter(end, p, RAM_SECTION_ID);
  end[p++] = QEMU_VM_EOF;
  push(end.subarray(0, p));
  return { bytes: Buffer.concat(chunks), badOffset };
}

function writeSectionHeaderEnd(b: Buffer): number {
  b[0] = QEMU_VM_SECTION_END;
  b.writeUInt32BE(RAM_SECTION_ID, 1);
  return 5;
}

interface Placed { pages: Map<number, Buffer>; zero: Set<number>; calls: number }

function fakeDevice(placed: Placed): UmemDevice {
  return {
    pageSize: PS, pageCount: PAGES, stats: { eagain: 0 }, pageState: new PageStateMap(PAGES),
    placeFromAddressRaw(first: number, count: number, src: number): number {
      const v = viewAt(src, count * PS);
      for (let i = 0; i < count; i++) placed.pages.set(first + i, Buffer.from(v.subarray(i * PS, (i + 1) * PS)));
      placed.calls++;
      return count;
    },
    placeZeroRaw(first: number, count: number): number {
      for (let i = 0; i < count; i++) placed.zero.add(first + i);
      placed.calls++;
      return count;
    },
  } as unknown as UmemDevice;
}

/** Stream `bytes` through a pipe written by a child in random slices of 1..maxSlice bytes; receive it all. */
async function receive(bytes: Buffer, scatter: boolean, maxSlice: number, seed: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pc-mainrx-'));
  const file = path.join(dir, 'stream.bin');
  fs.writeFileSync(file, bytes);
  const [r, w] = makePipe();
  const writer = `const fs=require('fs');const b=fs.readFileSync(${JSON.stringify(file)});let s=${seed},o=0;` +
    `while(o<b.length){s=(s*1103515245+12345)%2147483648;const n=Math.min(b.length-o,1+s%${maxSlice});fs.writeSync(1,b,o,n);o+=n;}`;
  const child = spawn(process.execPath, ['-e', writer], { stdio: ['ignore', w, 'ignore'] });
  closeFn(w);
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const placed: Placed = { pages: new Map(), zero: new Set(), calls: 0 };
  const stats = new SharedStats();
  const wire = new WireMap([{ name: NAME, base: 0x100000, size: PAGES * PS, offset: 0, pageSize: PS }], PS);
  const sink = new PageSink(fakeDevice(placed), wire, stats, 'background', () => {}, 64 * PS);
  const decoder = new StreamDecoder({ targetPageSize: PS });
  const buf = Buffer.allocUnsafeSlow(256 << 10);
  let eof = false;
  const handle = (rec: DecodedRecord): void => {
    if (rec.kind === 'mem-size') wire.bindBlockList(rec.blocks, rec.offset);
    else if (rec.kind === 'eof') eof = true;
    else if (rec.kind === 'page' || rec.kind === 'zero') sink.add(rec);
  };
  const ingest = new StreamIngest(decoder, sink, buf, PS, handle);
  const rx = new MainReceiver(r, false, ingest, buf, PS, { scatter, scatterUnits: 32 });
  let error: unknown;
  let total = 0;
  try {
    for (;;) {
      const n = rx.step();
      sink.flush();
      if (n <= 0) break;
      total += n;
    }
  } catch (e) {
    error = e;
  } finally {
    closeFn(r);
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) await new Promise((res) => child.once('exit', res));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { placed, stats, eof, total, error, counts: rx.counts };
}

for (const scatter of [true, false]) {
  for (const maxSlice of [5000, 70000]) {
    test(`every page placed once with its bytes: scatter ${scatter ? 'on' : 'off'}, writes of 1..${maxSlice} bytes`, async (t) => {
      const { bytes } = buildStream();
      const { placed, stats, eof, total, error, counts } = await receive(bytes, scatter, maxSlice, maxSlice + (scatter ? 1 : 0));
      t.is(error, undefined);
      t.true(eof, 'the stream was read to its EOF');
      t.is(total, bytes.length);
      for (let p = 0; p < PAGES; p++) {
        if (ZERO_PAGES.has(p)) {
          t.true(placed.zero.has(p) || (placed.pages.get(p)?.every((x) => x === 0) ?? false), `zero page ${p}`);
        } else if (!pageBytes(p).equals(placed.pages.get(p) ?? Buffer.alloc(0))) {
          t.fail(`page ${p} placed with the wrong bytes`);
          return;
        }
      }
      t.is(stats.present, PAGES);
      t.is(stats.v[F.duplicatesBackground], 0);
      if (scatter) t.true(counts.scatteredPages > PAGES / 2, `most pages received in place (${counts.scatteredPages})`);
      else t.is(counts.scatteredPages, 0);
    });
  }
}

test('a page offset outside the region inside a run is refused with the offset of its record', async (t) => {
  const { bytes, badOffset } = buildStream(333);
  const { error, placed } = await receive(bytes, true, 9000, 7);
  t.true(error instanceof ProtocolError, String(error));
  t.is((error as ProtocolError).offset, badOffset);
  t.false(placed.pages.has(PAGES), 'nothing placed past the region');
  for (const p of placed.pages.keys()) t.true(p < PAGES);
});
