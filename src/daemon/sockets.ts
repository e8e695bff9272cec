// Raw socket/pipe calls the daemon's worker threads make on fds they own (never through libuv, which
// would read ahead into its own buffers). Addresses are Numbers so the hot loops allocate nothing.
import { libc, errno, readAt, writeAt } from '../uffd/libc.js';
import { addressOf } from '../uffd/memory.js';
import { SyscallError } from '../uffd/errors.js';
import { setNonBlocking } from '../uffd/events.js';
import { O_CLOEXEC } from '../uffd/abi.js';

const recvFn = libc.func('intptr_t recv(int fd, intptr_t buf, size_t len, int flags)') as (fd: number, buf: number, len: number, flags: number) => number;
const sendFn = libc.func('intptr_t send(int fd, intptr_t buf, size_t len, int flags)') as (fd: number, buf: number, len: number, flags: number) => number;
const shutdownFn = libc.func('int shutdown(int fd, int how)') as (fd: number, how: number) => number;
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;
const pipe2Fn = libc.func('int pipe2(_Out_ int *fds, int flags)');
const setsockoptFn = libc.func('int setsockopt(int fd, int level, int name, void *val, uint32_t len)');
const MSG_PEEK = 0x2;
const peekBuf = Buffer.alloc(1);
const peekAddr = addressOf(peekBuf);

export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_WAITALL = 0x100;
const EINTR = 4;
const EAGAIN = 11;
const F_DUPFD_CLOEXEC = 1030;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/**
 * One receive into [addr, addr+len). `isSocket` false uses read(2) (pipes, exec: transport).
 * Returns bytes (>0), 0 at EOF, or -errno (EINTR retried).
 */
export function recvSome(fd: number, addr: number, len: number, isSocket: boolean, flags = 0): number {
  for (;;) {
    const r = isSocket ? recvFn(fd, addr, len, flags) : readAt(fd, addr, len);
    if (r >= 0) return r;
    const e = errno();
    if (e !== EINTR) return -e;
  }
}

/** Write all of [addr, addr+len) on a blocking fd. 0 or -errno. */
export function sendAll(fd: number, addr: number, len: number, isSocket: boolean): number {
  let done = 0;
  while (done < len) {
    const r = isSocket ? sendFn(fd, addr + done, len - done, MSG_NOSIGNAL) : writeAt(fd, addr + done, len - done);
    if (r > 0) { done += r; continue; }
    const e = r === 0 ? EAGAIN : errno();
    if (e === EINTR) continue;
    return -e;
  }
  return 0;
}

/**
 * Send a short control message without ever blocking the calling thread (the daemon's main thread at the
 * end of a migration: a source that stopped reading must not freeze it). Sockets: MSG_DONTWAIT; pipes
 * (exec:): a plain write, which for a few bytes only blocks on a pipe already full of unread return path.
 * Returns bytes sent or -errno.
 */
export function sendNoWait(fd: number, addr: number, len: number, isSocket: boolean): number {
  for (;;) {
    const r = isSocket ? sendFn(fd, addr, len, MSG_NOSIGNAL | MSG_DONTWAIT) : writeAt(fd, addr, len);
    if (r >= 0) return r;
    const e = errno();
    if (e !== EINTR) return -e;
  }
}

/** Would a read of this socket return at once (bytes waiting, or the peer's EOF)? Consumes nothing. */
export function hasInput(fd: number): boolean {
  return recvFn(fd, peekAddr, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

export function shutdownFd(fd: number, how = SHUT_RDWR): void {
  shutdownFn(fd, how);
}

export function setBlocking(fd: number, blocking: boolean): void {
  setNonBlocking(fd, !blocking);
}

/** dup() with close-on-exec. */
export function dupFd(fd: number): number {
  const r = fcntlFn(fd, F_DUPFD_CLOEXEC, 0);
  if (r < 0) throw new SyscallError('fcntl(F_DUPFD_CLOEXEC)', errno(), `fd ${fd}`);
  return r;
}

/** A pipe [readEnd, writeEnd], both close-on-exec (spawn's dup2 into a child's stdio clears the flag there). */
export function makePipe(): [number, number] {
  const fds = [0, 0];
  if ((pipe2Fn(fds, O_CLOEXEC) as number) < 0) throw new SyscallError('pipe2', errno());
  return [fds[0], fds[1]];
}

/** SO_RCVBUF/SO_SNDBUF and TCP_NODELAY tweaks; failures are ignored (unix sockets reject TCP options). */
export function tuneSocket(fd: number, opts: { noDelay?: boolean; rcvBuf?: number }): void {
  const v = Buffer.alloc(4);
  if (opts.noDelay) { v.writeInt32LE(1); setsockoptFn(fd, 6 /* IPPROTO_TCP */, 1 /* TCP_NODELAY */, v, 4); }
  if (opts.rcvBuf) { v.writeInt32LE(opts.rcvBuf); setsockoptFn(fd, 1 /* SOL_SOCKET */, 8 /* SO_RCVBUF */, v, 4); }
}
