// register-ioctls matrix per memory type (kernel uffd-unit-tests `register-ioctls`), plus ranges and errors.
// Registration never faults, so this runs in-process.
import test from 'ava';
import {
  Userfaultfd, mapAnonymous, createMemfd, mapMemfd, decodeIoctls, ioctlAllowed, pageSize, hugePageSize,
  UffdInvalidError, addressOf, type MemoryRegion,
} from '../../src/uffd/index.js';
import { hugetlbUnavailable } from './support.js';

interface Mem { region: MemoryRegion; dispose(): void }
const memories: { name: string; make: () => Mem; skip?: string; minorOk: boolean }[] = [
  { name: 'anon', minorOk: false, make: () => { const r = mapAnonymous(4 * pageSize); return { region: r, dispose: () => r.unmap() }; } },
  { name: 'shmem (memfd)', minorOk: true, make: () => { const m = createMemfd('reg', 4 * pageSize); const r = mapMemfd(m); return { region: r, dispose: () => { r.unmap(); m.close(); } }; } },
  { name: 'shmem-private (memfd, MAP_PRIVATE)', minorOk: true, make: () => { const m = createMemfd('regp', 4 * pageSize); const r = mapMemfd(m, { shared: false }); return { region: r, dispose: () => { r.unmap(); m.close(); } }; } },
  { name: 'hugetlb (memfd)', minorOk: true, skip: hugetlbUnavailable(2), make: () => { const m = createMemfd('regh', 2 * hugePageSize, { hugetlb: true }); const r = mapMemfd(m); return { region: r, dispose: () => { r.unmap(); m.close(); } }; } },
  { name: 'hugetlb-private (MAP_HUGETLB anon)', minorOk: true, skip: hugetlbUnavailable(2), make: () => { const r = mapAnonymous(2 * hugePageSize, { hugetlb: true }); return { region: r, dispose: () => r.unmap() }; } },
];

for (const mem of memories) {
  const title = `register-ioctls matrix on ${mem.name}`;
  (mem.skip ? test.skip : test)(mem.skip ? `${title} (skipped: ${mem.skip})` : title, (t) => {
    const uffd = Userfaultfd.open({ features: ['MISSING_SHMEM', 'MISSING_HUGETLBFS', 'PAGEFAULT_FLAG_WP', 'WP_HUGETLBFS_SHMEM', 'MINOR_SHMEM', 'MINOR_HUGETLBFS'] });
    const m = mem.make();
    try {
      for (let bits = 0; bits < 8; bits++) {
        const modes = { missing: !!(bits & 1), wp: !!(bits & 2), minor: !!(bits & 4) };
        const label = JSON.stringify(modes);
        const invalid = bits === 0 || (modes.minor && !mem.minorOk);
        if (invalid) {
          const e = t.throws(() => uffd.register(m.region.addr, m.region.length, modes), { instanceOf: UffdInvalidError }, label);
          t.is(e?.code, 'EINVAL');
          continue;
        }
        const mask = uffd.register(m.region.addr, m.region.length, modes);
        t.true(ioctlAllowed(mask, 'wake'), `${label}: WAKE`);
        if (modes.missing) t.true(ioctlAllowed(mask, 'copy'), `${label}: COPY`);
        if (modes.wp) t.true(ioctlAllowed(mask, 'writeProtect'), `${label}: WRITEPROTECT`);
        if (modes.minor) t.true(ioctlAllowed(mask, 'continue'), `${label}: CONTINUE`);
        t.is(decodeIoctls(mask).unknown, 0n, `${label}: no unknown ioctl bits`);
        uffd.unregister(m.region.addr, m.region.length);
      }
    } finally {
      m.dispose();
      uffd.close();
    }
  });
}

test('anon MISSING|WP gives the ioctl mask measured on this machine (0x17c)', (t) => {
  const uffd = Userfaultfd.open();
  const r = mapAnonymous(pageSize);
  const mask = uffd.register(r.addr, r.length, { missing: true, wp: true });
  t.deepEqual(decodeIoctls(mask).names, ['wake', 'copy', 'zeropage', 'move', 'writeProtect', 'poison']);
  r.unmap(); uffd.close();
});

test('shmem MISSING|MINOR gives the ioctl mask measured on this machine (0x1bc, with CONTINUE)', (t) => {
  const uffd = Userfaultfd.open();
  const m = createMemfd('mask', pageSize);
  const r = mapMemfd(m);
  const mask = uffd.register(r.addr, r.length, { missing: true, minor: true });
  t.true(ioctlAllowed(mask, 'continue'));
  t.false(ioctlAllowed(mask, 'writeProtect'));
  t.is(mask, 0x1bc);
  r.unmap(); m.close(); uffd.close();
});

test('register rejects unaligned or empty ranges with EINVAL and keeps the range in the message', (t) => {
  const uffd = Userfaultfd.open();
  const r = mapAnonymous(2 * pageSize);
  try {
    const e = t.throws(() => uffd.register(r.addr + 1, pageSize, { missing: true }), { instanceOf: UffdInvalidError });
    t.regex(e!.message, new RegExp(`UFFDIO_REGISTER failed: EINVAL .* at 0x${(r.addr + 1).toString(16)}`));
    t.throws(() => uffd.register(r.addr, 0, { missing: true }), { instanceOf: UffdInvalidError });
    t.throws(() => uffd.unregister(r.addr, 3), { instanceOf: UffdInvalidError });
  } finally { r.unmap(); uffd.close(); }
});

test('a range registered on one uffd cannot be registered on another (EBUSY)', (t) => {
  const a = Userfaultfd.open();
  const b = Userfaultfd.open();
  const r = mapAnonymous(pageSize);
  try {
    a.register(r.addr, r.length, { missing: true });
    const e = t.throws(() => b.register(r.addr, r.length, { missing: true }));
    t.is((e as { code?: string }).code, 'EBUSY');
  } finally { r.unmap(); a.close(); b.close(); }
});

test('resolver ioctls on an unregistered range fail with typed errors, never crash', (t) => {
  const uffd = Userfaultfd.open();
  const r = mapAnonymous(pageSize);
  const src = Buffer.alloc(pageSize);
  try {
    t.is(uffd.copyRaw(r.addr, addressOf(src), pageSize, 0), -2, 'copy into an unregistered range: -ENOENT (no registered VMA)');
    t.true(uffd.zeropageRaw(r.addr, pageSize, 0) < 0);
    t.true(uffd.continueRaw(r.addr, pageSize, 0) < 0);
    t.true(uffd.wakeRaw(r.addr, pageSize) <= 0);
    t.throws(() => uffd.copy(r.addr + 1, addressOf(src), pageSize), { instanceOf: UffdInvalidError });
  } finally { r.unmap(); uffd.close(); }
});

test('range COPY stopping at an existing page surfaces partial progress (EAGAIN with done) and EEXIST at the first page', (t) => {
  const uffd = Userfaultfd.open();
  const r = mapAnonymous(4 * pageSize);
  const src = Buffer.alloc(4 * pageSize, 1);
  try {
    uffd.register(r.addr, r.length, { missing: true });
    t.is(uffd.copyRaw(r.addr + 2 * pageSize, addressOf(src), pageSize, 1), pageSize, 'page 2 populated (DONTWAKE: no waiter)');
    t.is(uffd.copyRaw(r.addr, addressOf(src), 4 * pageSize, 1), 2 * pageSize, 'copy of 4 pages stops after 2');
    t.is(uffd.lastResultField('copy'), 2 * pageSize, 'the kernel result field holds the bytes done');
    const e = t.throws(() => uffd.copy(r.addr + pageSize, addressOf(src), 3 * pageSize, { dontWake: true }));
    t.is((e as { code?: string }).code, 'EEXIST', 'first page conflicts: EEXIST, nothing done');
    t.is((e as { done?: number }).done, 0);
    t.is(uffd.zeropageRaw(r.addr + 3 * pageSize, pageSize, 1), pageSize);
    const r2 = mapAnonymous(3 * pageSize);
    uffd.register(r2.addr, r2.length, { missing: true });
    uffd.zeropage(r2.addr + pageSize, pageSize, { dontWake: true });
    const p = t.throws(() => uffd.copy(r2.addr, addressOf(src), 3 * pageSize, { dontWake: true }));
    t.is((p as { code?: string }).code, 'EAGAIN', 'partial progress is reported as EAGAIN');
    t.is((p as { done?: number }).done, pageSize, '.done carries the bytes copied before the conflict');
    r2.unmap();
  } finally { r.unmap(); uffd.close(); }
});
