// Creation and the UFFDIO_API handshake, for both creation paths (kernel uffd-unit-tests: API test run twice).
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import {
  Userfaultfd, UffdError, UffdInvalidError, UffdFeatureError, UffdEventReader, decodeFeatures, encodeFeatures,
  featureBit, FEATURE_NAMES, KNOWN_FEATURES_MASK, DEFAULT_FEATURES, readFdinfoFeatures, parseFdinfoFeatures, UFFD_FDINFO_INTERNAL_BITS,
  ensureNonBlocking, isNonBlocking, UFFD_API, uffdError, Errno, planFeatures, decodeIoctls, ioctlAllowed,
  UffdExistsError, UffdAgainError, UffdNoEntryError, UffdNoProcessError, UffdBusyError, UffdNoMemoryError, UffdPermissionError,
} from '../../src/uffd/index.js';
import { runInChild } from '../helpers/child.js';

const paths = ['syscall', 'device'] as const;
const deviceMissing = !fs.existsSync('/dev/userfaultfd');

for (const via of paths) {
  const t0 = via === 'device' && deviceMissing ? test.skip : test;
  const sfx = via === 'device' && deviceMissing ? ' (skipped: /dev/userfaultfd not present)' : '';

  t0(`api via ${via}: a probe with features 0 reports what the kernel offers${sfx}`, (t) => {
    const u = Userfaultfd.create({ via });
    try {
      const r = u.api(0n);
      t.true(r.features > 0n, 'some feature offered');
      t.true((r.ioctls & (1n << 0x3fn)) !== 0n || (r.ioctls & 1n) !== 0n, 'REGISTER/API in the ioctl mask');
      t.true((r.ioctls & 1n) !== 0n, '_UFFDIO_REGISTER bit set');
    } finally { u.close(); }
  });

  t0(`api via ${via}: a second UFFDIO_API on the same fd fails with EINVAL${sfx}`, (t) => {
    const u = Userfaultfd.create({ via });
    try {
      u.api(0n);
      const e = t.throws(() => u.api(0n), { instanceOf: UffdInvalidError });
      t.is(e?.code, 'EINVAL');
      t.regex(e!.message, /second UFFDIO_API/);
    } finally { u.close(); }
  });

  t0(`api via ${via}: a wrong api version fails with EINVAL${sfx}`, (t) => {
    const u = Userfaultfd.create({ via });
    try {
      const e = t.throws(() => u.api(0n, UFFD_API + 1), { instanceOf: UffdError });
      t.is(e?.code, 'EINVAL');
    } finally { u.close(); }
  });

  t0(`api via ${via}: feature bit 63 is rejected (EINVAL) or masked, never crashes${sfx}`, (t) => {
    const u = Userfaultfd.create({ via });
    try {
      try {
        const r = u.api(1n << 63n);
        t.is(r.features & (1n << 63n), 0n, 'kernel that masks unknown bits does not report them back');
      } catch (e) {
        t.is((e as UffdError).code, 'EINVAL');
      }
    } finally { u.close(); }
  });

  t0(`open via ${via}: probe then enable the wanted subset once${sfx}`, (t) => {
    const u = Userfaultfd.open({ via, features: ['THREAD_ID', 'MOVE'] });
    try {
      const offered = Userfaultfd.probe().features;
      t.is(u.features, encodeFeatures(['THREAD_ID', 'MOVE']) & offered);
      t.true(u.has('THREAD_ID'));
      t.false(u.has('SIGBUS'));
      t.is(readFdinfoFeatures(u.fd), u.features, 'fdinfo shows exactly the enabled set');
    } finally { u.close(); }
  });
}

test('create flags: nonBlocking read returns 0 instead of blocking; closeOnExec sets FD_CLOEXEC', (t) => {
  const u = Userfaultfd.open({ nonBlocking: true, closeOnExec: true });
  try {
    t.is(new UffdEventReader(u.fd).read(), 0);
    const info = fs.readFileSync(`/proc/self/fdinfo/${u.fd}`, 'utf8');
    const flags = parseInt(/^flags:\s*(\d+)/m.exec(info)![1], 8);
    t.true((flags & 0o4000) !== 0, 'O_NONBLOCK');
    t.true((flags & 0o2000000) !== 0, 'O_CLOEXEC');
  } finally { u.close(); }
  const v = Userfaultfd.open({ closeOnExec: false });
  try {
    const flags = parseInt(/^flags:\s*(\d+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${v.fd}`, 'utf8'))![1], 8);
    t.is(flags & 0o2000000, 0, 'no O_CLOEXEC when asked');
    t.is(flags & 0o4000, 0, 'blocking by default');
  } finally { v.close(); }
});

test('userModeOnly creation works on both paths', (t) => {
  for (const via of deviceMissing ? (['syscall'] as const) : paths) {
    const u = Userfaultfd.open({ via, userModeOnly: true });
    t.true(u.fd >= 0);
    u.close();
  }
});

test('open() with an unknown required bit fails clearly; unknown wanted bits are dropped, not fatal', (t) => {
  const u = Userfaultfd.open({ features: (1n << 40n) | featureBit('THREAD_ID') });
  t.is(u.features & (1n << 40n), 0n);
  u.close();
  const e = t.throws(() => Userfaultfd.open({ require: ['NOT_A_FEATURE'] }), { instanceOf: TypeError });
  t.regex(e!.message, /unknown userfaultfd feature 'NOT_A_FEATURE'/);
});

test('DEFAULT_FEATURES leave out the behaviour-changing bits', (t) => {
  for (const n of ['SIGBUS', 'EVENT_FORK', 'EVENT_REMOVE', 'EVENT_UNMAP', 'EVENT_REMAP', 'WP_ASYNC', 'EXACT_ADDRESS', 'WP_UNPOPULATED'] as const) {
    t.false(DEFAULT_FEATURES.includes(n), n);
  }
  const u = Userfaultfd.open();
  t.false(u.has('SIGBUS'));
  t.true(u.has('MISSING_SHMEM'));
  u.close();
});

test('feature masks decode into the 17 names plus unknown bits, and round-trip', (t) => {
  t.is(FEATURE_NAMES.length, 17);
  t.is(KNOWN_FEATURES_MASK, 0x1ffffn);
  const d = decodeFeatures(0x1ffffn | (1n << 20n) | (1n << 63n));
  t.is(d.names.length, 17);
  t.is(d.unknown, (1n << 20n) | (1n << 63n));
  t.is(encodeFeatures(d.names) | d.unknown, 0x1ffffn | (1n << 20n) | (1n << 63n));
  t.deepEqual(decodeFeatures(featureBit('POISON')).names, ['POISON']);
  t.is(featureBit('UFFD_FEATURE_MOVE'), 1n << 16n);
  t.deepEqual(decodeFeatures(0n), { names: [], unknown: 0n });
});

test('a simulated kernel answer with unknown bits (a newer kernel) is tolerated and preserved', (t) => {
  // What a future kernel might answer to the probe: all 17 known features plus bits 17 and 40.
  const future = (1n << 17n) | (1n << 40n);
  const offered = KNOWN_FEATURES_MASK | future;
  const d = decodeFeatures(offered);
  t.is(d.names.length, 17, 'every known name decoded');
  t.is(d.unknown, future, 'unknown bits kept, not dropped or rejected');
  t.is(planFeatures(offered) & future, 0n, 'names-only requests never enable bits nobody asked for');
  t.is(planFeatures(offered), encodeFeatures(DEFAULT_FEATURES));
  t.is(planFeatures(offered, { features: offered }), offered, 'a raw mask asks for unknown bits too, and gets them when offered');
  t.is(planFeatures(KNOWN_FEATURES_MASK, { features: offered }), KNOWN_FEATURES_MASK, 'unknown bits not offered are simply not enabled');
  t.is(planFeatures(offered, { features: ['MOVE'], require: ['POISON'] }), featureBit('MOVE') | featureBit('POISON'));
  const e = t.throws(() => planFeatures(featureBit('MOVE'), { require: ['POISON', 'MOVE'] }), { instanceOf: UffdFeatureError });
  t.deepEqual(e?.missing, ['POISON']);
  // Ioctl masks: a future _UFFDIO_ bit (9) and one far up (50) survive decoding; known ones still answer.
  const mask = (1n << 2n) | (1n << 3n) | (1n << 9n) | (1n << 50n);
  t.deepEqual(decodeIoctls(mask), { names: ['wake', 'copy'], unknown: (1n << 9n) | (1n << 50n) });
  t.true(ioctlAllowed(mask, 'copy'));
  t.false(ioctlAllowed(mask, 'move'));
  t.true(ioctlAllowed(Number(mask & 0xffffn), 'wake'), 'a Number mask (what register() returns) works too');
});

test('the probe on 6.18 offers all 17 features (from 6.8 on, when MOVE, the last of them, landed)', (t) => {
  const p = Userfaultfd.probe();
  const missing = FEATURE_NAMES.filter((n) => !p.decoded.names.includes(n));
  const [major, minor] = os.release().split('.').map(Number);
  t.log(`kernel ${os.release()} offers ${p.decoded.names.length} named features${missing.length ? `; lacks ${missing.join(', ')}` : ''}` +
    `${p.decoded.unknown ? `; unknown bits 0x${p.decoded.unknown.toString(16)}` : ''}`);
  if (major > 6 || (major === 6 && minor >= 8)) t.deepEqual(missing, [], 'every named feature offered');
  else t.true(p.decoded.names.length > 0, 'an older kernel still offers some features');
  t.is(encodeFeatures(p.decoded.names) | p.decoded.unknown, p.features, 'names + unknown bits = the raw answer');
});

test('fromFd wraps a handshaken fd and recovers its features from fdinfo', (t) => {
  const u = Userfaultfd.open({ features: ['THREAD_ID', 'POISON'] });
  const w = Userfaultfd.fromFd(u.fd);
  t.is(w.features, u.features);
  t.true(w.has('POISON'));
  u.close();
});

test('errno → typed error classes carry code, errno, done and a readable message', (t) => {
  const cases: [number, new (...a: never[]) => UffdError][] = [
    [Errno.EEXIST, UffdExistsError], [Errno.EAGAIN, UffdAgainError], [Errno.ENOENT, UffdNoEntryError],
    [Errno.ESRCH, UffdNoProcessError], [Errno.EINVAL, UffdInvalidError], [Errno.EBUSY, UffdBusyError],
    [Errno.ENOMEM, UffdNoMemoryError], [Errno.EPERM, UffdPermissionError],
  ];
  for (const [n, Cls] of cases) {
    const e = uffdError({ op: 'UFFDIO_COPY', errno: n, addr: 0x1000, len: 8192, done: 4096 });
    t.true(e instanceof Cls && e instanceof UffdError && e instanceof Error);
    t.is(e.errno, n);
    t.is(e.done, 4096);
    t.regex(e.message, new RegExp(`UFFDIO_COPY failed: ${e.code} .* at 0x1000 len 8192 after 4096 bytes`));
  }
  t.is(uffdError({ op: 'x', errno: 999 }).code, 'E999');
});

test('UffdFeatureError names the missing features', (t) => {
  const e = new UffdFeatureError(['MOVE'], 0x3n);
  t.is(e.code, 'EFEATURE');
  t.regex(e.message, /not supported by this kernel: MOVE \(kernel offers 0x3\)/);
});

const nobodyCanRun = process.getuid?.() === 0;
(nobodyCanRun ? test : test.skip)('EPERM for an unprivileged user names what to do (sysctl, CAP_SYS_PTRACE, device, user-mode-only)', async (t) => {
  const sysctl = fs.readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
  const r = await runInChild(new URL('./children/unprivileged.js', import.meta.url).href, 'tryCreate', undefined, { uid: 65534, gid: 65534 });
  t.true(r.ok, r.summary);
  const res = r.result as Record<string, { code?: string; message?: string; ok?: boolean }>;
  if (sysctl === '0') {
    t.is(res.syscall.code, 'EPERM');
    t.regex(res.syscall.message!, /vm\.unprivileged_userfaultfd/);
    t.regex(res.syscall.message!, /CAP_SYS_PTRACE/);
    t.regex(res.syscall.message!, /userModeOnly/);
  } else {
    t.log(`vm.unprivileged_userfaultfd=${sysctl}: the syscall is allowed for everyone`);
  }
  t.true(res.userModeOnly.ok, 'user-mode-only creation needs no privilege');
  if (res.device.code) {
    t.is(res.device.code, 'EPERM');
    t.regex(res.device.message!, /permission on the device/);
  }
  if (sysctl === '0' && res.device.code) {
    // 'auto' tried both paths: its one error names all four ways out.
    t.is(res.auto.code, 'EPERM');
    for (const remedy of [/vm\.unprivileged_userfaultfd/, /CAP_SYS_PTRACE/, /permission on the device/, /userModeOnly/]) t.regex(res.auto.message!, remedy);
  }
});

test('fdinfo features: the kernel-internal UFFD_FEATURE_INITIALIZED bit (1 << 31) and anything above is masked out', (t) => {
  // The kernel prints ctx->features, which carries bit 31 once UFFDIO_API succeeded.
  t.is(parseFdinfoFeatures('pos:\t0\nflags:\t02004002\nAPI:\taa:80000041:c000000000000003\n'), 0x41n);
  t.is(parseFdinfoFeatures('API:\taa:ffffffffffffffff:0\n'), (1n << 31n) - 1n, 'only bits 0..30 can be features');
  t.is(parseFdinfoFeatures('API:\taa:40000000:0\n'), 0x40000000n, 'an unknown bit below 31 is kept (a newer kernel\'s feature)');
  t.is(parseFdinfoFeatures('flags:\t02\n'), undefined, 'no API line: unknown');
  t.is(UFFD_FDINFO_INTERNAL_BITS & KNOWN_FEATURES_MASK, 0n, 'no named feature is treated as internal');
  const u = Userfaultfd.open({ features: ['THREAD_ID'] });
  try {
    const raw = /^API:\s*[0-9a-f]+:([0-9a-f]+):/m.exec(fs.readFileSync(`/proc/self/fdinfo/${u.fd}`, 'utf8'))?.[1];
    t.log(`fdinfo feature word on this kernel: 0x${raw}`);
    const got = readFdinfoFeatures(u.fd)!;
    t.is(got & (1n << 31n), 0n, 'bit 31 never reported');
    t.is(got, u.features);
    t.is(Userfaultfd.fromFd(u.fd).features, u.features, 'fromFd reads the real features');
  } finally { u.close(); }
});

test('blocking uffd: ensureNonBlocking sets O_NONBLOCK or throws a clear error; fromFd and UffdEventReader apply it', (t) => {
  const u = Userfaultfd.open(); // blocking by default
  try {
    t.false(isNonBlocking(u.fd));
    const err = t.throws(() => ensureNonBlocking(u.fd, 'throw'));
    t.regex(err?.message ?? '', /blocking.*POLLERR/);
    t.throws(() => new UffdEventReader(u.fd, 8, { blocking: 'throw' }), { message: /O_NONBLOCK/ });
    t.false(isNonBlocking(u.fd), 'throw leaves the fd alone');
    new UffdEventReader(u.fd, 8, { blocking: 'allow' });
    t.false(isNonBlocking(u.fd), "'allow' keeps a blocking reader");
    Userfaultfd.fromFd(u.fd, undefined, { nonBlocking: 'keep' });
    t.false(isNonBlocking(u.fd));
    const r = new UffdEventReader(u.fd); // default: make it pollable
    t.true(isNonBlocking(u.fd));
    t.is(r.read(), 0, 'read returns 0 at once instead of blocking');
    t.true(ensureNonBlocking(u.fd), 'already non-blocking');
  } finally { u.close(); }
  const v = Userfaultfd.open();
  try {
    Userfaultfd.fromFd(v.fd, undefined, { nonBlocking: 'set' });
    t.true(isNonBlocking(v.fd));
  } finally { v.close(); }
});
