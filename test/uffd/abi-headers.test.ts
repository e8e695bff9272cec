// The x86_64 ABI tables of abi.ts against the machine's kernel headers: a small C program, built with gcc,
// prints every value the headers define (ioctl numbers, struct sizes and offsets, feature bits, events,
// modes, syscall numbers). Values the installed header lacks (Debian 12 ships 6.1: no MOVE, no POISON, no
// feature bits 13-16) are checked against the upstream constants below and reported one by one.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as abi from '../../src/uffd/abi.js';

interface Item {
  name: string;
  /** C expression printed as an unsigned 64-bit value. */
  c: string;
  /** Macro that must be defined for the expression to compile (the header's own name for the item). */
  guard: string;
  ts: number;
  /** Upstream value (Linux 6.18 uapi) for items an older header may lack. */
  upstream?: number;
}

const HEADER = '/usr/include/linux/userfaultfd.h';
const S = abi.SYSCALLS.x86_64;
const F = abi.UFFD_FEATURES;

const ioctl = (name: keyof typeof abi & string, upstream?: number): Item => ({ name, c: name, guard: name, ts: abi[name] as number, upstream });
const macro = (name: string, ts: number, upstream?: number): Item => ({ name, c: name, guard: name, ts, upstream });
const size = (struct: string, guard: string, ts: number, upstream?: number): Item => ({ name: `sizeof(struct ${struct})`, c: `sizeof(struct ${struct})`, guard, ts, upstream });
const off = (struct: string, field: string, guard: string, ts: number, upstream?: number): Item =>
  ({ name: `offsetof(${struct}, ${field})`, c: `offsetof(struct ${struct}, ${field})`, guard, ts, upstream });

const groups: Record<string, Item[]> = {
  'ioctl numbers': [
    ioctl('UFFDIO_API'), ioctl('UFFDIO_REGISTER'), ioctl('UFFDIO_UNREGISTER'), ioctl('UFFDIO_WAKE'),
    ioctl('UFFDIO_COPY'), ioctl('UFFDIO_ZEROPAGE'), ioctl('UFFDIO_WRITEPROTECT'), ioctl('UFFDIO_CONTINUE'),
    ioctl('UFFDIO_MOVE', 0xc028aa05), ioctl('UFFDIO_POISON', 0xc020aa08), ioctl('USERFAULTFD_IOC_NEW'),
    macro('UFFD_API', abi.UFFD_API), macro('UFFDIO', abi.UFFDIO),
    ...(['REGISTER', 'UNREGISTER', 'WAKE', 'COPY', 'ZEROPAGE', 'WRITEPROTECT', 'CONTINUE', 'API'] as const)
      .map((n) => macro(`_UFFDIO_${n}`, abi[`_UFFDIO_${n}`])),
    macro('_UFFDIO_MOVE', abi._UFFDIO_MOVE, 0x05), macro('_UFFDIO_POISON', abi._UFFDIO_POISON, 0x08),
  ],
  'struct sizes and offsets': [
    size('uffdio_api', 'UFFDIO_API', abi.UFFDIO_API_SIZE),
    off('uffdio_api', 'features', 'UFFDIO_API', abi.UFFDIO_API_OFF.features),
    off('uffdio_api', 'ioctls', 'UFFDIO_API', abi.UFFDIO_API_OFF.ioctls),
    size('uffdio_range', 'UFFDIO_WAKE', abi.UFFDIO_RANGE_SIZE),
    size('uffdio_register', 'UFFDIO_REGISTER', abi.UFFDIO_REGISTER_SIZE),
    off('uffdio_register', 'mode', 'UFFDIO_REGISTER', abi.UFFDIO_REGISTER_OFF.mode),
    off('uffdio_register', 'ioctls', 'UFFDIO_REGISTER', abi.UFFDIO_REGISTER_OFF.ioctls),
    size('uffdio_copy', 'UFFDIO_COPY', abi.UFFDIO_COPY_SIZE),
    ...(['dst', 'src', 'len', 'mode', 'copy'] as const).map((f) => off('uffdio_copy', f, 'UFFDIO_COPY', abi.UFFDIO_COPY_OFF[f])),
    size('uffdio_zeropage', 'UFFDIO_ZEROPAGE', abi.UFFDIO_ZEROPAGE_SIZE),
    off('uffdio_zeropage', 'mode', 'UFFDIO_ZEROPAGE', abi.UFFDIO_ZEROPAGE_OFF.mode),
    off('uffdio_zeropage', 'zeropage', 'UFFDIO_ZEROPAGE', abi.UFFDIO_ZEROPAGE_OFF.zeropage),
    size('uffdio_writeprotect', 'UFFDIO_WRITEPROTECT', abi.UFFDIO_WRITEPROTECT_SIZE),
    off('uffdio_writeprotect', 'mode', 'UFFDIO_WRITEPROTECT', abi.UFFDIO_WRITEPROTECT_OFF.mode),
    size('uffdio_continue', 'UFFDIO_CONTINUE', abi.UFFDIO_CONTINUE_SIZE),
    off('uffdio_continue', 'mode', 'UFFDIO_CONTINUE', abi.UFFDIO_CONTINUE_OFF.mode),
    off('uffdio_continue', 'mapped', 'UFFDIO_CONTINUE', abi.UFFDIO_CONTINUE_OFF.mapped),
    size('uffdio_move', 'UFFDIO_MOVE', abi.UFFDIO_MOVE_SIZE, 40),
    off('uffdio_move', 'move', 'UFFDIO_MOVE', abi.UFFDIO_MOVE_OFF.move, 32),
    size('uffdio_poison', 'UFFDIO_POISON', abi.UFFDIO_POISON_SIZE, 32),
    off('uffdio_poison', 'updated', 'UFFDIO_POISON', abi.UFFDIO_POISON_OFF.updated, 24),
    size('uffd_msg', 'UFFD_API', abi.UFFD_MSG_SIZE),
    off('uffd_msg', 'event', 'UFFD_API', abi.UFFD_MSG_OFF.event),
    off('uffd_msg', 'arg.pagefault.flags', 'UFFD_API', abi.UFFD_MSG_OFF.pagefaultFlags),
    off('uffd_msg', 'arg.pagefault.address', 'UFFD_API', abi.UFFD_MSG_OFF.pagefaultAddress),
    off('uffd_msg', 'arg.pagefault.feat.ptid', 'UFFD_API', abi.UFFD_MSG_OFF.pagefaultPtid),
    off('uffd_msg', 'arg.fork.ufd', 'UFFD_API', abi.UFFD_MSG_OFF.forkUfd),
    off('uffd_msg', 'arg.remap.from', 'UFFD_API', abi.UFFD_MSG_OFF.remapFrom),
    off('uffd_msg', 'arg.remap.to', 'UFFD_API', abi.UFFD_MSG_OFF.remapTo),
    off('uffd_msg', 'arg.remap.len', 'UFFD_API', abi.UFFD_MSG_OFF.remapLen),
    off('uffd_msg', 'arg.remove.start', 'UFFD_API', abi.UFFD_MSG_OFF.removeStart),
    off('uffd_msg', 'arg.remove.end', 'UFFD_API', abi.UFFD_MSG_OFF.removeEnd),
  ],
  'feature bits': (Object.keys(F) as (keyof typeof F)[]).map((n, bit) => macro(`UFFD_FEATURE_${n}`, F[n], bit >= 13 ? 2 ** bit : undefined)),
  'events and fault flags': [
    macro('UFFD_EVENT_PAGEFAULT', abi.UFFD_EVENT_PAGEFAULT), macro('UFFD_EVENT_FORK', abi.UFFD_EVENT_FORK),
    macro('UFFD_EVENT_REMAP', abi.UFFD_EVENT_REMAP), macro('UFFD_EVENT_REMOVE', abi.UFFD_EVENT_REMOVE),
    macro('UFFD_EVENT_UNMAP', abi.UFFD_EVENT_UNMAP),
    macro('UFFD_PAGEFAULT_FLAG_WRITE', abi.UFFD_PAGEFAULT_FLAG_WRITE), macro('UFFD_PAGEFAULT_FLAG_WP', abi.UFFD_PAGEFAULT_FLAG_WP),
    macro('UFFD_PAGEFAULT_FLAG_MINOR', abi.UFFD_PAGEFAULT_FLAG_MINOR),
  ],
  'register and ioctl modes': [
    macro('UFFDIO_REGISTER_MODE_MISSING', abi.UFFDIO_REGISTER_MODE_MISSING),
    macro('UFFDIO_REGISTER_MODE_WP', abi.UFFDIO_REGISTER_MODE_WP),
    macro('UFFDIO_REGISTER_MODE_MINOR', abi.UFFDIO_REGISTER_MODE_MINOR),
    macro('UFFDIO_COPY_MODE_DONTWAKE', abi.UFFDIO_COPY_MODE_DONTWAKE), macro('UFFDIO_COPY_MODE_WP', abi.UFFDIO_COPY_MODE_WP),
    macro('UFFDIO_ZEROPAGE_MODE_DONTWAKE', abi.UFFDIO_ZEROPAGE_MODE_DONTWAKE),
    macro('UFFDIO_WRITEPROTECT_MODE_WP', abi.UFFDIO_WRITEPROTECT_MODE_WP),
    macro('UFFDIO_WRITEPROTECT_MODE_DONTWAKE', abi.UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
    macro('UFFDIO_CONTINUE_MODE_DONTWAKE', abi.UFFDIO_CONTINUE_MODE_DONTWAKE),
    macro('UFFDIO_CONTINUE_MODE_WP', abi.UFFDIO_CONTINUE_MODE_WP, 2),
    macro('UFFDIO_POISON_MODE_DONTWAKE', abi.UFFDIO_POISON_MODE_DONTWAKE, 1),
    macro('UFFDIO_MOVE_MODE_DONTWAKE', abi.UFFDIO_MOVE_MODE_DONTWAKE, 1),
    macro('UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES', abi.UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, 2),
    macro('UFFD_USER_MODE_ONLY', abi.UFFD_USER_MODE_ONLY, 1),
  ],
  'x86_64 syscall numbers': (['userfaultfd', 'memfd_create', 'pidfd_open', 'pidfd_getfd', 'pidfd_send_signal', 'process_madvise',
    'process_vm_readv', 'process_vm_writev', 'mmap', 'munmap', 'mremap', 'madvise', 'eventfd2', 'gettid', 'fork', 'clone',
    'ioctl', 'memfd_secret'] as const).map((n) => macro(`__NR_${n}`, S[n] as number)),
};

/** Build and run the C program; null + reason when that is impossible here. */
function readHeaderValues(): { values: Map<string, number | null> } | { skip: string } {
  if (process.arch !== 'x64') return { skip: `not x86_64 (${process.arch}): the C program would print another ABI` };
  if (!fs.existsSync(HEADER)) return { skip: `${HEADER} missing (install linux-libc-dev)` };
  const all = Object.values(groups).flat();
  const lines = all.map((it, i) =>
    `#ifdef ${it.guard}\n  printf("%d=%llu\\n", ${i}, (unsigned long long)(${it.c}));\n#else\n  printf("%d=missing\\n", ${i});\n#endif`);
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include <sys/syscall.h>\n#include <sys/ioctl.h>\n#include <linux/userfaultfd.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'abi-headers-'));
  try {
    fs.writeFileSync(path.join(dir, 'abi.c'), src);
    try {
      execFileSync('gcc', ['-O0', '-o', path.join(dir, 'abi'), path.join(dir, 'abi.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
      if (err.code === 'ENOENT') return { skip: 'gcc not installed' };
      throw new Error(`gcc failed on the generated program:\n${err.stderr?.toString() ?? err.message}`);
    }
    const out = execFileSync(path.join(dir, 'abi'), { encoding: 'utf8' });
    const values = new Map<string, number | null>();
    for (const line of out.trim().split('\n')) {
      const [i, v] = line.split('=');
      values.set(all[Number(i)].name, v === 'missing' ? null : Number(BigInt(v)));
    }
    return { values };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const header = readHeaderValues();
const hex = (n: number): string => `0x${n.toString(16)}`;

if ('skip' in header) {
  test.skip(`abi.ts vs kernel headers (skipped: ${header.skip})`, () => {});
} else {
  const { values } = header;
  for (const [group, items] of Object.entries(groups)) {
    test(`${group}: abi.ts matches the installed headers`, (t) => {
      const present = items.filter((it) => values.get(it.name) !== null);
      t.true(present.length > 0, 'the header defines at least some of this group');
      for (const it of present) {
        const h = values.get(it.name)!;
        t.is(it.ts, h, `${it.name}: abi.ts ${hex(it.ts)}, header ${hex(h)}`);
      }
    });
    for (const it of items.filter((x) => values.get(x.name) === null)) {
      // Not in this (older) header: check against the upstream value instead, and say so.
      test(`${it.name}: not in this header, checked against upstream ${it.upstream === undefined ? '(no upstream value!)' : hex(it.upstream)}`, (t) => {
        t.log(`${it.name}: not in this header (${HEADER}); compared with the upstream 6.18 constant`);
        t.not(it.upstream, undefined, `${it.name} is missing from the header and the test has no upstream value for it`);
        t.is(it.ts, it.upstream!);
      });
    }
  }
}
