// Parser for what the daemon sends a destination process on the control socket (docs/migration-protocol.md):
//   {"type":"state","length":N}\n + N raw bytes      the source's state blob
//   {"type":"complete","stats":{...}}\n              every page is present, ranges unregistered
//   {"type":"error","message":"..."}\n               unrecoverable failure
// Pure (no I/O): push() bytes, get whole messages. Bounded: a line longer than maxLineBytes or a state
// larger than maxStateBytes is a ControlProtocolError, never an unbounded allocation.

export type ControlMessage =
  | { type: 'state'; state: Buffer }
  | { type: 'complete'; stats: Record<string, unknown> }
  | { type: 'error'; message: string }
  | { type: 'other'; message: Record<string, unknown> };

export class ControlProtocolError extends Error {
  override name = 'ControlProtocolError';
  constructor(readonly code: 'LINE_TOO_LONG' | 'BAD_JSON' | 'BAD_MESSAGE' | 'STATE_TOO_LARGE', message: string, readonly line?: string) {
    super(message);
  }
}

export interface ControlReaderOptions {
  /** Default 64 KiB. */
  maxLineBytes?: number;
  /** Default 256 MiB. */
  maxStateBytes?: number;
}

export class ControlReader {
  private readonly maxLine: number;
  private readonly maxState: number;
  private pending: Buffer = Buffer.alloc(0);
  /** Non-null while collecting a state blob's bytes. */
  private blob: Buffer | null = null;
  private blobFill = 0;

  constructor(opts: ControlReaderOptions = {}) {
    this.maxLine = opts.maxLineBytes ?? 64 * 1024;
    this.maxState = opts.maxStateBytes ?? 256 * 1024 * 1024;
  }

  /** True when a message (line or state bytes) has started but is not complete. */
  get midMessage(): boolean {
    return this.blob !== null || this.pending.length > 0;
  }

  push(chunk: Uint8Array): ControlMessage[] {
    const out: ControlMessage[] = [];
    let data = this.pending.length ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.pending = Buffer.alloc(0);
    let pos = 0;
    while (pos < data.length) {
      if (this.blob) {
        const n = Math.min(this.blob.length - this.blobFill, data.length - pos);
        data.copy(this.blob, this.blobFill, pos, pos + n);
        this.blobFill += n;
        pos += n;
        if (this.blobFill === this.blob.length) {
          out.push({ type: 'state', state: this.blob });
          this.blob = null;
        }
        continue;
      }
      const nl = data.indexOf(0x0a, pos);
      if (nl < 0) {
        if (data.length - pos > this.maxLine) throw new ControlProtocolError('LINE_TOO_LONG', `control line longer than ${this.maxLine} bytes`);
        this.pending = Buffer.from(data.subarray(pos)); // copy: the caller may reuse its chunk
        break;
      }
      if (nl - pos > this.maxLine) throw new ControlProtocolError('LINE_TOO_LONG', `control line of ${nl - pos} bytes exceeds ${this.maxLine}`);
      const line = data.toString('utf8', pos, nl).trim();
      pos = nl + 1;
      if (line.length === 0) continue;
      const msg = this.parseLine(line);
      if (msg) out.push(msg);
    }
    data = Buffer.alloc(0);
    return out;
  }

  private parseLine(line: string): ControlMessage | null {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch (e) {
      throw new ControlProtocolError('BAD_JSON', `control line is not JSON (${(e as Error).message}): ${line.slice(0, 200)}`, line);
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ControlProtocolError('BAD_MESSAGE', `control message is not an object: ${line.slice(0, 200)}`, line);
    const o = m as Record<string, unknown>;
    switch (o.type) {
      case 'state': {
        const len = o.length;
        if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0) {
          throw new ControlProtocolError('BAD_MESSAGE', `state message with bad length ${JSON.stringify(len)}`, line);
        }
        if (len > this.maxState) throw new ControlProtocolError('STATE_TOO_LARGE', `state blob of ${len} bytes exceeds ${this.maxState}`, line);
        if (len === 0) return { type: 'state', state: Buffer.alloc(0) };
        this.blob = Buffer.allocUnsafe(len);
        this.blobFill = 0;
        return null;
      }
      case 'complete':
        return { type: 'complete', stats: (typeof o.stats === 'object' && o.stats !== null ? o.stats : {}) as Record<string, unknown> };
      case 'error':
        return { type: 'error', message: typeof o.message === 'string' ? o.message : JSON.stringify(o) };
      default:
        return { type: 'other', message: o };
    }
  }
}
