// A bounded stress run (kernel uffd-stress in miniature): several threads fault at once, one resolver,
// nothing lost, no hang (child process with a hard timeout).
import test from 'ava';
import { runInChild } from '../helpers/child.js';
import { scenarios } from './support.js';

for (const pattern of ['disjoint', 'racing'] as const) {
  test(`stress: 4 touching threads, 2048 pages, ${pattern} access, one resolver`, async (t) => {
    const r = await runInChild(scenarios, 'stress', { pages: 2048, threads: 4, pattern }, { timeoutMs: 60000 });
    t.true(r.ok, r.summary);
    const res = r.result as { faults: number; eexist: number; reads: number; maxBatch: number; wrong: number; copiedOnce: boolean; touched: number };
    t.log(`faults ${res.faults}, EEXIST ${res.eexist}, reads ${res.reads}, max batch ${res.maxBatch}`);
    t.is(res.wrong, 0, 'every touch read the resolved content');
    t.true(res.copiedOnce, 'each page populated exactly once');
    if (pattern === 'disjoint') t.is(res.faults, 2048, 'one fault per page, none lost or duplicated');
    else t.true(res.faults >= 2048 && res.faults - res.eexist === 2048, 'every page resolved once; extra faults answered by EEXIST + wake');
  });
}
