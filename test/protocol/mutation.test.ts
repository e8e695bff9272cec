// Mutation tests over the real QEMU fixtures: truncations, bit flips and splices of two streams.
// Every outcome must be a successful decode or a ProtocolError whose offset lies within the input;
// never another exception, a hang (each fixture runs in a worker killed at a hard deadline) or a
// large allocation (ArrayBuffer memory sampled after every push).
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { FIXTURES, fixturePath, fixturesMissing } from '../helpers/fixtures.js';
import type { MutationJob, MutationResult } from '../helpers/mutation-worker.js';

const WORKER = new URL('../helpers/mutation-worker.js', import.meta.url);
const BUDGET_MS = 2500; // new cases stop being started after this
const HARD_LIMIT_MS = 30_000; // a worker still running then is a hang
const SEED = Number(process.env.MUTATION_SEED ?? 0x5eed);

function runJob(job: MutationJob): Promise<MutationResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: job, resourceLimits: { maxOldGenerationSizeMb: 512 } });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error(`mutation worker for ${job.file} still running after ${HARD_LIMIT_MS} ms: decoder hang`));
    }, HARD_LIMIT_MS);
    w.once('message', (m: MutationResult) => { clearTimeout(timer); resolve(m); void w.terminate(); });
    w.once('error', (e) => { clearTimeout(timer); reject(e); });
    w.once('exit', (code) => { clearTimeout(timer); if (code !== 0 && code !== 1) reject(new Error(`worker exited ${code}`)); });
  });
}

const missing = fixturesMissing();
if (missing) {
  test('mutation tests over QEMU fixtures', (t) => {
    t.log(`skipped: ${missing}`);
    t.pass();
  });
} else {
  const streams = FIXTURES.map((f) => f.stream);
  FIXTURES.forEach((fx, i) => {
    test.serial(`mutated ${fx.stream}: success or in-range ProtocolError only`, async (t) => {
      const other = streams[(i + 3) % streams.length];
      const seed = SEED + i;
      const r = await runJob({ file: fixturePath(fx.stream), other: fixturePath(other), kind: 'stream', seed, budgetMs: BUDGET_MS, maxExtraBytes: 96 * 1024 * 1024 });
      t.log(`seed ${seed}: ${r.cases} cases, ${r.decoded} decoded, errors ${JSON.stringify(r.errors)}, slowest ${r.slowestMs.toFixed(1)} ms, peak extra ${(r.peakExtraBytes / 1048576).toFixed(1)} MiB`);
      t.deepEqual(r.violations.slice(0, 10), [], `contract violations (seed ${seed})`);
      t.true(r.cases >= 20, 'enough cases ran');
      t.true(Object.keys(r.errors).length > 0, 'some mutations were rejected');
    });
  });
  const rps = FIXTURES.filter((f) => f.returnPath).map((f) => f.returnPath!);
  rps.forEach((rp, i) => {
    test.serial(`mutated return path ${rp}`, async (t) => {
      const seed = SEED + 100 + i;
      const r = await runJob({ file: fixturePath(rp), other: fixturePath(rps[(i + 1) % rps.length]), kind: 'return-path', seed, budgetMs: 500, maxExtraBytes: 64 * 1024 * 1024 });
      t.log(`seed ${seed}: ${r.cases} cases, ${r.decoded} decoded, errors ${JSON.stringify(r.errors)}`);
      t.deepEqual(r.violations.slice(0, 10), [], `contract violations (seed ${seed})`);
      t.true(r.cases >= 20);
    });
  });
}
