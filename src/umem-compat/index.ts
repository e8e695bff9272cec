// postcopy-uffd/umem-compat: the seed's umem device API (June 2012 read()/write() semantics, plus the
// 2011 names) served by userfaultfd, with a 'minor' (memfd + UFFDIO_CONTINUE) and a 'missing'
// (UFFDIO_COPY) backend. The daemon's page-serving logic is written against UmemDevice.
export * from './constants.js';
export * from './errors.js';
export * from './regions.js';
export * from './page-state.js';
export { encodeOffsets, decodeOffsets, HOST_LITTLE_ENDIAN } from './offsets.js';
export * from './device.js';
