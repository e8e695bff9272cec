// A signal that interrupts one thread's blocking system call (read() on a blocking uffd returns EINTR), so a
// fault loop can wait in read() itself — one system call per wake-up, as a C handler does — and still be
// stopped. The handler must be native and installed without SA_RESTART (Node's own signal handlers restart
// system calls), and it must do nothing: libc's getpid is used, which ignores its argument and is
// async-signal-safe. Real-time signal SIGRTMAX-3 is taken only while nobody else handles it.
import createDebug from 'debug';
import { libc, errno } from './libc.js';
import { addressOf } from './memory.js';

const log = createDebug('postcopy:uffd:wake-signal');

const dlsymFn = libc.func('dlsym', 'uintptr_t', ['uintptr_t', 'const char *']) as (handle: number, name: string) => number;
const sigactionFn = libc.func('sigaction', 'int', ['int', 'uintptr_t', 'uintptr_t']) as (sig: number, act: number, old: number) => number;
const tgkillFn = libc.func('tgkill', 'int', ['int', 'int', 'int']) as (tgid: number, tid: number, sig: number) => number;
const rtmaxFn = libc.func('__libc_current_sigrtmax', 'int', []) as () => number;

/** glibc's struct sigaction: handler, 128-byte mask, flags, restorer (same layout on x86_64 and aarch64). */
const SIGACTION_SIZE = 152;
const SA_FLAGS_OFFSET = 136;
const SIG_DFL = 0;
const SA_RESTART = 0x10000000;

let installed: number | null = null;

/**
 * The wake signal's number, installing its handler on first use and checking it is still ours on every
 * call; null when it cannot be had (another handler owns it, or sigaction failed): callers then keep a
 * poll()-based wait.
 */
export function wakeSignal(): number | null {
  const sig = rtmaxFn() - 3;
  const handler = dlsymFn(0 /* RTLD_DEFAULT */, 'getpid');
  const old = Buffer.alloc(SIGACTION_SIZE);
  if (!handler || sigactionFn(sig, 0, addressOf(old)) !== 0) {
    log('signal %d: no handler address or sigaction query failed (errno %d)', sig, errno());
    return null;
  }
  const current = old.readBigUInt64LE(0);
  const flags = old.readInt32LE(SA_FLAGS_OFFSET);
  // Checked on every call (once per worker): someone may have taken the signal since, or added SA_RESTART.
  if (installed === sig && current === BigInt(handler) && (flags & SA_RESTART) === 0) return sig;
  if (current !== BigInt(SIG_DFL) && current !== BigInt(handler)) {
    log('signal %d already has a handler: wake-ups stay poll()-based', sig);
    return null;
  }
  const act = Buffer.alloc(SIGACTION_SIZE); // empty mask; flags 0: no SA_RESTART, so blocking calls return EINTR
  act.writeBigUInt64LE(BigInt(handler), 0);
  act.writeInt32LE(0, SA_FLAGS_OFFSET);
  if (sigactionFn(sig, addressOf(act), 0) !== 0) {
    log('sigaction(%d) failed: errno %d', sig, errno());
    return null;
  }
  installed = sig;
  return sig;
}

/** Interrupt thread `tid` of this process (its blocking system call returns EINTR). False if it is gone. */
export function wakeThread(tid: number, sig: number): boolean {
  return tgkillFn(process.pid, tid, sig) === 0;
}
