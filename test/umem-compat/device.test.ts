// umem-compat conformance, both backends. Every scenario runs in a child process with a hard timeout
// (children/scenarios.ts): the device and its server loop on the child's main thread, touchers in workers.
import test from 'ava';
import { runInChild } from '../helpers/child.js';
import { Userfaultfd } from '../../src/uffd/userfaultfd.js';

const scenarios = new URL('./children/scenarios.js', import.meta.url).href;
const modes = ['minor', 'missing'] as const;

function supported(mode: string, extra: string[] = []): string | null {
  try {
    const f = Userfaultfd.probe().decoded.names as string[];
    const need = [...(mode === 'minor' ? ['MINOR_SHMEM', 'MISSING_SHMEM'] : []), ...extra];
    const lacking = need.filter((n) => !f.includes(n));
    return lacking.length ? lacking.join(' + ') : null;
  } catch (e) {
    return `userfaultfd itself (${(e as Error).message})`;
  }
}

async function run(t: import('ava').ExecutionContext, mode: string, name: string, args: object, timeoutMs = 30_000, features: string[] = []) {
  const missing = supported(mode, features);
  if (missing) {
    t.log(`skipped: ${missing} not supported`);
    t.pass();
    return undefined;
  }
  const r = await runInChild(scenarios, name, { mode, ...args }, { timeoutMs });
  t.true(r.ok, r.summary);
  return r.result as any;
}

for (const mode of modes) {
  test(`${mode}: request → write page → mark cached → toucher sees the bytes`, async (t) => {
    const res = await run(t, mode, 'basic', {});
    if (res) {
      t.is(res.size, 64 * 4096, 'UMEM_INIT rounds the size up to the page size');
      t.true(res.stats.placed >= 8);
    }
  });

  test(`${mode}: the same through read()/write() of u64 offsets`, async (t) => {
    const res = await run(t, mode, 'basic', { useReadWrite: true });
    if (res) t.true(res.seen.length >= 8);
  });

  test(`${mode}: proactive marking (never-requested pages) pre-populates; zero pages; place()`, async (t) => {
    const res = await run(t, mode, 'proactive', {});
    if (res) t.true(res.seen.every((p: number) => p === 15));
  });

  test(`${mode}: duplicate requests and duplicate marks are tolerated`, async (t) => {
    const res = await run(t, mode, 'duplicates', {});
    if (res) t.true(res.stats.duplicates >= 2);
  });

  test(`${mode}: read()/write() sizes, offsets beyond the end, blocking modes, host endianness`, async (t) => {
    const res = await run(t, mode, 'readWrite', {});
    if (res) t.deepEqual(res.errors.beyond, { offset: 8, pageCount: 8 });
  });

  test(`${mode}: makeVmaAnonymous refuses with pages missing, then memory is plain`, async (t) => {
    await run(t, mode, 'anonymous', {});
  });

  test(`${mode}: makeVmaAnonymous({ force }) leaves unfetched pages as zeros`, async (t) => {
    await run(t, mode, 'anonymous', { force: true });
  });

  test(`${mode}: bounded stress, 4 threads faulting at once, nothing lost, no hang`, async (t) => {
    const res = await run(t, mode, 'stress', { threads: 4, pagesPerThread: 300, totalPages: 1024, seed: 7 }, 90_000);
    if (res) {
      t.log(`${res.requests} requests, ${res.distinct} distinct pages in ${res.ms} ms; duplicates ${res.stats.duplicates}`);
      t.is(res.stats.placed, res.distinct);
    }
  });
}

for (const mode of modes) {
  test(`${mode}: cross-process attach (uffd + memfd received over SCM_RIGHTS, two regions)`, async (t) => {
    const res = await run(t, mode, 'crossProcess', {}, 30_000, ['MISSING_SHMEM']);
    if (res) t.false(res.seen.includes(100));
  });
}

for (const mode of modes) {
  test(`${mode}: EAGAIN while a REMOVE event is unread: read the event, back off, succeed (no spin)`, async (t) => {
    const res = await run(t, mode, 'crossProcess', { eagain: true }, 30_000, ['MISSING_SHMEM', 'EVENT_REMOVE']);
    if (res) {
      t.true(res.events.includes('remove'));
      t.true(res.eagainSeen >= 1, `EAGAIN answers seen: ${res.eagainSeen}`);
    }
  });
}
