// The ABI tables: ioctl numbers computed by _IOC match the values verified in C on this machine
// (reference/baseline.md §2.1), for both architectures; struct sizes and syscall tables are consistent.
// (test/uffd/abi-headers.test.ts separately checks against /usr/include/linux/userfaultfd.h.)
import test from 'ava';
import * as abi from '../../src/uffd/abi.js';

test('ioctl numbers equal the C-verified values', (t) => {
  t.is(abi.UFFDIO_API, 0xc018aa3f);
  t.is(abi.UFFDIO_REGISTER, 0xc020aa00);
  t.is(abi.UFFDIO_UNREGISTER, 0x8010aa01);
  t.is(abi.UFFDIO_WAKE, 0x8010aa02);
  t.is(abi.UFFDIO_COPY, 0xc028aa03);
  t.is(abi.UFFDIO_ZEROPAGE, 0xc020aa04);
  t.is(abi.UFFDIO_MOVE, 0xc028aa05);
  t.is(abi.UFFDIO_WRITEPROTECT, 0xc018aa06);
  t.is(abi.UFFDIO_CONTINUE, 0xc020aa07);
  t.is(abi.UFFDIO_POISON, 0xc020aa08);
  t.is(abi.USERFAULTFD_IOC_NEW, 0xaa00);
});

test('_IOC encodes dir/size/type/nr and refuses sizes beyond 14 bits', (t) => {
  t.is(abi._IOC(3, 0xaa, 0x3f, 24), 0xc018aa3f);
  t.is(abi._IO(0xaa, 0), 0xaa00);
  t.is(abi._IOW(0x12, 1, 8), 0x40081201);
  t.throws(() => abi._IOC(3, 0xaa, 0, 1 << 14), { instanceOf: RangeError });
});

test('struct sizes and offsets follow the packed kernel layouts', (t) => {
  t.is(abi.UFFD_MSG_SIZE, 32);
  t.is(abi.UFFD_MSG_OFF.pagefaultAddress, 16);
  t.is(abi.UFFD_MSG_OFF.pagefaultPtid, 24);
  t.is(abi.UFFDIO_COPY_SIZE, 40);
  t.is(abi.UFFDIO_COPY_OFF.copy, 32);
  t.is(abi.UFFDIO_API_SIZE, 24);
  t.is(abi.UFFDIO_REGISTER_SIZE, 32);
  for (const [name, off, size] of [
    ['zeropage', abi.UFFDIO_ZEROPAGE_OFF.zeropage, abi.UFFDIO_ZEROPAGE_SIZE],
    ['continue', abi.UFFDIO_CONTINUE_OFF.mapped, abi.UFFDIO_CONTINUE_SIZE],
    ['poison', abi.UFFDIO_POISON_OFF.updated, abi.UFFDIO_POISON_SIZE],
    ['move', abi.UFFDIO_MOVE_OFF.move, abi.UFFDIO_MOVE_SIZE],
  ] as const) t.is(off + 8, size, `${name}: the result field is last`);
});

test('all 17 feature bits, distinct, 0..16', (t) => {
  const bits = Object.values(abi.UFFD_FEATURES);
  t.is(bits.length, 17);
  t.deepEqual([...bits].sort((a, b) => a - b), Array.from({ length: 17 }, (_, i) => 1 << i));
  t.is(abi.UFFD_FEATURES.MOVE, abi.UFFD_FEATURE_MOVE);
});

test('syscall tables for x86_64 and aarch64', (t) => {
  t.is(abi.SYSCALLS.x86_64.userfaultfd, 323);
  t.is(abi.SYSCALLS.aarch64.userfaultfd, 282);
  t.is(abi.SYSCALLS.x86_64.memfd_create, 319);
  t.is(abi.SYSCALLS.aarch64.memfd_create, 279);
  for (const arch of ['x86_64', 'aarch64'] as const) {
    t.is(abi.SYSCALLS[arch].pidfd_open, 434);
    t.is(abi.SYSCALLS[arch].pidfd_getfd, 438);
  }
  t.is(abi.SYSCALLS.aarch64.fork, null);
  t.is(abi.SYS, abi.SYSCALLS[abi.currentArch()]);
});
