// Errors of the destination daemon: one class, a `code` to switch on, and a message that says what happened.
export type DaemonErrorCode =
  | 'BAD_OPTION' // command line
  | 'BAD_HELLO' // control client's JSON
  | 'NO_FDS' // control client sent no userfaultfd
  | 'HANDSHAKE_TIMEOUT'
  | 'PROCESS_DIED' // destination process exited mid-migration
  | 'SOURCE_LOST' // source disconnected / stalled before every page arrived
  | 'PROTOCOL' // bad stream from the source (wraps ProtocolError)
  | 'PLACE_FAILED' // a uffd ioctl failed for a reason other than EEXIST/EAGAIN
  | 'STALLED'
  | 'STOPPED' // the daemon was told to stop (SIGINT/SIGTERM) mid-migration
  | 'INTERNAL';

export class DaemonError extends Error {
  override name = 'DaemonError';
  constructor(readonly code: DaemonErrorCode, message: string, override readonly cause?: unknown) {
    super(message);
  }
}
