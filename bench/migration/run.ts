// `npm run bench:migration`: whole migrations through our postcopy-daemon + source, side by side with their
// references in the same run, every process unpinned (the placement production gets):
//   (a) background throughput of a 1 GiB migration, no faults, vs raw loopback TCP of the same bytes (C), and vs
//       a C receiver that places each MiB with UFFDIO_COPY (the least any post-copy receiver does);
//   (b) 1 GiB migration with a toucher racing the stream (sequential and random order);
//   (c) downtime (source stops → destination process has its state and runs) at 256 MiB, 1, 4, 8 GiB;
//   (d) daemon peak RSS (VmHWM) at the same sizes (goal given at 1 and 8 GiB);
//   (e) total time of a 1 GiB migration of examples/toy running a uniform random pattern vs QEMU 7.2's own
//       post-copy of a 1 GiB guest (bench/qemu), with the toy's digest checked against a never-migrated run.
// JSON and SVG plots (pages sent over time, on demand vs background; fault latency histogram) go to bench/results/.
//
//   node dist/bench/migration/run.js [--reps 3] [--size 1G] [--sizes 256M,1G,4G,8G] [--no-qemu] [--qemu-mem 1024] [--quick]
//     [--only a,b,c,e,plots]   (e.g. --only c: downtime and daemon VmHWM by size only) [--memory anon|memfd]
import fs from 'node:fs';
import path from 'node:path';
import {
  argFlag, argOpt, attempt, buildRef, sumHists, fmt, hostLine, lastJson, parseBytes, ratioText, refBinary, root, runOurs, runPair, start, stat,
  writeFileIn, writeResult, type OursRun,
} from './harness.js';
import { qemuUnavailable, runQemuPostcopy, type QemuRun } from '../qemu/qemu-postcopy.js';
import { histogram, lineChart } from '../plot.js';

const MiB = 1048576;
/**
 * The destination process's memory in (a)–(d): private anonymous, like examples/toy's default and Firecracker's
 * guest memory (UFFDIO_COPY into a shared memfd costs the kernel more per page: shmem page cache). --memory memfd to compare.
 */
const DEST_MEMORY = argOpt('--memory', 'anon') as 'anon' | 'memfd';
if (DEST_MEMORY !== 'anon' && DEST_MEMORY !== 'memfd') throw new Error(`--memory must be anon or memfd, got "${DEST_MEMORY}"`);
const toyScript = path.join(root, 'dist/examples/toy/main.js');
const log = (s: string): void => { process.stderr.write(s + '\n'); };

/** Raw loopback TCP of `size` bytes (C); `place`: the receiver also places every MiB with UFFDIO_COPY. */
async function rawTcp(size: number, place = false): Promise<{ ms: number; GBps: number }> {
  const recv = start(refBinary, ['tcp-recv', '-p', '0', '-s', String(size), ...(place ? ['--place'] : [])], 'unpinned');
  try {
    const port = (await recv.line(/^listening (\d+)$/m))[1];
    const send = start(refBinary, ['tcp-send', '-p', port, '-s', String(size)], 'unpinned');
    const code = await recv.exit(300_000);
    await send.exit(30_000).catch(() => send.kill());
    if (code !== 0) throw new Error(`tcp-recv failed: ${recv.stderr()}`);
    const j = lastJson(recv.stdout());
    return { ms: j.ms, GBps: j.GBps };
  } finally {
    recv.kill();
  }
}

const memAvailable = (): number => Number(/MemAvailable:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;

interface ToyRun { sourceTotalMs: number; daemonTotalMs: number; downtimeMs: number | null; digestOk: boolean; onDemand: number; faults: number; daemonHwmKiB: number | null }

async function runToy(size: number, migrateAt: number, steps: number, reference: string): Promise<ToyRun> {
  const r = await runPair({
    placement: 'unpinned',
    timeoutMs: 180_000,
    dest: (control) => [process.execPath, [toyScript, 'dest', '--control', control, '--steps', String(steps), '--size', String(size)]],
    source: (uri) => [process.execPath, [toyScript, 'source', '--migrate-at', String(migrateAt), '--to', uri, '--size', String(size), '--pattern', 'uniform']],
  });
  const src = JSON.parse(/stats=(\{.*\})/.exec(r.source.stdout())![1]);
  const digest = /digest=(\S+)/.exec(r.dest.stdout())?.[1];
  return {
    // downtime across processes from the two epoch stamps (performance.timeOrigin-based, so ≈ 0.1 ms):
    // the source's stop → the daemon has handed the state to the toy
    sourceTotalMs: src.totalMs, daemonTotalMs: r.daemon?.totalTimeMs ?? NaN,
    downtimeMs: r.daemon?.stateDeliveredAt && src.downtimeStart ? r.daemon.stateDeliveredAt - src.downtimeStart : null,
    digestOk: digest === reference, onDemand: r.daemon?.pagesOnDemand ?? NaN, faults: r.daemon?.faults ?? NaN, daemonHwmKiB: r.daemonHwmKiB,
  };
}

async function main(): Promise<void> {
  const quick = argFlag('--quick');
  const reps = Number(argOpt('--reps', quick ? '1' : '3'));
  const size = parseBytes(argOpt('--size', quick ? '128M' : '1G'));
  const sizes = argOpt('--sizes', quick ? '64M,128M' : '256M,1G,4G,8G').split(',').map(parseBytes);
  buildRef();
  console.log(`migration benchmarks, ${reps} repetitions, every process unpinned; host: ${hostLine()} (shared machine: expect noise)`);
  const failures: string[] = [];
  const out: Record<string, unknown> = { host: hostLine(), reps, size, sizes, failures };
  // --only a,b,c,e,plots: run just those parts (c = downtime + VmHWM by size).
  const only = new Set(argOpt('--only', 'a,b,c,e,plots').split(','));
  const bySize = new Map<number, OursRun[]>();

  // (a) background throughput vs raw TCP, alternating; these runs also give (c)/(d) at `size`.
  if (only.has('a')) {
    log(`(a) ${size / MiB} MiB: raw loopback TCP, C receive + UFFDIO_COPY, our migration without faults`);
    const raw: { ms: number; GBps: number }[] = [];
    const placed: { ms: number; GBps: number }[] = [];
    for (let r = 0; r < reps; r++) {
      const t = await attempt(`(a) raw TCP rep ${r + 1}`, failures, () => rawTcp(size));
      if (t) raw.push(t);
      const c = await attempt(`(a) C receive + UFFDIO_COPY rep ${r + 1}`, failures, () => rawTcp(size, true));
      if (c) placed.push(c);
      const o = await attempt(`(a) ours rep ${r + 1}`, failures, () => runOurs({ size, placement: 'unpinned', background: true, order: 'none', memory: DEST_MEMORY }));
      if (!o) continue;
      (bySize.get(size) ?? bySize.set(size, []).get(size)!).push(o);
      log(`  rep ${r + 1}: raw ${t?.GBps.toFixed(2)} GB/s; C + COPY ${c?.GBps.toFixed(2)} GB/s; ours ${(size / 1e6 / o.daemon.totalTimeMs).toFixed(2)} GB/s (${o.daemon.totalTimeMs.toFixed(0)} ms)`);
    }
    const oursA = bySize.get(size) ?? [];
    const gbps = (o: OursRun): number => size / 1e6 / o.daemon.totalTimeMs;
    const rawS = stat(raw.map((x) => x.GBps));
    const placedS = stat(placed.map((x) => x.GBps));
    const oursS = stat(oursA.map(gbps));
    console.log(`\n(a) background throughput, ${size / MiB} MiB, no faults (ours: daemon accepts the source → every page present; destination memory ${DEST_MEMORY})`);
    console.log('| | GB/s | ms |');
    console.log('|---|---|---|');
    console.log(`| raw loopback TCP (C, 1 MiB writes, 4 MiB reads) | ${fmt(rawS, 2)} | ${fmt(stat(raw.map((x) => x.ms)), 0)} |`);
    console.log(`| C receive 1 MiB + one UFFDIO_COPY per MiB into fresh anonymous memory (no protocol) | ${fmt(placedS, 2)} | ${fmt(stat(placed.map((x) => x.ms)), 0)} |`);
    console.log(`| ours (postcopy-daemon + migrate()) | ${fmt(oursS, 2)} | ${fmt(stat(oursA.map((o) => o.daemon.totalTimeMs)), 0)} |`);
    const ratioA = oursS.median / rawS.median;
    console.log(`ratio throughput ours/raw TCP: ${ratioText(oursS.median, rawS.median)} → goal ≥ 0.80 ${ratioA >= 0.8 ? 'met' : 'NOT met'}`);
    console.log(`ratio C receive + UFFDIO_COPY / raw TCP: ${ratioText(placedS.median, rawS.median)} (what placing costs here, before any protocol); ours / C receive + UFFDIO_COPY: ${ratioText(oursS.median, placedS.median)}`);
    out.a = { raw, placed, ours: oursA.map((o) => ({ totalTimeMs: o.daemon.totalTimeMs, GBps: gbps(o), source: o.source.stats })), ratio: ratioA, ratioPlacedRaw: placedS.median / rawS.median, ratioOursPlaced: oursS.median / placedS.median };
  }

  // (b) toucher racing the stream.
  const bRuns: Record<string, OursRun[]> = { seq: [], rand: [] };
  if (only.has('b')) {
    log(`(b) ${size / MiB} MiB with a toucher racing the stream`);
    for (let r = 0; r < reps; r++) {
      for (const order of ['seq', 'rand'] as const) {
        const o = await attempt(`(b) ${order} rep ${r + 1}`, failures, () => runOurs({ size, placement: 'unpinned', background: true, order, memory: DEST_MEMORY }));
        if (!o) continue;
        bRuns[order].push(o);
        log(`  rep ${r + 1} ${order}: total ${o.daemon.totalTimeMs.toFixed(0)} ms, ${o.daemon.pagesOnDemand} on demand, touch p50 ${o.dest.touchUs.p50} µs`);
      }
    }
    console.log(`\n(b) ${size / MiB} MiB migration with a toucher (every page once) racing the background stream`);
    console.log('| toucher order | total ms (accept → all present) | state → all present ms | faults | pages on demand | touch p50 µs | touch p99 µs | daemon fault service p50 / p99 µs |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const order of ['seq', 'rand'] as const) {
      const rs = bRuns[order];
      console.log(`| ${order} | ${fmt(stat(rs.map((o) => o.daemon.totalTimeMs)), 0)} | ${fmt(stat(rs.map((o) => o.dest.stateToCompleteMs)), 0)} | ${fmt(stat(rs.map((o) => o.daemon.faults)), 0)} | ` +
        `${fmt(stat(rs.map((o) => o.daemon.pagesOnDemand)), 0)} | ${fmt(stat(rs.map((o) => o.dest.touchUs.p50)))} | ${fmt(stat(rs.map((o) => o.dest.touchUs.p99)))} | ` +
        `${stat(rs.map((o) => o.daemon.faultLatencyUs.p50)).median.toFixed(1)} / ${stat(rs.map((o) => o.daemon.faultLatencyUs.p99)).median.toFixed(1)} |`);
    }
    const bSeq = stat(bRuns.seq.map((o) => o.daemon.totalTimeMs)).median;
    console.log(`goal ≤ 500 ms (sequential toucher): ${bSeq <= 500 ? 'met' : 'NOT met'} (${bSeq.toFixed(0)} ms)`);
    out.b = Object.fromEntries(Object.entries(bRuns).map(([k, rs]) => [k, rs.map((o) => ({ daemon: o.daemon, dest: { ...o.dest, touchUs: { ...o.dest.touchUs, hist1us: undefined } }, downtimeMs: o.downtimeMs }))]));
  }

  // (c) + (d): downtime and daemon peak RSS by size.
  if (only.has('c')) {
    log('(c)/(d) downtime and daemon VmHWM by size');
    for (const sz of sizes) {
      if (bySize.has(sz)) continue;
      const need = 2 * sz + 1024 * MiB;
      if (memAvailable() < need) {
        console.log(`(c)/(d) ${sz / MiB} MiB skipped: needs ~${(need / 2 ** 30).toFixed(1)} GiB free (source + destination memfds), MemAvailable ${(memAvailable() / 2 ** 30).toFixed(1)} GiB`);
        continue;
      }
      const rs: OursRun[] = [];
      for (let r = 0; r < reps; r++) {
        const o = await attempt(`(c) ${sz / MiB} MiB rep ${r + 1}`, failures, () => runOurs({ size: sz, placement: 'unpinned', background: true, order: 'none', memory: DEST_MEMORY }));
        if (!o) continue;
        rs.push(o);
        log(`  ${sz / MiB} MiB rep ${r + 1}: downtime ${o.downtimeMs.toFixed(2)} ms, VmHWM ${((o.daemonHwmKiB ?? NaN) / 1024).toFixed(0)} MiB, total ${o.daemon.totalTimeMs.toFixed(0)} ms`);
      }
      if (rs.length) bySize.set(sz, rs);
    }
    console.log('\n(c) downtime: source stops (state() called) → destination process has its state and runs (CLOCK_MONOTONIC across processes); (d) daemon peak RSS');
    console.log('| size | downtime ms | daemon: state received → delivered ms | source: stop → state+RUN written ms | source: PING → PONG ms (workload running) | daemon VmHWM MiB | migration total ms |');
    console.log('|---|---|---|---|---|---|---|');
    const cd: Record<string, unknown>[] = [];
    for (const sz of [...bySize.keys()].sort((a, b) => a - b)) {
      const rs = bySize.get(sz)!;
      const dt = stat(rs.map((o) => o.downtimeMs));
      const hwm = stat(rs.map((o) => (o.daemonHwmKiB ?? NaN) / 1024));
      console.log(`| ${sz >= 1 << 30 ? `${sz / 2 ** 30} GiB` : `${sz / MiB} MiB`} | ${fmt(dt, 2)} | ${fmt(stat(rs.map((o) => o.daemon.downtimeMs)), 2)} | ` +
        `${fmt(stat(rs.map((o) => o.source.stats.handoverMs)), 2)} | ${fmt(stat(rs.map((o) => o.source.stats.readyMs ?? NaN)), 2)} | ${fmt(hwm, 0)} | ${fmt(stat(rs.map((o) => o.daemon.totalTimeMs)), 0)} |`);
      cd.push({ size: sz, downtimeMs: rs.map((o) => o.downtimeMs), daemonDowntimeMs: rs.map((o) => o.daemon.downtimeMs), handoverMs: rs.map((o) => o.source.stats.handoverMs), daemonHwmKiB: rs.map((o) => o.daemonHwmKiB), totalTimeMs: rs.map((o) => o.daemon.totalTimeMs) });
    }
    const dtMax = Math.max(...[...bySize.values()].map((rs) => stat(rs.map((o) => o.downtimeMs)).median));
    const hwmMax = Math.max(...[...bySize.values()].map((rs) => stat(rs.map((o) => (o.daemonHwmKiB ?? NaN) / 1024)).median));
    console.log(`goal downtime ≤ 5 ms at every size (median): ${dtMax <= 5 ? 'met' : 'NOT met'} (worst median ${dtMax.toFixed(2)} ms)`);
    console.log(`goal daemon VmHWM ≤ 128 MiB (median): ${hwmMax <= 128 ? 'met' : 'NOT met'} (worst median ${hwmMax.toFixed(0)} MiB)`);
    out.cd = cd;
  }

  // (e) toy (uniform random) vs QEMU, same run.
  if (only.has('e')) {
    const toyAvailable = fs.existsSync(toyScript);
    const migrateAt = 1_000_000, steps = 3_000_000;
    let toyRuns: ToyRun[] = [];
    let qemuRuns: QemuRun[] = [];
    if (!toyAvailable) console.log(`\n(e) skipped: ${toyScript} missing (npm run build)`);
    else {
      log(`(e) toy, ${size / MiB} MiB, uniform random pattern, migrate at step ${migrateAt}, run to ${steps}`);
      const ref = start(process.execPath, [toyScript, 'reference', '--steps', String(steps), '--size', String(size), '--pattern', 'uniform'], 'unpinned');
      if ((await ref.exit(300_000)) !== 0) throw new Error(`toy reference failed: ${ref.stderr()}`);
      const reference = /digest=(\S+)/.exec(ref.stdout())![1];
      for (let r = 0; r < reps; r++) {
        const t = await attempt(`(e) toy rep ${r + 1}`, failures, () => runToy(size, migrateAt, steps, reference));
        if (!t) continue;
        toyRuns.push(t);
        log(`  toy rep ${r + 1}: source total ${t.sourceTotalMs.toFixed(0)} ms, digest ${t.digestOk ? 'ok' : 'WRONG'}`);
      }
      const why = argFlag('--no-qemu') ? '--no-qemu given' : qemuUnavailable();
      if (why) console.log(`(e) QEMU side skipped: ${why}`);
      else {
        const qemuMem = Number(argOpt('--qemu-mem', String(size / MiB)));
        log(`(e) QEMU 7.2 post-copy, ${qemuMem} MiB guest`);
        for (let r = 0; r < reps; r++) {
          const q = await attempt(`(e) QEMU rep ${r + 1}`, failures, () => runQemuPostcopy({ memMiB: qemuMem, reps: 1, log }));
          if (q) qemuRuns.push(...q.map((x) => ({ ...x, rep: r + 1 })));
        }
      }
      console.log(`\n(e) total migration time, ${size / MiB} MiB: examples/toy (uniform random pattern) vs QEMU 7.2 post-copy (guest-touch, -accel tcg)`);
      console.log('| | total ms | downtime ms (ours: source stop → state handed to the toy) | pages on demand / postcopy requests | check |');
      console.log('|---|---|---|---|---|');
      console.log(`| ours: toy, migrate() entered → SHUT | ${fmt(stat(toyRuns.map((t) => t.sourceTotalMs)), 0)} | ${fmt(stat(toyRuns.map((t) => t.downtimeMs ?? NaN)), 2)} | ` +
        `${fmt(stat(toyRuns.map((t) => t.onDemand)), 0)} | digest ${toyRuns.every((t) => t.digestOk) ? 'equal to the never-migrated run' : 'MISMATCH'} |`);
      if (qemuRuns.length) {
        console.log(`| QEMU 7.2: query-migrate total-time | ${fmt(stat(qemuRuns.map((q) => q.totalTimeMs)), 0)} | ${fmt(stat(qemuRuns.map((q) => q.downtimeMs ?? NaN)), 0)} | ` +
          `${fmt(stat(qemuRuns.map((q) => q.postcopyRequests ?? NaN)), 0)} | guest sums ${qemuRuns.every((q) => q.guestSumsMatch) ? 'match' : 'not all checked/matching'} |`);
        const ratio = stat(toyRuns.map((t) => t.sourceTotalMs)).median / stat(qemuRuns.map((q) => q.totalTimeMs)).median;
        console.log(`ratio total-time ours/QEMU: ${ratio.toFixed(2)} → goal ≤ 0.5 ${ratio <= 0.5 ? 'met' : 'NOT met'}`);
        out.eRatio = ratio;
      }
    }
    out.e = { toy: toyRuns, qemu: qemuRuns, migrateAt, steps };
  }

  // Plots.
  const plots: string[] = [];
  // One extra, unmeasured run per toucher order with the destination sampling pages present (mincore).
  if (only.has('plots')) {
    for (const order of ['seq', 'rand'] as const) {
      const o = await attempt(`plot run ${order}`, failures, () => runOurs({ size, placement: 'unpinned', background: true, order, sampleMs: 5, memory: DEST_MEMORY }));
      if (!o) continue;
      const stop = BigInt(o.source.stopNs);
      const enterMs = Number(BigInt(o.source.enterNs) - stop) / 1e6; // negative: migrate() is entered before the stop
      const t: number[][] = o.source.timeline;
      const present: [number, number][] = (o.dest.presentTimeline as number[][]).map(([ns, n]) => [Number(BigInt(ns) - stop) / 1e6, n]);
      const series = [
        { name: 'present at the destination (mincore)', points: [[0, 0] as [number, number], ...present] },
        { name: 'sent in the background (source)', points: t.map((x) => [x[0] + enterMs, x[1] - x[2]] as [number, number]).filter((p) => p[0] >= 0) },
        { name: 'sent on demand (source, cumulative)', points: t.map((x) => [x[0] + enterMs, x[2]] as [number, number]).filter((p) => p[0] >= 0) },
      ];
      plots.push(writeFileIn(`migration-pages-over-time-${order}.svg`, lineChart(series, {
        title: `Pages over time, ${size / MiB} MiB migration, ${order === 'seq' ? 'sequential' : 'random'} toucher`,
        xLabel: 'ms since the source stopped', yLabel: 'pages',
      })));
      plots.push(writeFileIn(`migration-on-demand-over-time-${order}.svg`, lineChart([series[2]], {
        title: `Pages sent on demand over time, ${size / MiB} MiB, ${order === 'seq' ? 'sequential' : 'random'} toucher`,
        xLabel: 'ms since the source stopped', yLabel: 'pages (cumulative)',
      })));
      out[`timeline_${order}`] = { present, source: t, enterMs, onDemand: o.daemon.pagesOnDemand, totalTimeMs: o.daemon.totalTimeMs };
    }
    plots.push(writeFileIn('migration-fault-latency-hist.svg', histogram(
      (['seq', 'rand'] as const).map((order) => ({ name: `${order} toucher`, binWidth: 1, counts: sumHists(bRuns[order].map((o) => o.dest.touchUs.hist1us)) })),
      { title: `Fault latency seen by the toucher during a ${size / MiB} MiB migration (${reps} reps)`, xLabel: 'first-touch latency (µs, 1 µs bins, last bin = rest)', yLabel: 'touches (log)', logY: true, xMax: 300 })));
  }
  if (failures.length) console.log(`\n${failures.length} run(s) FAILED (not in the figures above):\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  const file = writeResult('migration', out);
  console.log(`\nJSON: ${file}\nSVG: ${plots.join(', ')}`);
}


main().catch((e: Error) => {
  console.error(`bench:migration failed: ${e.stack ?? e.message}`);
  process.exitCode = 1;
});
