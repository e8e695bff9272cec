// FaultServer (src/uffd/fault-server.ts): the worker-thread fault loop the example and bench:fault use.
// The touching runs in a child process with a hard timeout (a broken server would hang the touch).
import test from 'ava';
import { runInChild } from '../helpers/child.js';
import { FaultServer, fillPatternPage } from '../../src/uffd/index.js';

const child = new URL('./children/fault-server-child.js', import.meta.url).href;

for (const blocking of [false, true]) {
  test(`FaultServer serves every fault with the pattern source, stops cleanly (${blocking ? 'blocking uffd: made non-blocking' : 'non-blocking uffd'})`, async (t) => {
    const r = await runInChild(child, 'servePattern', { pages: 512, blocking }, { timeoutMs: 30_000 });
    t.true(r.ok, r.summary);
    const res = r.result as { mismatches: number; stats: { served: number; errors: number; reads: number } };
    t.is(res.mismatches, 0, 'every page holds the pattern of its own index');
    t.is(res.stats.served, 512, 'one fault per page, all served');
    t.is(res.stats.errors, 0);
    t.true(res.stats.reads >= 1);
  });
}

test('FaultServer with a module page source', async (t) => {
  const r = await runInChild(child, 'serveModule', { pages: 300 }, { timeoutMs: 30_000 });
  t.true(r.ok, r.summary);
  const res = r.result as { bytes: number[]; served: number };
  t.deepEqual(res.bytes, Array.from({ length: 300 }, (_, i) => i & 0xff));
  t.is(res.served, 300);
});

test('FaultServer refuses a bad page size; fillPatternPage is deterministic and index-dependent', async (t) => {
  await t.throwsAsync(FaultServer.start({ uffdFd: 0, base: 0, pageSize: 3000, source: { kind: 'pattern' } }), { instanceOf: RangeError });
  const a = new Uint8Array(4096), b = new Uint8Array(4096), c = new Uint8Array(4096);
  fillPatternPage(a, 7); fillPatternPage(b, 7); fillPatternPage(c, 8);
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
});
