// `node dist/bench/qemu/run.js [--mem 1024] [--reps 3]`: QEMU 7.2's own post-copy alone (see qemu-postcopy.ts).
// bench/migration runs the same thing side by side with our migration (item e); this is for a quick look.
import { argOpt, fmt, hostLine, stat, writeResult } from '../migration/harness.js';
import { qemuUnavailable, runQemuPostcopy } from './qemu-postcopy.js';

async function main(): Promise<void> {
  const why = qemuUnavailable();
  if (why) { console.log(`skipped: ${why}`); return; }
  const memMiB = Number(argOpt('--mem', '1024'));
  const reps = Number(argOpt('--reps', '3'));
  console.log(`QEMU 7.2 post-copy, ${memMiB} MiB guest, -accel tcg, loopback TCP, ${reps} runs; host: ${hostLine()}`);
  const runs = await runQemuPostcopy({ memMiB, reps });
  console.log('| total-time ms | downtime ms | postcopy requests | dst blocktime ms | MB/s (QEMU mbps/8) |');
  console.log('|---|---|---|---|---|');
  const s = (f: (r: (typeof runs)[number]) => number | null): ReturnType<typeof stat> => stat(runs.map((r) => f(r) ?? NaN));
  console.log(`| ${fmt(s((r) => r.totalTimeMs), 0)} | ${fmt(s((r) => r.downtimeMs), 0)} | ${fmt(s((r) => r.postcopyRequests), 0)} | ${fmt(s((r) => r.dstBlocktimeMs), 0)} | ${fmt(s((r) => (r.mbps ?? NaN) / 8), 0)} |`);
  console.log(`JSON: ${writeResult('qemu', { host: hostLine(), memMiB, runs })}`);
}

main().catch((e: Error) => { console.error(`bench:qemu failed: ${e.stack ?? e.message}`); process.exitCode = 1; });
