// postcopy-uffd: post-copy live migration of a process's memory on Linux userfaultfd.
// Each layer is also importable on its own (postcopy-uffd/uffd, /protocol, /umem-compat, /source,
// /daemon, /dest); the root re-exports them as namespaces plus the handful of calls most users need.
export * as uffd from './uffd/index.js';
export * as protocol from './protocol/index.js';
export * as umem from './umem-compat/index.js';
export * as source from './source/index.js';
export * as daemon from './daemon/index.js';
export * as dest from './dest/index.js';

export { Userfaultfd, UffdEventReader, UffdError } from './uffd/index.js';
export { UmemDevice } from './umem-compat/index.js';
export { StreamDecoder, StreamEncoder, RamImage, ProtocolError } from './protocol/index.js';
export { migrate, createMigratableRegion, serveMigrationAgent, MigrationError } from './source/index.js';
export { startDaemon, DaemonError } from './daemon/index.js';
export { prepareDestRegion, attachToDaemon, AttachError } from './dest/index.js';
