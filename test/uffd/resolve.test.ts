// Fault resolution conformance (modelled on the kernel's uffd-unit-tests). Every scenario runs in a child
// process (test/helpers/child.ts) with a hard timeout; inside it a worker touches and the main thread resolves.
import test from 'ava';
import { runInChild } from '../helpers/child.js';
import { scenarios, testNeeding, hugetlbUnavailable } from './support.js';
import { pageSize } from '../../src/uffd/index.js';

const kinds = [
  { kind: 'anon', features: [] },
  { kind: 'shmem', features: ['MISSING_SHMEM'] },
  { kind: 'hugetlb', features: ['MISSING_HUGETLBFS'] },
] as const;

for (const { kind, features } of kinds) {
  testNeeding(`missing faults resolved by UFFDIO_COPY on ${kind}`, { features: [...features], reason: kind === 'hugetlb' ? hugetlbUnavailable(4) : undefined }, async (t) => {
    const r = await runInChild(scenarios, 'missing', { kind, resolver: 'copy', pages: 4 });
    t.true(r.ok, r.summary);
    const { faults, values } = r.result as { faults: number[]; values: number[] };
    t.deepEqual([...faults].sort(), [0, 1, 2, 3], 'one fault per page, nothing lost');
    t.deepEqual(values, [0x1000, 0x1001, 0x1002, 0x1003], 'each page holds the copied content');
  });
}

test('missing faults resolved by UFFDIO_ZEROPAGE on anon read as zeros', async (t) => {
  const r = await runInChild(scenarios, 'missing', { kind: 'anon', resolver: 'zeropage', pages: 3 });
  t.true(r.ok, r.summary);
  t.deepEqual((r.result as { values: number[] }).values, [0, 0, 0]);
});

test('COPY with DONTWAKE leaves the toucher blocked until UFFDIO_WAKE; a repeat COPY gives EEXIST', async (t) => {
  const r = await runInChild(scenarios, 'dontwakeThenWake');
  t.true(r.ok, r.summary);
  const res = r.result as Record<string, unknown>;
  t.is(res.copied, pageSize);
  t.true(res.blockedAfterDontwake, 'toucher still blocked after a DONTWAKE copy');
  t.is(res.second, -17, 'copyRaw returns -EEXIST');
  t.is(res.eexistCode, 'EEXIST', 'copy() throws UffdExistsError');
  t.true(res.stillBlockedAfterEexist, 'EEXIST does not wake');
  t.deepEqual(res.values, [77]);
});

test('EEXIST then wake: a page filled behind the fault still needs UFFDIO_WAKE', async (t) => {
  const r = await runInChild(scenarios, 'eexistThenWake');
  t.true(r.ok, r.summary);
  const res = r.result as Record<string, unknown>;
  t.is(res.first, 2 * pageSize);
  t.is(res.second, -17);
  t.is(res.field, -17, 'the kernel wrote -EEXIST into uffdio_copy.copy');
  t.deepEqual(res.values, [5]);
});

testNeeding('minor faults on shmem resolved by UFFDIO_CONTINUE; a second CONTINUE gives EEXIST', { features: ['MINOR_SHMEM'] }, async (t) => {
  const r = await runInChild(scenarios, 'minorContinue', { kind: 'shmem', pages: 3 });
  t.true(r.ok, r.summary);
  const res = r.result as { mask: number; flags: number[]; values: number[]; again: number };
  t.true((res.mask & (1 << 7)) !== 0, 'CONTINUE in the register mask');
  t.true(res.flags.every((f) => (f & 4) !== 0), 'every fault carries UFFD_PAGEFAULT_FLAG_MINOR');
  t.deepEqual(res.values, [0x1100, 0x1101, 0x1102], 'toucher sees the page as edited through the alias');
  t.is(res.again, -17);
});

testNeeding('minor faults on hugetlbfs resolved by UFFDIO_CONTINUE', { features: ['MINOR_HUGETLBFS'], reason: hugetlbUnavailable(4) }, async (t) => {
  const r = await runInChild(scenarios, 'minorContinue', { kind: 'hugetlb', pages: 2 });
  t.true(r.ok, r.summary);
  const res = r.result as { flags: number[]; values: number[]; again: number };
  t.deepEqual(res.values, [0x1100, 0x1101]);
  t.is(res.again, -17);
});

testNeeding('write-protect: write faults carry WP|WRITE, unprotect wakes the writer', { features: ['PAGEFAULT_FLAG_WP'] }, async (t) => {
  const r = await runInChild(scenarios, 'wpBasic', { unpopulated: false });
  t.true(r.ok, r.summary);
  const res = r.result as { flags: number[]; values: number[]; untouched: number };
  t.deepEqual(res.flags, [3, 3], 'flags = UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE');
  t.deepEqual(res.values, [0xabcd, 0xabcd]);
  t.is(res.untouched, 0x01010101, 'a page never written keeps its content');
});

testNeeding('write-protect of unpopulated anon pages (WP_UNPOPULATED)', { features: ['PAGEFAULT_FLAG_WP', 'WP_UNPOPULATED'] }, async (t) => {
  const r = await runInChild(scenarios, 'wpBasic', { unpopulated: true });
  t.true(r.ok, r.summary);
  const res = r.result as { flags: number[]; values: number[]; untouched: number };
  t.deepEqual(res.flags, [3, 3], 'a never-touched protected page still raises a WP fault');
  t.deepEqual(res.values, [0xabcd, 0xabcd]);
  t.is(res.untouched, 0);
});

for (const kind of ['anon', 'shmem'] as const) {
  const how = kind === 'anon' ? 'COPY_MODE_WP (MISSING|WP on anon)' : 'CONTINUE_MODE_WP (MINOR|WP on shmem)';
  testNeeding(`${how}: the page arrives write-protected, the retried write raises a WP fault`,
    { features: kind === 'anon' ? ['PAGEFAULT_FLAG_WP'] : ['PAGEFAULT_FLAG_WP', 'MINOR_SHMEM', 'WP_HUGETLBFS_SHMEM'] }, async (t) => {
      const r = await runInChild(scenarios, 'resolveWithWp', { kind });
      t.true(r.ok, r.summary);
      const res = r.result as { flags: number[]; results: number[]; values: number[]; word1: number };
      const first = kind === 'anon' ? 1 /* WRITE */ : 5 /* MINOR|WRITE */;
      t.deepEqual(res.flags, [first, 3 /* WP|WRITE */], 'a resolve-fault, then a WP fault for the same write');
      t.deepEqual(res.results, [pageSize], 'the resolver mapped one page');
      t.deepEqual(res.values, [0xbeef], 'the write went through after unprotect');
      t.is(res.word1, kind === 'anon' ? 0x42 : 0x07070707, 'the rest of the page is the resolved content');
    });
}

testNeeding('UFFDIO_MOVE resolves faults from a staging area and empties it', { features: ['MOVE'] }, async (t) => {
  const r = await runInChild(scenarios, 'move', { pages: 4 });
  t.true(r.ok, r.summary);
  const res = r.result as { values: number[]; sourceNonZeroAfter: boolean; enoent: string };
  t.deepEqual(res.values, [0x500, 0x501, 0x502, 0x503]);
  t.false(res.sourceNonZeroAfter, 'moved pages are gone from the source');
  t.is(res.enoent, 'ENOENT', 'moving from a hole without ALLOW_SRC_HOLES');
  t.is((res as { holeSkipped?: number }).holeSkipped, pageSize, 'with ALLOW_SRC_HOLES the hole counts as done');
});

testNeeding('THREAD_ID: the fault names the toucher thread', { features: ['THREAD_ID'] }, async (t) => {
  const r = await runInChild(scenarios, 'threadId');
  t.true(r.ok, r.summary);
  const res = r.result as { ptid: number; tid: number; resolverTid: number };
  t.is(res.ptid, res.tid);
  t.not(res.ptid, res.resolverTid, 'the toucher is not the resolver');
});

testNeeding('UFFDIO_POISON: the poisoned page raises SIGBUS, the copied one reads fine', { features: ['POISON'] }, async (t) => {
  const r = await runInChild(scenarios, 'poison', undefined, { timeoutMs: 15000 });
  t.false(r.timedOut, r.summary);
  t.is(r.signal, 'SIGBUS', r.summary);
  t.deepEqual(r.messages, [{ first: 9, poisoned: pageSize, mask: r.messages.length ? (r.messages[0] as { mask: number }).mask : 0 }]);
  t.true(((r.messages[0] as { mask: number }).mask & (1 << 8)) !== 0, 'POISON in the register mask');
});

testNeeding('SIGBUS mode: a missing fault raises SIGBUS instead of an event', { features: ['SIGBUS'] }, async (t) => {
  const r = await runInChild(scenarios, 'sigbusMode', undefined, { timeoutMs: 15000 });
  t.false(r.timedOut, r.summary);
  t.is(r.signal, 'SIGBUS', r.summary);
  t.deepEqual(r.messages, [{ first: 11 }]);
});
