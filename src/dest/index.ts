// postcopy-uffd/dest: the destination process's side — prepare its memory and hand it to postcopy-daemon.
export * from './attach.js';
export { ControlReader, ControlProtocolError } from './control-reader.js';
