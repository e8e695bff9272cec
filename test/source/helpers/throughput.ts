// Manual throughput check (not a test): `node dist/test/source/helpers/throughput.js [MiB=1024]`.
// Raw loopback TCP of the same bytes (1 MiB writes) vs migrate() of a memfd region of non-zero pages, both
// into a sink in a CHILD process that discards the bytes (the migrate sink spots the stream's tail and
// answers SHUT). Prints MB/s and the ratio.
import net from 'node:net';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createMigratableRegion } from '../../../src/source/region.js';
import { migrate } from '../../../src/source/migrate.js';

// Stream tail: SECTION_END ram(2), EOS, footer(2), EOF.
const TAIL = Buffer.from('03000000020000000000000010' + '7e00000002' + '00', 'hex');

function sink(): void {
  // Two listeners so the raw connection can never be taken for the migration's main channel.
  const raw = net.createServer((s) => { s.resume(); s.on('error', () => {}); });
  let main: net.Socket | undefined;
  const mig = net.createServer((s) => {
    s.on('error', () => {});
    if (main) { s.resume(); return; }
    main = s;
    let last = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      last = Buffer.concat([last, d.subarray(Math.max(0, d.length - TAIL.length))]).subarray(-TAIL.length);
      if (last.equals(TAIL)) s.write(Buffer.from('0001000400000000', 'hex'));
    });
  });
  raw.listen(0, '127.0.0.1', () => mig.listen(0, '127.0.0.1', () => process.send!([(raw.address() as net.AddressInfo).port, (mig.address() as net.AddressInfo).port])));
}

async function rawTcp(port: number, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const s = net.connect({ port, host: '127.0.0.1' });
  await new Promise((r) => s.once('connect', r));
  const t0 = performance.now();
  let sent = 0;
  while (sent < bytes) {
    sent += chunk.length;
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  await new Promise<void>((r) => s.end(r));
  const ms = performance.now() - t0;
  s.destroy();
  return bytes / 1e3 / ms;
}

async function main(): Promise<void> {
  const mib = Number(process.argv.find((a, i) => i >= 2 && /^\d+$/.test(a)) ?? 1024);
  const child = fork(fileURLToPath(import.meta.url), ['--sink'], { stdio: 'inherit' });
  const [rawPort, port] = await new Promise<number[]>((r) => child.once('message', (m) => r(m as number[])));
  const region = createMigratableRegion(mib * 1048576, 'bench.ram');
  const v = region.view();
  const holes = process.argv.includes('--holes');
  if (!holes) for (let off = 0; off < v.length; off += 4096) { v[off] = 1 + (off & 0x7f); v[off + 2048] = 3; }
  const raw = holes ? 1 : await rawTcp(rawPort, mib * 1048576);
  // A state function: the stop happens once the connection is up, as in the toy.
  const stats = await migrate(`tcp:127.0.0.1:${port}`, { regions: [region], state: () => Buffer.from('x'), batchBytes: Number(process.env.BATCH ?? 1 << 20) });
  const mig = (mib * 1048576) / 1e3 / stats.streamMs;
  console.log(JSON.stringify({ mib, rawTcpMBps: Math.round(raw), migrateMBps: Math.round(mig), ratio: +(mig / raw).toFixed(3), streamMs: +stats.streamMs.toFixed(1), handoverMs: +stats.handoverMs.toFixed(3), completionMs: +stats.completionMs.toFixed(1) }));
  child.kill();
  region.close();
}

if (process.argv.includes('--sink')) sink();
else void main();
