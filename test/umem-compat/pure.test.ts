// umem-compat parts that need no kernel: constants, region tables and conversions, u64 offset encoding,
// page-state claims, typed errors for bad tables.
import test from 'ava';
import fc from 'fast-check';
import {
  UMEM_INIT, UMEM_MAKE_VMA_ANONYMOUS, UMEM_INIT_GEN_B, UMEM_MAKE_PAGE_PRESENT, UVMEM_INIT, UMEM_GET_PAGE_REQUEST,
  UMEM_MARK_PAGE_CACHED, UMEM_INIT_SIZE, RegionTable, regionsFromFirecracker, encodeOffsets, decodeOffsets, UmemError,
  PageStateMap, PAGE_ABSENT, PAGE_REQUESTED, PAGE_PLACING, PAGE_PRESENT,
} from '../../src/umem-compat/index.js';

test('umem ioctl numbers match the 2012 headers (spec-notes §1.2, §1.4)', (t) => {
  t.is(UMEM_INIT >>> 0, 0xc0101e00);
  t.is(UVMEM_INIT >>> 0, 0xc0101e00);
  t.is(UMEM_MAKE_VMA_ANONYMOUS, 0x00001e01);
  t.is(UMEM_INIT_GEN_B >>> 0, 0xc0181e00);
  t.is(UMEM_MAKE_PAGE_PRESENT >>> 0, 0x40081e02);
  t.is(UMEM_INIT_SIZE, 16);
  // postcopy-uffd-defined gen-A numbers: magic 0x1E, nr 0x10/0x11, 16-byte descriptor, away from 0x00..0x02.
  t.is(UMEM_GET_PAGE_REQUEST >>> 0, 0xc0101e10);
  t.is(UMEM_MARK_PAGE_CACHED >>> 0, 0x40101e11);
});

test('region table: device pages are the concatenation of regions; conversions round-trip', (t) => {
  const table = new RegionTable([
    { base: 0x7f0000000000, size: 16 * 4096, offset: 0, name: 'a' },
    { base: 0x100000000, size: 8 * 4096, offset: 16 * 4096, name: 'b' },
  ], 4096);
  t.is(table.pageCount, 24);
  t.is(table.pageOfAddress(0x7f0000000000 + 3 * 4096 + 17), 3);
  t.is(table.pageOfAddress(0x100000000 + 2 * 4096), 18);
  t.is(table.pageOfAddress(0x100000000 + 8 * 4096), -1, 'one past the end of b');
  t.is(table.pageOfAddress(0), -1);
  t.is(table.guestAddress(18), 0x100000000 + 2 * 4096);
  t.is(table.fileOffset(18), 18 * 4096);
  t.is(table.devicePage('b', 2), 18);
  t.deepEqual({ name: table.locate(18).region.name, p: table.locate(18).pageInRegion }, { name: 'b', p: 2 });
  t.is(table.pagesLeftInRegion(14), 2);
  const e = t.throws(() => table.locate(24), { instanceOf: UmemError });
  t.is(e?.code, 'EINVAL');
  t.is(e?.offset, 24);
  t.throws(() => table.devicePage('b', 8), { instanceOf: UmemError });
  t.throws(() => table.devicePage('nope', 0), { instanceOf: UmemError });
  fc.assert(fc.property(fc.integer({ min: 0, max: 23 }), (p) => table.pageOfAddress(table.guestAddress(p)) === p));
});

test('region table rejects bad input with typed errors', (t) => {
  const bad: unknown[] = [
    [],
    [{ base: 4096, size: 0 }],
    [{ base: 4097, size: 4096 }],
    [{ base: 4096, size: 100 }],
    [{ base: 4096, size: 4096, offset: 5 }],
    [{ base: -4096, size: 4096 }],
    [{ base: 2 ** 53, size: 4096 }],
    [{ base: 4096, size: 8192 }, { base: 8192, size: 4096 }], // overlap
    [{ base: 4096, size: 4096, pageSize: 2 * 1024 * 1024 }],
    [{ base: '4096', size: 4096 }],
  ];
  for (const b of bad) {
    const e = t.throws(() => new RegionTable(b as never, 4096), { instanceOf: UmemError }, JSON.stringify(b));
    t.is(e?.code, 'EINVAL');
  }
  t.throws(() => new RegionTable([{ base: 0, size: 4096 }], 3000), { instanceOf: UmemError });
});

test('Firecracker region entries convert (page_size_kib holds bytes)', (t) => {
  const specs = regionsFromFirecracker([
    { base_host_virt_addr: 0x10000, size: 8192, offset: 4096, page_size_kib: 4096 },
    { base_host_virt_addr: 0x40000, size: 4096, offset: 0, page_size: 4096, page_size_kib: 4, name: 'x' },
  ]);
  t.deepEqual(specs, [
    { base: 0x10000, size: 8192, offset: 4096, pageSize: 4096, name: 'region0' },
    { base: 0x40000, size: 4096, offset: 0, pageSize: 4096, name: 'x' },
  ]);
  t.throws(() => regionsFromFirecracker('nope' as never), { instanceOf: UmemError });
});

test('u64 host-endian offsets: encode/decode round-trip up to 2^53, matching BigUint64Array', (t) => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { maxLength: 50 }), (xs) => {
    const buf = encodeOffsets(xs);
    const big = new BigUint64Array(buf.buffer, buf.byteOffset, xs.length);
    return buf.length === xs.length * 8 && xs.every((x, i) => big[i] === BigInt(x)) &&
      JSON.stringify(decodeOffsets(buf)) === JSON.stringify(xs);
  }));
  t.deepEqual(decodeOffsets(Buffer.alloc(8, 0xff)), [Infinity], 'beyond 2^53 decodes as Infinity (always out of range)');
  const e = t.throws(() => decodeOffsets(Buffer.alloc(12)), { instanceOf: UmemError });
  t.is(e?.code, 'EINVAL');
});

test('page state: one claimer wins, requests dedupe, release makes a page absent again', (t) => {
  const s = new PageStateMap(4);
  t.is(s.get(0), PAGE_ABSENT);
  t.true(s.tryRequest(0));
  t.false(s.tryRequest(0), 'second asker does not forward');
  t.is(s.get(0), PAGE_REQUESTED);
  t.true(s.tryClaim(0), 'requested page can be claimed');
  t.is(s.get(0), PAGE_PLACING);
  t.false(s.tryClaim(0), 'only one placer');
  s.release(0);
  t.true(s.tryClaim(0));
  s.setPresent(0);
  t.false(s.tryClaim(0));
  t.false(s.tryRequest(0));
  t.is(s.get(0), PAGE_PRESENT);
  t.is(s.countNotPresent(), 3);
  const shared = new PageStateMap(4, s.buffer);
  t.is(shared.get(0), PAGE_PRESENT, 'two maps over one SharedArrayBuffer agree');
  t.throws(() => new PageStateMap(10, new SharedArrayBuffer(4)), { instanceOf: RangeError });
});
