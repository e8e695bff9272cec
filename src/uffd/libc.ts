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
