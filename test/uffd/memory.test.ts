// Memory helpers: anonymous, memfd mapped twice (the umem shmem model), hugetlbfs, views, madvise, mremap.
import test from 'ava';
import {
  mapAnonymous, createMemfd, mapMemfd, mapFd, madvise, mremap, munmap, fallocate, viewAt, addressOf, pageSize,
  hugePageSize, MAX_VIEW_BYTES, hugePageInfo, SyscallError,
} from '../../src/uffd/index.js';
import { hugetlbUnavailable } from './support.js';

test('anonymous mapping: zero-filled, view is zero-copy, unmap is idempotent', (t) => {
  const r = mapAnonymous(4 * pageSize);
  t.true(r.addr % pageSize === 0);
  const v = r.view();
  t.is(v.length, 4 * pageSize);
  t.true(v.every((b) => b === 0));
  v[pageSize + 3] = 42;
  t.is(r.view(pageSize, 8)[3], 42, 'a second view sees the same bytes');
  t.is(viewAt(r.addr + pageSize, 4)[3], 42);
  t.throws(() => r.view(0, 5 * pageSize), { instanceOf: RangeError });
  t.throws(() => r.view(-1), { instanceOf: RangeError });
  t.is(r.view(pageSize * 4).length, 0);
  r.unmap();
  r.unmap();
  t.false(r.mapped);
  t.throws(() => r.view(), { message: /unmapped/ });
  t.throws(() => mapAnonymous(100), { instanceOf: RangeError });
  t.throws(() => mapAnonymous(0), { instanceOf: RangeError });
});

test('memfd mapped twice shares pages (the umem shmem model); private mapping does not write back', (t) => {
  const m = createMemfd('shared', 2 * pageSize);
  const a = mapMemfd(m);
  const b = mapFd(m.fd, m.size);
  const p = mapMemfd(m, { shared: false });
  a.view()[10] = 7;
  t.is(b.view()[10], 7);
  t.is(p.view()[10], 7);
  p.view()[11] = 9;
  t.is(a.view()[11], 0, 'MAP_PRIVATE writes are copy-on-write');
  fallocate(m.fd, 0, m.size);
  madvise(a.addr, a.length, 'remove');
  t.is(b.view()[10], 0, 'MADV_REMOVE punches the page out of the memfd');
  a.unmap(); b.unmap(); p.unmap(); m.close(); m.close();
});

test('madvise dontneed zeroes private anon pages; mremap moves a mapping', (t) => {
  const r = mapAnonymous(2 * pageSize);
  r.view().fill(5);
  madvise(r.addr, pageSize, 'dontneed');
  t.is(r.view()[0], 0);
  t.is(r.view()[pageSize], 5);
  const moved = mremap(r.addr, r.length, 4 * pageSize);
  t.is(viewAt(moved + pageSize, 1)[0], 5);
  munmap(moved, 4 * pageSize);
  t.throws(() => madvise(1, pageSize, 'dontneed'), { instanceOf: SyscallError });
  t.throws(() => madvise(r.addr, pageSize, 'bogus' as never), { instanceOf: TypeError });
});

test('addressOf gives the backing address of a Buffer (and of a subarray)', (t) => {
  const b = Buffer.alloc(64);
  const r = mapAnonymous(pageSize);
  b[5] = 99;
  t.is(addressOf(b.subarray(5)), addressOf(b) + 5);
  t.is(viewAt(addressOf(b) + 5, 1)[0], 99);
  r.unmap();
});

test('views are capped at 4 GiB windows (koffi.view beyond that aborts the process)', (t) => {
  t.is(MAX_VIEW_BYTES, 2 ** 32);
  t.throws(() => viewAt(0x10000, MAX_VIEW_BYTES + 1), { instanceOf: RangeError });
  // A 5 GiB reservation (never touched) gives a default view of exactly 4 GiB.
  const r = mapAnonymous(5 * 2 ** 30, { noReserve: true });
  t.is(r.view().length, MAX_VIEW_BYTES);
  t.is(r.view(2 ** 32).length, 2 ** 30);
  t.throws(() => r.view(0, 2 ** 32 + pageSize), { instanceOf: RangeError });
  r.unmap();
});

const noHuge = hugetlbUnavailable(2);
(noHuge ? test.skip : test)(`hugetlbfs 2 MiB regions: memfd (MFD_HUGETLB) and MAP_HUGETLB${noHuge ? ` (skipped: ${noHuge})` : ''}`, (t) => {
  const before = hugePageInfo().free;
  const m = createMemfd('huge', 2 * hugePageSize, { hugetlb: true });
  const a = mapMemfd(m);
  const b = mapMemfd(m);
  a.view()[hugePageSize + 1] = 3;
  t.is(b.view()[hugePageSize + 1], 3);
  t.true(hugePageInfo().free < before, 'huge pages were taken from the pool');
  t.throws(() => createMemfd('bad', pageSize, { hugetlb: true }), { instanceOf: RangeError });
  const anon = mapAnonymous(hugePageSize, { hugetlb: true });
  t.is(anon.addr % hugePageSize, 0);
  anon.view()[0] = 1;
  anon.unmap(); a.unmap(); b.unmap(); m.close();
});
