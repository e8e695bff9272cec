// pidfd_open(2) / pidfd_getfd(2): take a copy of an fd straight out of another process (same user or
// CAP_SYS_PTRACE; PTRACE_MODE_ATTACH_REALCREDS), e.g. a supervisor grabbing a child's userfaultfd without a
// socket. Both syscalls have the same numbers on x86_64 and aarch64 (abi.ts).
import { errno, syscall6 } from './libc.js';
import { SYS } from './abi.js';
import { SyscallError, Errno } from './errors.js';

const PIDFD_NONBLOCK = 0o4000;

function sysno(name: 'pidfd_open' | 'pidfd_getfd'): number {
  if (!SYS) throw new SyscallError(name, Errno.ENOSYS, `no syscall table for ${process.arch}`);
  return SYS[name];
}

const hints: Record<number, string> = {
  [Errno.ESRCH]: 'no such process (it exited, or the pid is in another pid namespace)',
  [Errno.EPERM]: 'need the same uid as the target and ptrace access (CAP_SYS_PTRACE, or kernel.yama.ptrace_scope=0)',
  [Errno.EBADF]: 'the target has no such fd open (or the pidfd is invalid)',
  [Errno.ENOSYS]: 'kernel too old: pidfd_open needs Linux 5.3, pidfd_getfd 5.6',
};

/** A pidfd (close-on-exec) referring to `pid`; `nonBlocking` sets PIDFD_NONBLOCK (Linux 5.10). */
export function pidfdOpen(pid: number, opts: { nonBlocking?: boolean } = {}): number {
  if (!Number.isInteger(pid) || pid <= 0) throw new SyscallError('pidfd_open', Errno.EINVAL, `pid must be a positive integer, got ${pid}`);
  const fd = Number(syscall6(sysno('pidfd_open'), pid, opts.nonBlocking ? PIDFD_NONBLOCK : 0, 0, 0, 0, 0));
  if (fd < 0) {
    const e = errno();
    throw new SyscallError('pidfd_open', e, `pid ${pid}${hints[e] ? `: ${hints[e]}` : ''}`);
  }
  return fd;
}

/** Duplicate fd `targetFd` of the process behind `pidfd` into this process (the new fd is close-on-exec). */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  if (!Number.isInteger(targetFd) || targetFd < 0) throw new SyscallError('pidfd_getfd', Errno.EINVAL, `target fd must be a non-negative integer, got ${targetFd}`);
  const fd = Number(syscall6(sysno('pidfd_getfd'), pidfd, targetFd, 0, 0, 0, 0));
  if (fd < 0) {
    const e = errno();
    throw new SyscallError('pidfd_getfd', e, `fd ${targetFd} via pidfd ${pidfd}${hints[e] ? `: ${hints[e]}` : ''}`);
  }
  return fd;
}
