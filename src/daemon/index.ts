// postcopy-uffd/daemon: the destination side of a post-copy migration (postcopy-daemon, issue 4).
export { startDaemon, type DaemonOptions, type DaemonHandle } from './daemon.js';
export { runSession, type SessionOptions, type SessionResult } from './session.js';
export { ControlServer, ControlClient, recvHello, recvHelloAsync, HelloReceiver, peerPid, type HelloMessage } from './control.js';
export { MigrationListener, parseListenSpec, type ListenSpec, type MigrationChannels } from './listener.js';
export { parseHello, WireMap, type ControlHello, type PlacementMode } from './regions.js';
export { PageSink, placementError } from './page-sink.js';
export { RequestEncoder } from './requests.js';
export { SharedStats, snapshot, formatSummary, F as StatField, type MigrationStats } from './stats.js';
export { DaemonError, type DaemonErrorCode } from './errors.js';
export { spawnWorkerPair, STATE_SECTION, type WorkerPair } from './worker-common.js';
