// O_NONBLOCK on a received descriptor. The umem read() emulation polls and then reads the uffd; with more
// than one possible waker (a mark from another thread wakes a queued fault, which removes its message), the
// read must never block, so the fd is switched to non-blocking when a device attaches to it.
// TODO(H5): src/uffd has no exported fcntl helper (fdpass.ts keeps a private one); move this there.
import { libc, errno } from '../uffd/libc.js';
import { O_NONBLOCK } from '../uffd/abi.js';
import { SyscallError } from '../uffd/errors.js';

const F_GETFL = 3;
const F_SETFL = 4;
const fcntlFn = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;

/** Set O_NONBLOCK; returns whether it was already set. Affects every holder of the open file description. */
export function setNonBlocking(fd: number): boolean {
  const fl = fcntlFn(fd, F_GETFL, 0);
  if (fl < 0) throw new SyscallError('fcntl(F_GETFL)', errno(), `fd ${fd}`);
  if (fl & O_NONBLOCK) return true;
  if (fcntlFn(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw new SyscallError('fcntl(F_SETFL)', errno(), `fd ${fd}`);
  return false;
}
