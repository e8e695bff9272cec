// The C toy runs the same workload as the TypeScript toy, bit for bit: same digests, same state blob.
// (It is how the daemon is shown to serve a process that is not Node, so its digest must be comparable.)
import test from 'ava';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCToy, haveCompiler } from '../../examples/c-toy/build.js';
import { createWorkload, windowsFromView, PATTERNS } from '../../examples/toy/workload.js';
import { createMigratableRegion } from '../../src/source/region.js';
import { runCommand } from '../helpers/child.js';
import { referenceRun } from '../helpers/workload.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TOY_MAIN = path.resolve(here, '../../examples/toy/main.js');
const compiler = haveCompiler();
const ctest = compiler ? test : test.skip;
if (!compiler) test('C toy', (t) => { t.log('skipped: gcc not found, the C toy cannot be built'); t.pass(); });

async function cRun(args: string[]): Promise<{ digest: string; state?: string }> {
  const bin = buildCToy();
  const stdout = await runCommand(bin, args);
  const digest = /digest=([0-9a-f]{32})/.exec(stdout)?.[1];
  if (!digest) throw new Error(`no digest in C toy output: ${stdout}`);
  return { digest, state: /state=([0-9a-f]+)/.exec(stdout)?.[1] };
}

for (const pattern of PATTERNS) {
  ctest(`${pattern}: C and TypeScript reach the same digest and state`, async (t) => {
    for (const [size, seed, steps] of [[2 << 20, 1, 100_000], [3 << 20, 0xdeadbeef, 12_345], [64 << 10, 5, 0]] as const) {
      const ref = referenceRun(size, pattern, seed, steps);
      const ts = { digest: ref.digest, state: ref.state.toString('hex') };
      const c = await cRun(['reference', '--size', String(size), '--pattern', pattern, '--seed', String(seed), '--steps', String(steps), '--print-state']);
      t.is(c.digest, ts.digest, `size ${size} seed ${seed} steps ${steps}`);
      t.is(c.state, ts.state, 'state blob byte-identical');
    }
  });
}

ctest('the TypeScript CLI reference mode prints the same digest as the C toy', async (t) => {
  const args = ['reference', '--size', '4M', '--pattern', 'uniform', '--seed', '77', '--steps', '50000'];
  const stdout = await runCommand(process.execPath, [TOY_MAIN, ...args]);
  const ts = /digest=([0-9a-f]{32}) steps=50000/.exec(stdout)?.[1];
  t.truthy(ts, stdout);
  t.is((await cRun(args)).digest, ts!);
});

ctest('more than one 1 GiB window: C (flat memory) = TypeScript (windows over a memfd region)', async (t) => {
  // 1 GiB + 1 MiB: the uniform pattern lands in both windows; the memory hash crosses the boundary.
  const size = (1 << 30) + (1 << 20);
  const region = createMigratableRegion(size, 'toy.window-test');
  try {
    const w = createWorkload({ size, pattern: 'uniform', seed: 11 });
    const ws = windowsFromView(size, (o, l) => region.view(o, l));
    t.is(ws.length, 2);
    w.init(ws);
    w.step(300_000);
    const c = await cRun(['reference', '--size', String(size), '--pattern', 'uniform', '--seed', '11', '--steps', '300000']);
    t.is(c.digest, w.digest());
  } finally {
    region.close();
  }
});
