// postcopy-uffd/uffd: the userfaultfd kernel interface, typed.
export * from './abi.js';
export * from './errors.js';
export * from './features.js';
export * from './userfaultfd.js';
export * from './events.js';
export * from './memory.js';
export * from './fdpass.js';
export { libc, errno, strerror, koffi } from './libc.js';
export * from './pidfd.js';
export * from './wake-signal.js';
export * from './fault-server.js';
