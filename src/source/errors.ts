// The one error type of the outgoing side: what went wrong, with the details that help (URI, block, offsets).

export type MigrationErrorCode =
  | 'BAD_URI'
  | 'BAD_OPTIONS'
  | 'CONNECT_FAILED'
  | 'TRANSPORT_CLOSED'
  | 'TRANSPORT_ERROR'
  | 'BAD_REQUEST'
  | 'BAD_RETURN_PATH'
  | 'DESTINATION_FAILED'
  | 'NO_SHUT'
  | 'ABORTED'
  | 'TIMEOUT'
  | 'AGENT';

export class MigrationError extends Error {
  readonly code: MigrationErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: MigrationErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
    this.code = code;
    this.details = details;
  }
}
