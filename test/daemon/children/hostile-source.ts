// A scripted source for failure tests: it speaks the real prelude (src/source/prelude.ts) and then
// misbehaves as told: pages outside the region, garbage, an early disconnect, a block list of the wrong
// size, or silence (never answers page requests). Prints one JSON line with what it saw.
import net from 'node:net';
import { StreamEncoder } from '../../../src/protocol/index.js';
import { encodePrelude, encodeStateAndRun, RAM_SECTION_ID } from '../../../src/source/prelude.js';
import { PageMap } from '../../../src/source/page-map.js';

type Scenario = 'out-of-range' | 'unaligned' | 'garbage' | 'disconnect' | 'bad-size' | 'stall' | 'unknown-block';
interface Args { port: number; size: number; scenario: Scenario; name?: string }

function pageRecord(offset: number, name: string | null, fill: number): Buffer {
  const head = Buffer.alloc(8);
  const flags = 0x08 | (name === null ? 0x20 : 0);
  head.writeBigUInt64BE(BigInt(offset) | BigInt(flags));
  const parts = [head];
  if (name !== null) parts.push(Buffer.from([Buffer.byteLength(name)]), Buffer.from(name));
  parts.push(Buffer.alloc(4096, fill));
  return Buffer.concat(parts);
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as Args;
  const name = a.name ?? 'toy.ram';
  const size = a.scenario === 'bad-size' ? a.size + 4096 : a.size;
  const map = new PageMap([{ name, size, view: () => new Uint8Array(0) }], 4096);
  const main = net.connect(a.port, '127.0.0.1');
  await new Promise<void>((r, j) => { main.once('connect', () => r()); main.once('error', j); });
  const urgent = net.connect(a.port, '127.0.0.1');
  const seen: string[] = [];
  let returned = Buffer.alloc(0);
  main.on('data', (b: Buffer) => { returned = Buffer.concat([returned, b]); });
  urgent.on('data', (b: Buffer) => seen.push(`urgent ${b.length} bytes`));
  main.on('error', (e) => seen.push(`main error ${e.message}`));
  urgent.on('error', (e) => seen.push(`urgent error ${e.message}`));
  const enc = new StreamEncoder();
  main.write(encodePrelude(map));
  main.write(encodeStateAndRun(Buffer.from('hostile-state')));
  const part = Buffer.from(enc.section('part', RAM_SECTION_ID));
  switch (a.scenario) {
    case 'out-of-range':
      // One good page, then a page exactly one past the end of the region.
      main.write(Buffer.concat([part, pageRecord(0, name, 1), pageRecord(a.size, null, 0xee)]));
      break;
    case 'unaligned':
      main.write(Buffer.concat([part, pageRecord(0, name, 1), pageRecord(4096 + 512, null, 0xee)]));
      break;
    case 'unknown-block':
      main.write(Buffer.concat([part, pageRecord(0, 'not.mine', 1)]));
      break;
    case 'garbage':
      main.write(Buffer.concat([Buffer.from([0x5a]), Buffer.alloc(64 * 1024, 0xa5)]));
      break;
    case 'disconnect':
      main.write(Buffer.concat([part, pageRecord(0, name, 1)]));
      await new Promise((r) => setTimeout(r, 300));
      main.destroy(); urgent.destroy();
      break;
    case 'bad-size':
    case 'stall':
      break;
  }
  // Wait for the daemon to close on us (or the test to kill us).
  await new Promise<void>((r) => { main.once('close', () => r()); setTimeout(r, 30_000).unref(); });
  process.stdout.write(JSON.stringify({ seen, returnPathHex: returned.toString('hex') }) + '\n');
  urgent.destroy();
  process.exit(0);
}
void main();
