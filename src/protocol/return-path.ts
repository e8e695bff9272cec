// Return path (destination → source): be16 type, be16 len (≤ 512), body. RECV_BITMAP's header is
// followed, outside that framing, by be64 size, the little-endian bitmap, and a be64 end mark.
import { DEFAULT_TARGET_PAGE_SIZE, RECV_BITMAP_ENDING, RP_MAX_LEN, RpMessage } from './constants.js';
import { ByteWriter, be16, be32, be64, be64big, latin1 } from './bytes.js';
import { protocolError } from './errors.js';
import { IncrementalDecoder, NEED } from './incremental.js';
import type { IoVec, RamBlockInfo, ReturnPathDecoderOptions, ReturnPathMessage } from './types.js';

const NAMES = ['INVALID', 'SHUT', 'PONG', 'REQ_PAGES_ID', 'REQ_PAGES', 'RECV_BITMAP', 'RESUME_ACK', 'SWITCHOVER_ACK'];

/** Bytes of a block's received bitmap on the wire: pages/8 rounded up to whole 64-bit words. */
export function recvBitmapBytes(usedLength: number, targetPageSize = DEFAULT_TARGET_PAGE_SIZE): number {
  const pages = Math.ceil(usedLength / targetPageSize);
  return Math.ceil(pages / 64) * 8;
}

export class ReturnPathDecoder extends IncrementalDecoder<ReturnPathMessage> {
  private readonly maxBitmap: number;
  private readonly pageSize: number;
  private blockMap: Map<string, RamBlockInfo> | null = null;
  private lastBlock: string | null = null;
  private shut = false;

  constructor(opts: ReturnPathDecoderOptions = {}) {
    super();
    this.maxBitmap = opts.maxBitmapBytes ?? 64 * 1024 * 1024;
    this.pageSize = opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE;
    if (opts.blocks) this.setBlocks(opts.blocks);
  }

  setBlocks(blocks: readonly RamBlockInfo[]): void {
    this.blockMap = new Map(blocks.map((b) => [b.idstr, b]));
  }

  /** Forget the last requested block (QEMU resets it on postcopy resume). */
  resetLastBlock(): void {
    this.lastBlock = null;
  }

  protected describe(): string {
    return 'return-path message';
  }

  protected finish(): void {}

  private needBytes(n: number): number {
    this.need = n;
    return NEED;
  }

  protected step(d: Uint8Array, p: number, end: number): number {
    if (end - p < 4) return this.needBytes(4);
    const type = be16(d, p);
    const len = be16(d, p + 2);
    const abs = this.pos;
    const name = NAMES[type];
    if (type === 0 || name === undefined) {
      throw protocolError('BAD_RETURN_PATH', `message type ${type}`, abs, 'return-path message', 'a MIG_RP_MSG type between 1 and 7');
    }
    const ctx = `return-path ${name}`;
    if (this.shut) throw protocolError('TRAILING_DATA', `${name} after SHUT`, abs, ctx, 'nothing after SHUT');
    if (len > RP_MAX_LEN) throw protocolError('BAD_LENGTH', `length ${len}`, abs + 2, ctx, `at most ${RP_MAX_LEN}`);
    const want = (n: number, what = `length ${n}`): void => {
      if (len !== n) throw protocolError('BAD_LENGTH', `length ${len}`, abs + 2, ctx, what);
    };
    switch (type) {
      case RpMessage.SHUT:
      case RpMessage.PONG:
      case RpMessage.RESUME_ACK:
        want(4);
        break;
      case RpMessage.REQ_PAGES:
        want(12);
        break;
      case RpMessage.SWITCHOVER_ACK:
        want(0);
        break;
      case RpMessage.REQ_PAGES_ID:
      case RpMessage.RECV_BITMAP: {
        const min = type === RpMessage.REQ_PAGES_ID ? 13 : 1;
        if (len < min + 1) throw protocolError('BAD_LENGTH', `length ${len}`, abs + 2, ctx, `at least ${min + 1}`);
        break;
      }
    }
    if (end - p < 4 + len) return this.needBytes(4 + len);
    const b = p + 4;
    switch (type) {
      case RpMessage.SHUT:
        this.shut = true;
        this.out.push({ kind: 'shut', offset: abs, status: be32(d, b) });
        return b + 4;
      case RpMessage.PONG:
        this.out.push({ kind: 'pong', offset: abs, value: be32(d, b) });
        return b + 4;
      case RpMessage.RESUME_ACK: {
        const value = be32(d, b);
        if (value !== 1) throw protocolError('BAD_RETURN_PATH', `RESUME_ACK value ${value}`, abs + 4, ctx, 'MIGRATION_RESUME_ACK_VALUE 1');
        this.out.push({ kind: 'resume-ack', offset: abs, value });
        return b + 4;
      }
      case RpMessage.SWITCHOVER_ACK:
        this.out.push({ kind: 'switchover-ack', offset: abs });
        return b;
      case RpMessage.REQ_PAGES:
      case RpMessage.REQ_PAGES_ID: {
        const start = be64(d, b, abs + 4, ctx);
        const length = be32(d, b + 8);
        let idstr: string | undefined;
        if (type === RpMessage.REQ_PAGES_ID) {
          const n = d[b + 12];
          if (n === 0 || len !== 13 + n) want(13 + n, `13 + name length (${13 + n}), name not empty`);
          idstr = latin1(d, b + 13, n);
        }
        const block = idstr ?? this.lastBlock;
        if (block === null) {
          throw protocolError('CONTINUE_WITHOUT_BLOCK', 'REQ_PAGES with no earlier REQ_PAGES_ID', abs, ctx, 'REQ_PAGES_ID naming the block first');
        }
        if (length === 0 || start % this.pageSize !== 0 || length % this.pageSize !== 0) {
          throw protocolError('BAD_OFFSET', `request (0x${start.toString(16)}, 0x${length.toString(16)})`, abs + 4, ctx, `non-empty, multiples of ${this.pageSize}`);
        }
        if (this.blockMap !== null) {
          const info = this.blockMap.get(block);
          if (info === undefined) throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(block)}`, abs + 17, ctx, 'a known block');
          if (start + length > info.usedLength) {
            throw protocolError('BAD_OFFSET', `request (0x${start.toString(16)}, 0x${length.toString(16)}) beyond block ${JSON.stringify(block)}`, abs + 4, ctx, 'a range inside the block');
          }
        }
        this.lastBlock = block;
        this.out.push({ kind: 'req-pages', offset: abs, start, length, idstr, block });
        return b + len;
      }
      case RpMessage.RECV_BITMAP: {
        const n = d[b];
        if (n === 0 || len !== 1 + n) want(1 + n, `1 + name length (${1 + n}), name not empty`);
        const idstr = latin1(d, b + 1, n);
        const q = b + len;
        if (end - q < 8) return this.needBytes(4 + len + 8);
        const size = be64(d, q, abs + 4 + len, ctx);
        if (size % 8 !== 0 || size > this.maxBitmap) {
          throw protocolError('BAD_LENGTH', `bitmap of ${size} bytes`, abs + 4 + len, ctx, `a multiple of 8 up to ${this.maxBitmap} bytes`);
        }
        const info = this.blockMap?.get(idstr);
        if (this.blockMap !== null && info === undefined) {
          throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(idstr)}`, abs + 5, ctx, 'a known block');
        }
        if (info !== undefined && size !== recvBitmapBytes(info.usedLength, this.pageSize)) {
          throw protocolError('BAD_LENGTH', `bitmap of ${size} bytes`, abs + 4 + len, ctx, `${recvBitmapBytes(info.usedLength, this.pageSize)} bytes for block ${JSON.stringify(idstr)}`);
        }
        const total = 4 + len + 8 + size + 8;
        if (end - p < total) return this.needBytes(total);
        const markAt = q + 8 + size;
        if (be64big(d, markAt) !== RECV_BITMAP_ENDING) {
          throw protocolError('BAD_RETURN_PATH', 'bad bitmap end mark', abs + (markAt - p), ctx, 'be64 0x0123456789abcdef');
        }
        this.out.push({ kind: 'recv-bitmap', offset: abs, idstr, bitmap: d.subarray(q + 8, q + 8 + size) });
        return markAt + 8;
      }
    }
    return NEED; // unreachable
  }
}

function rp(type: number, body?: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter(32);
  if (body) body(w);
  const b = w.done();
  if (b.length > RP_MAX_LEN) throw protocolError('ENCODE', `message of ${b.length} bytes`, -1, `return-path ${NAMES[type]}`, `at most ${RP_MAX_LEN}`);
  return new ByteWriter(4 + b.length).u16(type).u16(b.length).bytes(b).done();
}

export function encodeReturnPathShut(status: number): Uint8Array {
  return rp(RpMessage.SHUT, (w) => w.u32(status));
}
export function encodeReturnPathPong(value: number): Uint8Array {
  return rp(RpMessage.PONG, (w) => w.u32(value));
}
/** REQ_PAGES_ID when idstr is given (block changed), REQ_PAGES otherwise. */
export function encodeReturnPathReqPages(start: number, length: number, idstr?: string): Uint8Array {
  if (idstr === undefined) return rp(RpMessage.REQ_PAGES, (w) => w.u64(start).u32(length));
  return rp(RpMessage.REQ_PAGES_ID, (w) => w.u64(start).u32(length).counted(idstr, 'REQ_PAGES_ID'));
}
/** [header + size, bitmap (little-endian words, passed through), end mark]. */
export function encodeReturnPathRecvBitmap(idstr: string, bitmap: Uint8Array): IoVec {
  if (bitmap.length % 8 !== 0) throw protocolError('ENCODE', `bitmap of ${bitmap.length} bytes`, -1, 'RECV_BITMAP', 'a multiple of 8 bytes');
  const hdr = rp(RpMessage.RECV_BITMAP, (w) => w.counted(idstr, 'RECV_BITMAP'));
  const head = new ByteWriter(hdr.length + 8).bytes(hdr).u64(bitmap.length).done();
  return [head, bitmap, new ByteWriter(8).u64big(RECV_BITMAP_ENDING).done()];
}
export function encodeReturnPathResumeAck(value = 1): Uint8Array {
  return rp(RpMessage.RESUME_ACK, (w) => w.u32(value));
}
export function encodeReturnPathSwitchoverAck(): Uint8Array {
  return rp(RpMessage.SWITCHOVER_ACK);
}

/** Encodes a decoded message (req-pages: REQ_PAGES_ID iff idstr is set). */
export function encodeReturnPath(m: ReturnPathMessage): IoVec {
  switch (m.kind) {
    case 'shut':
      return [encodeReturnPathShut(m.status)];
    case 'pong':
      return [encodeReturnPathPong(m.value)];
    case 'req-pages':
      return [encodeReturnPathReqPages(m.start, m.length, m.idstr)];
    case 'recv-bitmap':
      return encodeReturnPathRecvBitmap(m.idstr, m.bitmap);
    case 'resume-ack':
      return [encodeReturnPathResumeAck(m.value)];
    case 'switchover-ack':
      return [encodeReturnPathSwitchoverAck()];
  }
}
