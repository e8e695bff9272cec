// Bench source process: a migratable region filled with the bench page pattern (bench/remote/remote_ref.c:
// first u32 of page p = pageWord(p), rest zero, so every page is a real 4 KiB PAGE record), migrated with the
// library's migrate() to a postcopy-daemon. Prints one JSON line: the source's stats, the CLOCK_MONOTONIC
// time the workload "stopped" (state() called; compared with the destination's state-arrival time for the
// downtime), and a timeline of pages sent (background vs on demand) sampled by onProgress.
//
//   node dist/bench/migration/source.js --to tcp:127.0.0.1:PORT --size 1G [-n] [--progress-ms 20]
import { parseArgs } from 'node:util';
import { createMigratableRegion } from '../../src/source/region.js';
import { migrate, type MigrationProgress } from '../../src/source/migrate.js';
import { parseBytes } from './units.js';

function pageWord(p: number): number {
  return ((Math.imul(p, 0x9e3779b1) + 0x7f4a7c15) | 1) >>> 0;
}


async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      to: { type: 'string' },
      size: { type: 'string', default: '64M' },
      'no-background': { type: 'boolean', short: 'n', default: false },
      'progress-ms': { type: 'string', default: '20' },
    },
  });
  if (!values.to) throw new Error('--to URI required');
  const size = parseBytes(values.size!);
  const region = createMigratableRegion(size, 'bench.ram');
  // Fill in ≤ 1 GiB windows (views are limited to 4 GiB).
  const window = 1 << 30;
  for (let base = 0; base < size; base += window) {
    const len = Math.min(window, size - base);
    const v = region.view(base, len);
    const w = new Uint32Array(v.buffer, v.byteOffset, len >>> 2);
    const first = base / 4096;
    for (let i = 0, p = first; i < w.length; i += 1024, p++) w[i] = pageWord(p);
  }
  let stopNs = 0n;
  const timeline: number[][] = []; // [ms since migrate() was called, pagesSent, pagesUrgent]
  const onProgress = (p: MigrationProgress): void => { timeline.push([Math.round(p.elapsedMs * 10) / 10, p.pagesSent, p.pagesUrgent]); };
  const enterNs = process.hrtime.bigint(); // timeline x = elapsedMs since here (monotonic, like the destination's)
  const stats = await migrate(values.to, {
    regions: [region],
    state: () => { stopNs = process.hrtime.bigint(); return Buffer.from('bench-state'); },
    postcopy: true,
    background: !values['no-background'],
    onProgress,
    progressIntervalMs: Number(values['progress-ms']),
  });
  process.stdout.write(JSON.stringify({ role: 'source', size, enterNs: enterNs.toString(), stopNs: stopNs.toString(), stats, timeline }) + '\n');
  region.close();
}

main().catch((e: Error) => {
  process.stderr.write(`bench source: ${e.message}\n`);
  process.exitCode = 1;
});
