#!/usr/bin/env node
// A hostile source: speaks the migration stream correctly up to a point, then sends something wrong.
//   hostile-source --to tcp:HOST:PORT --size BYTES --variant V
// Variants:
//   out-of-range     a PAGE record (0xEE bytes) at offset SIZE of block "toy.ram" (one page past its end)
//   huge-offset      a PAGE record at offset 2^52 - 4096
//   unknown-block    a PAGE record for block "evil.ram" that the block list never announced
//   size-mismatch    the block list announces "toy.ram" with SIZE + 1 MiB (the destination has SIZE)
//   garbage          a valid header, then 8 KiB of pseudo-random bytes
//   urgent-out-of-range  everything valid on main; on the urgent channel a PAGE at offset SIZE
// The records after the prelude are hand-written (the encoders refuse out-of-range offsets, rightly).
// Exits when the daemon closes the connection (prints what it saw) or after 30 s.
import net from 'node:net';
import { parseArgs } from 'node:util';
import { StreamEncoder } from '../../../src/protocol/index.js';
import { RAM_SECTION_VERSION, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_EOS, QEMU_VM_SECTION_PART, QEMU_VM_SECTION_FOOTER } from '../../../src/protocol/constants.js';
import { encodeStateAndRun, RAM_SECTION_ID } from '../../../src/source/prelude.js';

const { values } = parseArgs({ options: { to: { type: 'string' }, size: { type: 'string' }, variant: { type: 'string' } } });
const size = Number(values.size);
const variant = values.variant!;
const m = /^tcp:(.*):(\d+)$/.exec(values.to!);
if (!m) throw new Error('--to tcp:HOST:PORT');
setTimeout(() => { console.log('hostile: 30 s limit'); process.exit(3); }, 30_000).unref();

function pageRecord(block: string, offset: number, fill: number): Buffer {
  const name = Buffer.from(block, 'latin1');
  const hdr = Buffer.alloc(8 + 1 + name.length);
  hdr.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 0);
  hdr.writeUInt32BE(((offset >>> 0) | RAM_SAVE_FLAG_PAGE) >>> 0, 4);
  hdr[8] = name.length;
  name.copy(hdr, 9);
  return Buffer.concat([hdr, Buffer.alloc(4096, fill)]);
}
const eos = (): Buffer => { const b = Buffer.alloc(8); b.writeUInt32BE(RAM_SAVE_FLAG_EOS, 4); return b; };
const sectionPart = (body: Buffer): Buffer => {
  const h = Buffer.alloc(5); h[0] = QEMU_VM_SECTION_PART; h.writeUInt32BE(RAM_SECTION_ID, 1);
  const f = Buffer.alloc(5); f[0] = QEMU_VM_SECTION_FOOTER; f.writeUInt32BE(RAM_SECTION_ID, 1);
  return Buffer.concat([h, body, eos(), f]);
};

function prelude(blockSize: number): Buffer {
  const enc = new StreamEncoder({ targetPageSize: 4096 });
  return Buffer.concat([
    enc.header(),
    enc.configuration('postcopy-uffd'),
    enc.command({ command: 'OPEN_RETURN_PATH' }),
    enc.command({ command: 'POSTCOPY_ADVISE', pageSizeSummary: 4096, targetPageSize: 4096 }),
    enc.section('start', RAM_SECTION_ID, 'ram', 0, RAM_SECTION_VERSION),
    enc.ram.memSize([{ idstr: 'toy.ram', usedLength: blockSize }]),
    enc.ram.eos(),
    enc.footer(RAM_SECTION_ID),
  ]);
}

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: m![1], port: Number(m![2]) }, () => resolve(s));
    s.once('error', reject);
  });
}

const main = await connect();
const urgent = await connect();
let returned = 0;
main.on('data', (d: Buffer) => { returned += d.length; });
urgent.on('data', (d: Buffer) => { returned += d.length; });
main.on('error', (e) => console.log(`main error: ${e.message}`));
urgent.on('error', (e) => console.log(`urgent error: ${e.message}`));
const state = encodeStateAndRun(Buffer.from('hostile state blob'));

switch (variant) {
  case 'out-of-range': main.write(Buffer.concat([prelude(size), state, sectionPart(pageRecord('toy.ram', size, 0xee))])); break;
  case 'huge-offset': main.write(Buffer.concat([prelude(size), state, sectionPart(pageRecord('toy.ram', 2 ** 52 - 4096, 0xee))])); break;
  case 'unknown-block': main.write(Buffer.concat([prelude(size), state, sectionPart(pageRecord('evil.ram', 0, 0xee))])); break;
  case 'size-mismatch': main.write(Buffer.concat([prelude(size + 1024 * 1024), state, sectionPart(pageRecord('toy.ram', size, 0xee))])); break;
  case 'garbage': {
    const g = Buffer.alloc(8192);
    let x = 0x12345678;
    for (let i = 0; i < g.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; g[i] = x & 0xff; }
    main.write(Buffer.concat([new StreamEncoder().header(), g]));
    break;
  }
  case 'urgent-out-of-range':
    main.write(Buffer.concat([prelude(size), state]));
    urgent.write(pageRecord('toy.ram', size, 0xee));
    break;
  default: throw new Error(`unknown variant ${variant}`);
}
console.log(`sent ${variant}`);
let closed = 0;
const onClose = (): void => { if (++closed === 2) { console.log(`closed by the daemon (${returned} return-path bytes)`); process.exit(0); } };
main.on('close', onClose);
urgent.on('close', onClose);
