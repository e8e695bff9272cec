// `npm run bench:remote`: remote fault service latency over loopback, our postcopy-daemon + source (pure
// on-demand, -n) against a C reference source/destination pair (remote_ref.c, built here with gcc), in the
// same run and the same CPU placement: every process on cpu0 (taskset -c 0) and unpinned.
//
// The destination's toucher is the same C code for both (remote_ref dst / attach): it times every first
// touch of a page (fault → page present → thread resumes). "service" is the handler-side latency: the C
// handler's read → UFFDIO_COPY done, and the daemon's own fault-service figure (its --stats JSON).
// Also: 1 GiB pure on-demand, one sequential toucher, on cpu0 (baseline.md: C 5.7 s).
//
//   node dist/bench/remote/run.js [--reps 3] [--size 256M] [--ondemand-size 1G | --no-ondemand] [--quick]
import os from 'node:os';
import {
  argFlag, argOpt, attempt, buildRef, sumHists, parseBytes, fmt, haveTaskset, hostLine, lastJson, placementNote, ratioText, runOurs, start, stat,
  writeFileIn, writeResult, type Placement,
} from '../migration/harness.js';
import { histogram } from '../plot.js';

interface LatRun {
  impl: 'C' | 'ours';
  placement: Placement;
  totalMs: number;
  touchP50: number;
  touchP99: number;
  touchMean: number;
  serviceP50: number;
  serviceP99: number;
  hist: number[];
  pages: number;
}

async function runC(size: number, placement: Placement): Promise<LatRun> {
  const ref = buildRef();
  const src = start(ref, ['src', '-p', '0', '-s', String(size)], placement);
  try {
    const port = (await src.line(/^listening (\d+)$/m, 60_000))[1];
    const dst = start(ref, ['dst', '-p', port, '-s', String(size)], placement);
    const code = await dst.exit(120_000 + Math.ceil(size / 2 ** 30) * 120_000);
    if (code !== 0) throw new Error(`C dst failed (${code}): ${dst.stderr()}`);
    const j = lastJson(dst.stdout());
    return {
      impl: 'C', placement, totalMs: j.totalMs, touchP50: j.touchUs.p50, touchP99: j.touchUs.p99, touchMean: j.touchUs.mean,
      serviceP50: j.serviceUs.p50, serviceP99: j.serviceUs.p99, hist: j.touchUs.hist1us, pages: j.pages,
    };
  } finally {
    src.kill();
  }
}

async function runOursLat(size: number, placement: Placement): Promise<LatRun> {
  const r = await runOurs({ size, placement, background: false, order: 'seq' });
  const d = r.dest;
  return {
    impl: 'ours', placement, totalMs: d.totalMs, touchP50: d.touchUs.p50, touchP99: d.touchUs.p99, touchMean: d.touchUs.mean,
    serviceP50: r.daemon?.faultLatencyUs?.p50 ?? NaN, serviceP99: r.daemon?.faultLatencyUs?.p99 ?? NaN, hist: d.touchUs.hist1us, pages: d.pages,
  };
}


async function main(): Promise<void> {
  const quick = argFlag('--quick');
  const reps = Number(argOpt('--reps', quick ? '1' : '3'));
  const size = parseBytes(argOpt('--size', quick ? '32M' : '256M'));
  const ondemandSize = parseBytes(argOpt('--ondemand-size', quick ? '64M' : '1G'));
  const placements: Placement[] = haveTaskset() ? ['cpu0', 'unpinned'] : ['unpinned'];
  if (!haveTaskset()) console.log('taskset not available: cpu0 placement skipped');
  buildRef();
  console.log(`remote fault service latency over loopback TCP: ${size / 1048576} MiB region, every page touched once sequentially, ${reps} repetitions`);
  console.log(`host: ${hostLine()} (shared machine: expect noise)`);

  const failures: string[] = [];
  const runs: LatRun[] = [];
  for (const placement of placements) {
    for (let r = 0; r < reps; r++) {
      for (const impl of ['C', 'ours'] as const) {
        const x = await attempt(`${placement} ${impl} rep ${r + 1}`, failures, () => (impl === 'C' ? runC(size, placement) : runOursLat(size, placement)));
        if (!x) continue;
        runs.push(x);
        process.stderr.write(`  ${placement} ${impl} rep ${r + 1}: touch p50 ${x.touchP50.toFixed(1)} µs, p99 ${x.touchP99.toFixed(1)}, total ${(x.totalMs / 1000).toFixed(2)} s\n`);
      }
    }
  }

  console.log('\n| placement | impl | touch p50 µs | touch p99 µs | touch mean µs | service p50 µs | service p99 µs | total s |');
  console.log('|---|---|---|---|---|---|---|---|');
  const summary: Record<string, Record<string, Record<string, ReturnType<typeof stat>>>> = {};
  for (const placement of placements) {
    summary[placement] = {};
    for (const impl of ['C', 'ours'] as const) {
      const rs = runs.filter((x) => x.placement === placement && x.impl === impl);
      const s = {
        touchP50: stat(rs.map((x) => x.touchP50)), touchP99: stat(rs.map((x) => x.touchP99)), touchMean: stat(rs.map((x) => x.touchMean)),
        serviceP50: stat(rs.map((x) => x.serviceP50)), serviceP99: stat(rs.map((x) => x.serviceP99)), totalS: stat(rs.map((x) => x.totalMs / 1000)),
      };
      summary[placement][impl] = s;
      console.log(`| ${placementNote(placement)} | ${impl} | ${fmt(s.touchP50)} | ${fmt(s.touchP99)} | ${fmt(s.touchMean)} | ${fmt(s.serviceP50)} | ${fmt(s.serviceP99)} | ${fmt(s.totalS, 2)} |`);
    }
  }
  const goals: Record<string, { ratio: number; met: boolean }> = {};
  for (const placement of placements) {
    const ratio = summary[placement].ours.touchP50.median / summary[placement].C.touchP50.median;
    goals[placement] = { ratio, met: ratio <= 1.2 };
    console.log(`ratio ${placement} ours/C (median touch p50): ${ratioText(summary[placement].ours.touchP50.median, summary[placement].C.touchP50.median)} → goal ≤ 1.2 ${ratio <= 1.2 ? 'met' : 'NOT met'}`);
  }

  // 1 GiB pure on-demand, cpu0 (baseline: C 5.72 s).
  let ondemand: { placement: Placement; C: LatRun[]; ours: LatRun[] } | undefined;
  if (!argFlag('--no-ondemand')) {
    const placement: Placement = placements[0];
    ondemand = { placement, C: [], ours: [] };
    console.log(`\n${ondemandSize / 1048576} MiB pure on-demand, one sequential toucher, ${placementNote(placement)}, ${reps} repetitions`);
    for (let r = 0; r < reps; r++) {
      const c = await attempt(`on-demand C rep ${r + 1}`, failures, () => runC(ondemandSize, placement));
      if (c) ondemand.C.push(c);
      const o = await attempt(`on-demand ours rep ${r + 1}`, failures, () => runOursLat(ondemandSize, placement));
      if (o) ondemand.ours.push(o);
      process.stderr.write(`  rep ${r + 1}: C ${c ? (c.totalMs / 1000).toFixed(2) : 'failed'} s, ours ${o ? (o.totalMs / 1000).toFixed(2) : 'failed'} s\n`);
    }
    console.log('| impl | total s | touch p50 µs | touch p99 µs |');
    console.log('|---|---|---|---|');
    for (const impl of ['C', 'ours'] as const) {
      const rs = ondemand[impl];
      console.log(`| ${impl} | ${fmt(stat(rs.map((x) => x.totalMs / 1000)), 2)} | ${fmt(stat(rs.map((x) => x.touchP50)))} | ${fmt(stat(rs.map((x) => x.touchP99)))} |`);
    }
    console.log(`ratio on-demand total ours/C: ${ratioText(stat(ondemand.ours.map((x) => x.totalMs)).median, stat(ondemand.C.map((x) => x.totalMs)).median)}`);
  }

  // Plot: touch-latency histograms (all repetitions summed), per placement.
  const plots: string[] = [];
  for (const placement of placements) {
    const hs = (['C', 'ours'] as const).map((impl) => ({
      name: `${impl} (${placementNote(placement)})`, binWidth: 1,
      counts: sumHists(runs.filter((x) => x.placement === placement && x.impl === impl).map((x) => x.hist)),
    }));
    plots.push(writeFileIn(`remote-latency-hist-${placement}.svg`, histogram(hs, {
      title: `Remote fault latency seen by the toucher, ${placement} (${size / 1048576} MiB, ${reps} reps)`,
      xLabel: 'first-touch latency (µs, 1 µs bins, last bin = rest)', yLabel: 'faults (log)', logY: true, xMax: placement === 'cpu0' ? 100 : 250,
    })));
  }
  if (failures.length) console.log(`\n${failures.length} run(s) FAILED (not in the figures above):\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  const file = writeResult('remote', {
    failures, host: hostLine(), cpus: os.cpus().length, size, reps, runs: runs.map(({ hist, ...x }) => x), summary, goals,
    ondemand: ondemand && { placement: ondemand.placement, C: ondemand.C.map(({ hist, ...x }) => x), ours: ondemand.ours.map(({ hist, ...x }) => x) },
  });
  console.log(`\nJSON: ${file}\nSVG: ${plots.join(', ')}`);
}

main().catch((e: Error) => {
  console.error(`bench:remote failed: ${e.stack ?? e.message}`);
  process.exitCode = 1;
});
