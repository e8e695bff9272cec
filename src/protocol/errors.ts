// The one error type of src/protocol: every malformed input ends here, with where and what was expected.

export type ProtocolErrorCode =
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'UNKNOWN_SECTION_TYPE'
  | 'UNKNOWN_COMMAND'
  | 'UNKNOWN_SECTION_ID'
  | 'DUPLICATE_SECTION_ID'
  | 'BAD_IDSTR'
  | 'UNKNOWN_BLOCK'
  | 'CONTINUE_WITHOUT_BLOCK'
  | 'BAD_OFFSET'
  | 'BAD_LENGTH'
  | 'BAD_FLAGS'
  | 'HOOK_UNSUPPORTED'
  | 'TRUNCATED'
  | 'XBZRLE_OVERFLOW'
  | 'BAD_XBZRLE'
  | 'BAD_COMPRESSED_PAGE'
  | 'BAD_FOOTER'
  | 'DEVICE_SECTION_END'
  | 'BAD_SUBSECTION'
  | 'BAD_COMMAND'
  | 'BAD_RETURN_PATH'
  | 'BAD_RECORD'
  | 'TRAILING_DATA'
  | 'ENCODE';

export interface ProtocolErrorDetails {
  /** Absolute byte offset in the decoded stream (or -1 for encoder misuse). */
  offset: number;
  /** Record or section being decoded, e.g. 'ram record PAGE', 'section 5 "cpu"'. */
  context: string;
  /** What the decoder expected to find. */
  expected: string;
}

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  readonly offset: number;
  readonly context: string;
  readonly expected: string;

  constructor(code: ProtocolErrorCode, message: string, details: ProtocolErrorDetails) {
    super(`${message} at byte ${details.offset} (${details.context}; expected ${details.expected})`);
    this.name = 'ProtocolError';
    this.code = code;
    this.offset = details.offset;
    this.context = details.context;
    this.expected = details.expected;
  }
}

export function protocolError(
  code: ProtocolErrorCode,
  message: string,
  offset: number,
  context: string,
  expected: string,
): ProtocolError {
  return new ProtocolError(code, message, { offset, context, expected });
}
