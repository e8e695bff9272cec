// The userfaultfd file descriptor: creation (syscall or /dev/userfaultfd), the UFFDIO_API handshake, and every
// range ioctl. Each ioctl has a throwing variant (typed UffdError with `.done`) and, for the fault path,
// a *Raw variant that never allocates or throws: arguments go into one preallocated Buffer per ioctl,
// written through a Uint32Array, and the result is the kernel's result field (bytes done) or -errno.
import fs from 'node:fs';
import createDebug from 'debug';
import {
  SYS, O_CLOEXEC, O_NONBLOCK, O_RDWR, UFFD_USER_MODE_ONLY, UFFD_API, USERFAULTFD_IOC_NEW,
  UFFDIO_API, UFFDIO_API_SIZE, UFFDIO_REGISTER, UFFDIO_REGISTER_SIZE, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFDIO_RANGE_SIZE,
  UFFDIO_COPY, UFFDIO_COPY_SIZE, UFFDIO_ZEROPAGE, UFFDIO_ZEROPAGE_SIZE, UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_SIZE,
  UFFDIO_CONTINUE, UFFDIO_CONTINUE_SIZE, UFFDIO_MOVE, UFFDIO_MOVE_SIZE, UFFDIO_POISON, UFFDIO_POISON_SIZE,
  UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP, UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_COPY_MODE_DONTWAKE, UFFDIO_COPY_MODE_WP, UFFDIO_ZEROPAGE_MODE_DONTWAKE,
  UFFDIO_WRITEPROTECT_MODE_WP, UFFDIO_WRITEPROTECT_MODE_DONTWAKE, UFFDIO_CONTINUE_MODE_DONTWAKE, UFFDIO_CONTINUE_MODE_WP,
  UFFDIO_MOVE_MODE_DONTWAKE, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, UFFDIO_POISON_MODE_DONTWAKE,
  type FeatureName,
} from './abi.js';
import { errno, ioctlPtr, ioctlInt, syscall6, openFn, closeFn } from './libc.js';
import { Errno, UffdError, UffdFeatureError, UffdPermissionError, uffdError } from './errors.js';
import { ensureNonBlocking } from './events.js';
import { encodeFeatures, decodeFeatures, hasFeature, featureBit, type DecodedMask } from './features.js';

const log = createDebug('postcopy:uffd');

const TWO32 = 4294967296;

export type CreateVia = 'syscall' | 'device' | 'auto';

export interface CreateOptions {
  /** 'auto' (default): userfaultfd(2), falling back to /dev/userfaultfd on EPERM/ENOSYS. */
  via?: CreateVia;
  /** O_CLOEXEC (default true). */
  closeOnExec?: boolean;
  /** O_NONBLOCK (default false): read() returns EAGAIN instead of blocking. */
  nonBlocking?: boolean;
  /** UFFD_USER_MODE_ONLY: no privilege needed, but kernel-mode accesses (read(2) into the range) get EFAULT. */
  userModeOnly?: boolean;
}

export interface OpenOptions extends CreateOptions {
  /** Features wanted if the kernel offers them (names or a raw mask; unknown bits tolerated). Default DEFAULT_FEATURES. */
  features?: readonly (FeatureName | string)[] | bigint;
  /** Features that must be offered, else UffdFeatureError. They are enabled too. */
  require?: readonly (FeatureName | string)[];
}

export interface RegisterModes {
  missing?: boolean;
  wp?: boolean;
  minor?: boolean;
}

export interface WakeOpts { dontWake?: boolean }
export interface CopyOpts extends WakeOpts { wp?: boolean }
export interface MoveOpts extends WakeOpts { allowSrcHoles?: boolean }

/** What a throwaway UFFDIO_API probe reports. */
export interface ApiProbe {
  /** Every feature the kernel offers. */
  features: bigint;
  /** ioctls available on the fd after the handshake (mask of 1 << _UFFDIO_*). */
  ioctls: bigint;
  decoded: DecodedMask<FeatureName>;
}

/**
 * Features enabled by `open()` when the caller names none: the capability bits that change nothing for code
 * that does not use them. Left out on purpose, because each changes what a plain MISSING handler sees:
 * EVENT_* (the faulting process blocks until the event is read; EVENT_FORK also needs CAP_SYS_PTRACE),
 * SIGBUS (no events at all), EXACT_ADDRESS (unaligned addresses), WP_UNPOPULATED and WP_ASYNC.
 */
export const DEFAULT_FEATURES: readonly FeatureName[] = [
  'PAGEFAULT_FLAG_WP', 'MISSING_HUGETLBFS', 'MISSING_SHMEM', 'THREAD_ID', 'MINOR_HUGETLBFS', 'MINOR_SHMEM',
  'WP_HUGETLBFS_SHMEM', 'POISON', 'MOVE',
];

const DEVICE_PATH = '/dev/userfaultfd';

function creationFlags(o: CreateOptions): number {
  let flags = 0;
  if (o.closeOnExec ?? true) flags |= O_CLOEXEC;
  if (o.nonBlocking) flags |= O_NONBLOCK;
  if (o.userModeOnly) flags |= UFFD_USER_MODE_ONLY;
  return flags;
}

function permissionHint(via: 'syscall' | 'device', o: CreateOptions): string {
  if (via === 'device') {
    return `open ${DEVICE_PATH} needs read/write permission on the device (e.g. \`setfacl -m u:$USER:rw ${DEVICE_PATH}\`, ` +
      'or a udev rule giving a group access); the device ignores vm.unprivileged_userfaultfd';
  }
  if (o.userModeOnly) return 'userfaultfd(2) refused even with UFFD_USER_MODE_ONLY (seccomp or an LSM policy?)';
  return 'handling kernel-mode faults needs CAP_SYS_PTRACE or `sysctl vm.unprivileged_userfaultfd=1`; ' +
    `alternatively use via:'device' with access to ${DEVICE_PATH}, or userModeOnly:true if only user-space accesses fault`;
}

function createViaSyscall(flags: number, o: CreateOptions): number {
  if (!SYS) throw new Error(`unsupported architecture ${process.arch}`);
  const fd = syscall6(SYS.userfaultfd, flags, 0, 0, 0, 0, 0);
  if (fd < 0) {
    const e = errno();
    throw uffdError({ op: 'userfaultfd(2)', errno: e, hint: e === Errno.EPERM ? permissionHint('syscall', o) : undefined });
  }
  return fd;
}

function createViaDevice(flags: number, o: CreateOptions): number {
  const dev = openFn(DEVICE_PATH, O_RDWR | O_CLOEXEC, 0);
  if (dev < 0) {
    const e = errno();
    const hint = e === Errno.EACCES || e === Errno.EPERM ? permissionHint('device', o)
      : e === Errno.ENOENT ? `${DEVICE_PATH} does not exist (Linux < 6.1 or CONFIG_USERFAULTFD off); use via:'syscall'` : undefined;
    throw uffdError({ op: `open(${DEVICE_PATH})`, errno: e === Errno.EACCES ? Errno.EPERM : e, hint });
  }
  try {
    const fd = ioctlInt(dev, USERFAULTFD_IOC_NEW, flags);
    if (fd < 0) {
      const e = errno();
      throw uffdError({ op: 'USERFAULTFD_IOC_NEW', errno: e, hint: e === Errno.EPERM ? permissionHint('device', o) : undefined });
    }
    return fd;
  } finally {
    closeFn(dev);
  }
}

/** Create a raw userfaultfd (no handshake). */
export function createUffdFd(o: CreateOptions = {}): number {
  const flags = creationFlags(o);
  const via = o.via ?? 'auto';
  if (via === 'syscall') return createViaSyscall(flags, o);
  if (via === 'device') return createViaDevice(flags, o);
  try {
    return createViaSyscall(flags, o);
  } catch (e) {
    if (!(e instanceof UffdError) || (e.errno !== Errno.EPERM && e.errno !== Errno.ENOSYS)) throw e;
    log('userfaultfd(2) failed with %s, trying %s', e.code, DEVICE_PATH);
    try {
      return createViaDevice(flags, o);
    } catch (e2) {
      if (e2 instanceof UffdError && e2.errno === Errno.ENOENT) throw e; // no device: the syscall's error says more
      throw new UffdPermissionError({ op: 'userfaultfd creation', errno: Errno.EPERM,
        hint: `${permissionHint('syscall', o)}. ${DEVICE_PATH} failed too: ${(e2 as Error).message}` });
    }
  }
}

// u64 <-> Number helpers over a Uint32Array (little-endian; both supported arches are LE).
function putU64(u32: Uint32Array, word: number, v: number): void {
  u32[word] = v >>> 0;
  u32[word + 1] = (v / TWO32) >>> 0;
}
function getS64(u32: Uint32Array, i32: Int32Array, word: number): number {
  return i32[word + 1] * TWO32 + u32[word];
}
function getU64(u32: Uint32Array, word: number): number {
  return u32[word + 1] * TWO32 + u32[word];
}
function setBig(dv: DataView, off: number, v: bigint): void { dv.setBigUint64(off, BigInt.asUintN(64, v), true); }

/** One preallocated, 8-byte-aligned argument block (Buffer for koffi + typed views over the same bytes). */
class ArgBlock {
  readonly buf: Buffer;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly dv: DataView;
  constructor(size: number) {
    const ab = new ArrayBuffer(size);
    this.buf = Buffer.from(ab);
    this.u32 = new Uint32Array(ab);
    this.i32 = new Int32Array(ab);
    this.dv = new DataView(ab);
  }
}

/**
 * The kernel's result field (bytes done, or -errno) after an ioctl whose struct ends in one: success → the
 * field; failure with partial progress → the bytes done; otherwise -errno.
 */
function resultOf(rc: number, a: ArgBlock, word: number): number {
  const done = getS64(a.u32, a.i32, word);
  return rc === 0 || done > 0 ? done : -errno();
}

/** ZEROPAGE / CONTINUE / POISON: { range { start, len }, mode, s64 result }. */
function rangeIoctl(fd: number, request: number, a: ArgBlock, addr: number, len: number, mode: number): number {
  const u32 = a.u32;
  putU64(u32, 0, addr); putU64(u32, 2, len); putU64(u32, 4, mode);
  u32[6] = 0; u32[7] = 0;
  return resultOf(ioctlPtr(fd, request, a.buf), a, 6);
}

/** COPY / MOVE: { dst, src, len, mode, s64 result }. */
function transferIoctl(fd: number, request: number, a: ArgBlock, dst: number, src: number, len: number, mode: number): number {
  const u32 = a.u32;
  putU64(u32, 0, dst); putU64(u32, 2, src); putU64(u32, 4, len); putU64(u32, 6, mode);
  u32[8] = 0; u32[9] = 0;
  return resultOf(ioctlPtr(fd, request, a.buf), a, 8);
}

/** Issue UFFDIO_API on `fd`; returns the kernel's reply or throws. */
function apiHandshake(fd: number, features: bigint, apiVersion = UFFD_API): { features: bigint; ioctls: bigint } {
  const a = new ArgBlock(UFFDIO_API_SIZE);
  setBig(a.dv, 0, BigInt(apiVersion));
  setBig(a.dv, 8, features);
  if (ioctlPtr(fd, UFFDIO_API, a.buf) < 0) {
    const e = errno();
    const wanted = decodeFeatures(features);
    let hint: string | undefined;
    if (e === Errno.EPERM && (features & featureBit('EVENT_FORK')) !== 0n) hint = 'UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE';
    else if (e === Errno.EINVAL) hint = `api 0x${apiVersion.toString(16)}, features ${wanted.names.join('|') || '0'}` +
      `${wanted.unknown ? ` + unknown 0x${wanted.unknown.toString(16)}` : ''} (a second UFFDIO_API on one fd also gives EINVAL)`;
    throw uffdError({ op: 'UFFDIO_API', errno: e, hint });
  }
  return { features: a.dv.getBigUint64(8, true), ioctls: a.dv.getBigUint64(16, true) };
}

let probeCache: ApiProbe | undefined;

/**
 * The feature mask open() enables, from what the probe offered: (wanted ∩ offered) ∪ required. Pure, so it
 * can be checked against simulated kernel answers. Bits this library has no name for pass through like any
 * other: offered-but-unknown bits are enabled only when the caller asked for them (a bigint mask), and an
 * unknown bit in `offered` never makes planning fail. Throws UffdFeatureError when a required bit is not offered.
 */
export function planFeatures(offered: bigint, opts: Pick<OpenOptions, 'features' | 'require'> = {}): bigint {
  const required = encodeFeatures(opts.require ?? []);
  const missing = required & ~offered;
  if (missing) {
    const d = decodeFeatures(missing);
    const names: string[] = [...d.names];
    if (d.unknown) names.push(`0x${d.unknown.toString(16)}`);
    throw new UffdFeatureError(names, offered);
  }
  const wanted = encodeFeatures(opts.features ?? DEFAULT_FEATURES);
  return (wanted & offered) | required;
}

export class Userfaultfd {
  /** The descriptor (-1 after close()). */
  fd: number;
  /** Features enabled on this fd (what the handshake asked for; 0n when unknown or no handshake yet). */
  features: bigint;
  /** ioctls the handshake reported (0n when unknown). */
  ioctls: bigint;

  // One argument block per ioctl, reused by every call on this instance (not reentrant across threads:
  // each worker wraps the fd in its own Userfaultfd via fromFd()).
  private readonly reg = new ArgBlock(UFFDIO_REGISTER_SIZE);
  private readonly range = new ArgBlock(UFFDIO_RANGE_SIZE);
  private readonly cp = new ArgBlock(UFFDIO_COPY_SIZE);
  private readonly zp = new ArgBlock(UFFDIO_ZEROPAGE_SIZE);
  private readonly wpa = new ArgBlock(UFFDIO_WRITEPROTECT_SIZE);
  private readonly cont = new ArgBlock(UFFDIO_CONTINUE_SIZE);
  private readonly mv = new ArgBlock(UFFDIO_MOVE_SIZE);
  private readonly poi = new ArgBlock(UFFDIO_POISON_SIZE);

  private constructor(fd: number, features: bigint, ioctls: bigint) {
    this.fd = fd;
    this.features = features;
    this.ioctls = ioctls;
  }

  /** A raw userfaultfd with no handshake yet (call `api()` once before registering). */
  static create(opts: CreateOptions = {}): Userfaultfd {
    return new Userfaultfd(createUffdFd(opts), 0n, 0n);
  }

  /**
   * What the kernel offers: UFFDIO_API with features 0 on a throwaway fd (cached per process).
   * The probe uses userModeOnly when asked, so it works without privileges where open() would.
   */
  static probe(opts: CreateOptions = {}): ApiProbe {
    if (probeCache) return probeCache;
    const fd = createUffdFd({ ...opts, nonBlocking: true, closeOnExec: true });
    try {
      const r = apiHandshake(fd, 0n);
      probeCache = { features: r.features, ioctls: r.ioctls, decoded: decodeFeatures(r.features) };
      log('kernel offers features %s (0x%s)', probeCache.decoded.names.join(','), r.features.toString(16));
      return probeCache;
    } finally {
      closeFn(fd);
    }
  }

  /** Probe, then create the real fd and enable (wanted ∩ offered) ∪ required, once. */
  static open(opts: OpenOptions = {}): Userfaultfd {
    const enable = planFeatures(Userfaultfd.probe(opts).features, opts);
    const fd = createUffdFd(opts);
    try {
      const r = apiHandshake(fd, enable);
      return new Userfaultfd(fd, enable, r.ioctls);
    } catch (e) {
      closeFn(fd);
      throw e;
    }
  }

  /**
   * Wrap an fd that already did the handshake (received over SCM_RIGHTS, or a FORK event's fd).
   * Features are read from /proc/self/fdinfo when not given.
   * The fd keeps its creator's O_NONBLOCK state. Ioctls do not care, but a poll()-driven fault loop does
   * (POLLERR, then a read() that blocks): `nonBlocking: 'set'` switches it on here, 'throw' refuses a
   * blocking fd (UffdEventReader does the same by default).
   */
  static fromFd(fd: number, features?: bigint, opts: { nonBlocking?: 'set' | 'throw' | 'keep' } = {}): Userfaultfd {
    if (opts.nonBlocking && opts.nonBlocking !== 'keep') ensureNonBlocking(fd, opts.nonBlocking);
    return new Userfaultfd(fd, features ?? readFdinfoFeatures(fd) ?? 0n, 0n);
  }

  /** UFFDIO_API on a create()d fd. Allowed once per fd; features are used as given (bits unknown here included). */
  api(features: readonly (FeatureName | string)[] | bigint = 0n, apiVersion = UFFD_API): { features: bigint; ioctls: bigint } {
    const want = encodeFeatures(features);
    const r = apiHandshake(this.fd, want, apiVersion);
    this.features = want;
    this.ioctls = r.ioctls;
    return r;
  }

  /** Is this feature enabled on the fd? */
  has(name: FeatureName): boolean {
    return hasFeature(this.features, name);
  }

  /** UFFDIO_REGISTER; returns the ioctl mask (1 << _UFFDIO_*) valid on the range. */
  register(addr: number, len: number, modes: RegisterModes): number {
    const mode = (modes.missing ? UFFDIO_REGISTER_MODE_MISSING : 0) | (modes.wp ? UFFDIO_REGISTER_MODE_WP : 0) |
      (modes.minor ? UFFDIO_REGISTER_MODE_MINOR : 0);
    return this.registerMode(addr, len, mode);
  }

  /** UFFDIO_REGISTER with a raw UFFDIO_REGISTER_MODE_* mask. */
  registerMode(addr: number, len: number, mode: number): number {
    const { u32, buf } = this.reg;
    putU64(u32, 0, addr); putU64(u32, 2, len); putU64(u32, 4, mode); putU64(u32, 6, 0);
    if (ioctlPtr(this.fd, UFFDIO_REGISTER, buf) < 0) throw uffdError({ op: 'UFFDIO_REGISTER', errno: errno(), addr, len });
    return getU64(u32, 6);
  }

  unregister(addr: number, len: number): void {
    const { u32, buf } = this.range;
    putU64(u32, 0, addr); putU64(u32, 2, len);
    if (ioctlPtr(this.fd, UFFDIO_UNREGISTER, buf) < 0) throw uffdError({ op: 'UFFDIO_UNREGISTER', errno: errno(), addr, len });
  }

  // ----- hot path: no allocation, no throw -----

  /** UFFDIO_COPY. Returns bytes copied (may be < len on partial progress) or -errno. `src` is an address. */
  copyRaw(dst: number, src: number, len: number, mode: number): number {
    return transferIoctl(this.fd, UFFDIO_COPY, this.cp, dst, src, len, mode);
  }

  /** UFFDIO_ZEROPAGE. Bytes zero-mapped or -errno. */
  zeropageRaw(addr: number, len: number, mode: number): number {
    return rangeIoctl(this.fd, UFFDIO_ZEROPAGE, this.zp, addr, len, mode);
  }

  /** UFFDIO_CONTINUE. Bytes mapped or -errno. */
  continueRaw(addr: number, len: number, mode: number): number {
    return rangeIoctl(this.fd, UFFDIO_CONTINUE, this.cont, addr, len, mode);
  }

  /** UFFDIO_MOVE. Bytes moved or -errno. */
  moveRaw(dst: number, src: number, len: number, mode: number): number {
    return transferIoctl(this.fd, UFFDIO_MOVE, this.mv, dst, src, len, mode);
  }

  /** UFFDIO_POISON. Bytes poisoned or -errno. */
  poisonRaw(addr: number, len: number, mode: number): number {
    return rangeIoctl(this.fd, UFFDIO_POISON, this.poi, addr, len, mode);
  }

  /** UFFDIO_WAKE. 0 or -errno. */
  wakeRaw(addr: number, len: number): number {
    const { u32, buf } = this.range;
    putU64(u32, 0, addr); putU64(u32, 2, len);
    return ioctlPtr(this.fd, UFFDIO_WAKE, buf) === 0 ? 0 : -errno();
  }

  /** UFFDIO_WRITEPROTECT. 0 or -errno. */
  writeProtectRaw(addr: number, len: number, mode: number): number {
    const { u32, buf } = this.wpa;
    putU64(u32, 0, addr); putU64(u32, 2, len); putU64(u32, 4, mode);
    return ioctlPtr(this.fd, UFFDIO_WRITEPROTECT, buf) === 0 ? 0 : -errno();
  }

  /**
   * The raw result field of the last call of that ioctl on this instance (what the kernel wrote back:
   * bytes done or -errno, 0 if it wrote nothing). The mmap-changing tests check it is -EAGAIN.
   */
  lastResultField(op: 'copy' | 'zeropage' | 'continue' | 'move' | 'poison'): number {
    switch (op) {
      case 'copy': return getS64(this.cp.u32, this.cp.i32, 8);
      case 'move': return getS64(this.mv.u32, this.mv.i32, 8);
      case 'zeropage': return getS64(this.zp.u32, this.zp.i32, 6);
      case 'continue': return getS64(this.cont.u32, this.cont.i32, 6);
      case 'poison': return getS64(this.poi.u32, this.poi.i32, 6);
    }
  }

  // ----- throwing variants -----

  private check(op: string, r: number, addr: number, len: number): number {
    if (r < 0) throw uffdError({ op, errno: -r, addr, len });
    if (r < len) throw uffdError({ op, errno: Errno.EAGAIN, addr, len, done: r });
    return r;
  }

  /** Copy `len` bytes from address `src` into the registered range at `dst`; returns bytes copied. */
  copy(dst: number, src: number, len: number, opts: CopyOpts = {}): number {
    const mode = (opts.dontWake ? UFFDIO_COPY_MODE_DONTWAKE : 0) | (opts.wp ? UFFDIO_COPY_MODE_WP : 0);
    return this.check('UFFDIO_COPY', this.copyRaw(dst, src, len, mode), dst, len);
  }

  zeropage(addr: number, len: number, opts: WakeOpts = {}): number {
    return this.check('UFFDIO_ZEROPAGE', this.zeropageRaw(addr, len, opts.dontWake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0), addr, len);
  }

  continue(addr: number, len: number, opts: CopyOpts = {}): number {
    const mode = (opts.dontWake ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0) | (opts.wp ? UFFDIO_CONTINUE_MODE_WP : 0);
    return this.check('UFFDIO_CONTINUE', this.continueRaw(addr, len, mode), addr, len);
  }

  move(dst: number, src: number, len: number, opts: MoveOpts = {}): number {
    const mode = (opts.dontWake ? UFFDIO_MOVE_MODE_DONTWAKE : 0) | (opts.allowSrcHoles ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0);
    return this.check('UFFDIO_MOVE', this.moveRaw(dst, src, len, mode), dst, len);
  }

  poison(addr: number, len: number, opts: WakeOpts = {}): number {
    return this.check('UFFDIO_POISON', this.poisonRaw(addr, len, opts.dontWake ? UFFDIO_POISON_MODE_DONTWAKE : 0), addr, len);
  }

  wake(addr: number, len: number): void {
    const r = this.wakeRaw(addr, len);
    if (r < 0) throw uffdError({ op: 'UFFDIO_WAKE', errno: -r, addr, len });
  }

  writeProtect(addr: number, len: number, opts: { wp: boolean; dontWake?: boolean }): void {
    const mode = (opts.wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) | (opts.dontWake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
    const r = this.writeProtectRaw(addr, len, mode);
    if (r < 0) throw uffdError({ op: 'UFFDIO_WRITEPROTECT', errno: -r, addr, len });
  }

  close(): void {
    if (this.fd < 0) return;
    closeFn(this.fd);
    this.fd = -1;
  }
}

/**
 * Bits of the fdinfo feature word that are kernel bookkeeping, not features: the kernel keeps ctx->features
 * in an unsigned int and uses bit 31 as UFFD_FEATURE_INITIALIZED (set once UFFDIO_API succeeded). Only bits
 * 0..30 can be uAPI features, so everything from bit 31 up is masked out (unknown bits below stay: a newer
 * kernel's feature is still a feature).
 */
export const UFFD_FDINFO_INTERNAL_BITS = ~((1n << 31n) - 1n) & 0xffffffffffffffffn;

/** The feature mask in an fdinfo text ("API:\t<api>:<features>:<ioctls>"), internal bits removed. */
export function parseFdinfoFeatures(text: string): bigint | undefined {
  const m = /^API:\s*([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)/m.exec(text);
  return m ? BigInt(`0x${m[2]}`) & ~UFFD_FDINFO_INTERNAL_BITS : undefined;
}

/** The enabled feature mask of a handshaken uffd, from /proc/self/fdinfo (kernel-internal bits removed). */
export function readFdinfoFeatures(fd: number): bigint | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch {
    return undefined;
  }
  return parseFdinfoFeatures(text);
}
