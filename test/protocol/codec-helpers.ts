// Shared helpers for the protocol codec/property tests.
import { randomBytes } from 'node:crypto';
import {
  StreamEncoder,
  type DecodedRecord,
  type IoVec,
  type RamBlockInfo,
} from '../../src/protocol/index.js';

export const BLOCKS: RamBlockInfo[] = [
  { idstr: 'pc.ram', usedLength: 64 * 4096 },
  { idstr: '/rom@etc/acpi/tables', usedLength: 8 * 4096 },
  { idstr: 'pc.bios', usedLength: 4 * 4096 },
];

export function concat(v: IoVec | Uint8Array[]): Buffer {
  return Buffer.concat(v.map((b) => Buffer.from(b.buffer, b.byteOffset, b.length)));
}

/** Records with byte fields turned into hex, for deep comparison across chunkings. */
export function normalize<T>(records: T[]): unknown[] {
  return records.map((r) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r as object)) o[k] = v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v;
    return o;
  });
}

export function decodeInPieces<R>(dec: { push(c: Uint8Array): R[]; end(): R[] }, data: Uint8Array, cuts: number[]): R[] {
  const out: R[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    if (c <= at || c >= data.length) continue;
    out.push(...dec.push(data.subarray(at, c)));
    at = c;
  }
  out.push(...dec.push(data.subarray(at)));
  out.push(...dec.end());
  return out;
}

/** A complete stream exercising every element kind (precopy shape + commands + package + vmdesc). */
export function sampleStream(seed = 1): { bytes: Buffer; pages: Map<string, Buffer> } {
  // x-ignore-shared is listed in the configuration, so MEM_SIZE carries guest addresses (as in QEMU).
  const enc = new StreamEncoder({ memSizeGuestAddress: true });
  const parts: Uint8Array[] = [];
  const put = (...v: (Uint8Array | IoVec)[]): void => {
    for (const x of v) if (x instanceof Uint8Array) parts.push(x); else parts.push(...x);
  };
  const pages = new Map<string, Buffer>();
  const page = (fill: number): Buffer => {
    const b = randomBytes(4096);
    b[0] = fill;
    return b;
  };
  put(enc.header(), enc.configuration('pc-i440fx-7.2', { capabilities: ['x-ignore-shared'], targetPageBits: 12 }));
  put(enc.command({ command: 'OPEN_RETURN_PATH' }), enc.command({ command: 'PING', value: seed }));
  put(enc.command({ command: 'POSTCOPY_ADVISE', pageSizeSummary: 4096, targetPageSize: 4096 }));
  put(enc.section('start', 2, 'ram', 0, 4), enc.ram.memSize(BLOCKS), enc.ram.eos(), enc.footer(2));
  put(enc.section('part', 2));
  for (let i = 0; i < 8; i++) {
    const p = page(i);
    pages.set(`pc.ram@${i * 4096}`, p);
    put(enc.ram.page('pc.ram', i * 4096, p));
    put(enc.ram.zero('pc.ram', (i + 16) * 4096));
  }
  const old = pages.get('pc.ram@0')!;
  const changed = Buffer.from(old);
  changed.fill(0xaa, 100, 200);
  put(enc.ram.xbzrlePage('pc.ram', 0, old, changed));
  pages.set('pc.ram@0', changed);
  const rom = page(9);
  put(enc.ram.compressPage('/rom@etc/acpi/tables', 4096, rom));
  pages.set('/rom@etc/acpi/tables@4096', rom);
  put(enc.ram.eos(), enc.footer(2));
  // a device section whose payload contains its own footer pattern followed by junk
  const dev = Buffer.concat([Buffer.from([1, 2, 3, 0x7e, 0, 0, 0, 5, 0xff, 0x7e]), randomBytes(40)]);
  put(enc.section('full', 5, 'cpu', 0, 12), dev, enc.footer(5));
  put(...enc.discard('pc.ram', [{ start: 0x20000, length: 0x1000 }]));
  const nested = [enc.command({ command: 'POSTCOPY_LISTEN' }), enc.section('full', 6, 'apic', 0, 3), Uint8Array.of(9, 9, 9), enc.footer(6), enc.command({ command: 'POSTCOPY_RUN' })];
  put(enc.packaged(nested));
  put(enc.section('end', 2), enc.ram.zero('pc.bios', 0), enc.ram.eos(), enc.footer(2));
  put(enc.eof(), enc.vmDescription('{"page_size":4096,"devices":[]}'));
  return { bytes: concat(parts), pages };
}

export type { DecodedRecord };
