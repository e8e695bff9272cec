// The one place that loads libc through koffi. Other modules declare the functions they need on `libc`
// (koffi caches identical declarations) and read errno with `errno()` right after a failing call.
import koffi from 'koffi';

export const libc = koffi.load('libc.so.6');

/** errno of the last failing FFI call on this thread (koffi saves it per call). */
export function errno(): number {
  return koffi.errno();
}

const strerrorFn = libc.func('const char *strerror(int errnum)');

export function strerror(code: number): string {
  return strerrorFn(code) as string;
}

export { koffi };

// ---------------------------------------------------------------------------------------------------------
// Plain libc calls shared by the uffd modules (declared once here so no module keeps a second copy).
// Pointer arguments are `void *` taking Buffers (hot path: preallocated) and addresses are `uintptr_t`
// Numbers; return values that may be addresses are `intptr_t` so failure (-1) stays a Number.

/** ioctl with a pointer argument (Buffer). Fixed (int, unsigned long, void *) form: ABI-safe for the variadic ioctl. */
export const ioctlPtr = libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (fd: number, req: number, arg: Buffer | null) => number;
/** ioctl whose argument is an integer value (e.g. USERFAULTFD_IOC_NEW flags). */
export const ioctlInt = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (fd: number, req: number, arg: number) => number;
/** syscall(2) with up to 6 integer arguments (pass 0 for unused ones). */
export const syscall6 = libc.func('syscall', 'long', ['long', 'long', 'long', 'long', 'long', 'long', 'long']) as (
  nr: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number) => number;
export const closeFn = libc.func('int close(int fd)') as (fd: number) => number;
export const readFn = libc.func('long read(int fd, void *buf, size_t count)') as (fd: number, buf: Buffer, count: number) => number;
export const writeFn = libc.func('long write(int fd, void *buf, size_t count)') as (fd: number, buf: Buffer, count: number) => number;
/** read/write at a raw address (Number), e.g. into a mapped region. */
export const readAt = libc.func('read', 'long', ['int', 'uintptr_t', 'size_t']) as (fd: number, addr: number, count: number) => number;
export const writeAt = libc.func('write', 'long', ['int', 'uintptr_t', 'size_t']) as (fd: number, addr: number, count: number) => number;
export const openFn = libc.func('int open(const char *path, int flags, int mode)') as (path: string, flags: number, mode: number) => number;
export const mmapFn = libc.func('mmap', 'intptr_t', ['uintptr_t', 'size_t', 'int', 'int', 'int', 'int64_t']) as (
  addr: number, len: number, prot: number, flags: number, fd: number, off: number) => number;
export const munmapFn = libc.func('munmap', 'int', ['uintptr_t', 'size_t']) as (addr: number, len: number) => number;
export const mremapFn = libc.func('mremap', 'intptr_t', ['uintptr_t', 'size_t', 'size_t', 'int', 'uintptr_t']) as (
  addr: number, oldLen: number, newLen: number, flags: number, newAddr: number) => number;
export const madviseFn = libc.func('madvise', 'int', ['uintptr_t', 'size_t', 'int']) as (addr: number, len: number, advice: number) => number;
export const mprotectFn = libc.func('mprotect', 'int', ['uintptr_t', 'size_t', 'int']) as (addr: number, len: number, prot: number) => number;
export const ftruncateFn = libc.func('int ftruncate(int fd, int64_t length)') as (fd: number, len: number) => number;
export const fallocateFn = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as (
  fd: number, mode: number, offset: number, len: number) => number;
export const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)') as (fds: Buffer, nfds: number, timeoutMs: number) => number;
export const sysconfFn = libc.func('long sysconf(int name)') as (name: number) => number;
export const gettidFn = libc.func('int gettid()') as () => number;
/** memcpy between raw addresses (Numbers); for tests and bulk moves, never on a registered range from the resolver. */
export const memcpyAt = libc.func('memcpy', 'uintptr_t', ['uintptr_t', 'uintptr_t', 'size_t']) as (dst: number, src: number, n: number) => number;
