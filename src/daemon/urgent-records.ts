// Allocation-free parser for the urgent channel (bare "ram" v4 records, QEMU 7.2's preempt-channel format):
// the fault worker's hot path. Only what an urgent channel carries is accepted — PAGE, ZERO (with or without
// CONTINUE) and EOS; anything else (XBZRLE, compressed pages, MEM_SIZE, hooks, unknown flags) cuts the source
// off with a ProtocolError, as does a block name or offset outside the registered regions (checked through
// WireMap.validate before any placement). The record is described in fields instead of an object, and the
// page payload is left where it is in the receive buffer, so placement can copy straight from it.
import { ProtocolError } from '../protocol/index.js';
import { RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_EOS, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_ZERO } from '../protocol/constants.js';
import type { WireMap } from './regions.js';

export const URGENT_PAGE = 1;
export const URGENT_ZERO = 2;
export const URGENT_EOS = 3;

const CONTEXT = 'urgent channel ram record';

export class UrgentRecordParser {
  /** Last record parsed by next(): URGENT_PAGE / URGENT_ZERO / URGENT_EOS. */
  kind = 0;
  /** Device page of the record (PAGE, ZERO). */
  page = 0;
  /** Position of the page payload in the buffer (PAGE). */
  payload = 0;
  /** Fill byte (ZERO). */
  fill = 0;
  /** Bytes consumed so far (stream offset of the next record, for error messages). */
  consumed = 0;
  private readonly ps: number;
  private readonly mask: number;
  private nameBytes: Buffer[] = [];
  private names: string[] = [];
  /** Region index of the CONTINUE block, -1 before the first named record. */
  private last = -1;

  constructor(private readonly wire: WireMap) {
    this.ps = wire.pageSize;
    this.mask = wire.pageSize - 1;
    this.setNames(wire.names);
  }

  /** The block names (after the stream worker bound the source's block list). */
  setNames(names: readonly string[]): void {
    this.names = [...names];
    this.nameBytes = names.map((n) => Buffer.from(n, 'latin1'));
    this.last = -1;
  }

  /**
   * Parse the record at d[p..end). Returns the position after it, or -1 when it is not complete yet
   * (nothing changes then). Throws ProtocolError for anything but a valid PAGE / ZERO / EOS.
   */
  next(d: Uint8Array, p: number, end: number): number {
    if (end - p < 8) return -1;
    const hi = ((d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]) >>> 0;
    const lo = ((d[p + 4] << 24) | (d[p + 5] << 16) | (d[p + 6] << 8) | d[p + 7]) >>> 0;
    const flags = lo & this.mask;
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    const at = this.consumed;
    if (kind === RAM_SAVE_FLAG_EOS && hi === 0 && lo === RAM_SAVE_FLAG_EOS) {
      this.kind = URGENT_EOS;
      this.consumed += 8;
      return p + 8;
    }
    if (kind !== RAM_SAVE_FLAG_PAGE && kind !== RAM_SAVE_FLAG_ZERO) {
      throw new ProtocolError('BAD_RECORD', `record flags 0x${flags.toString(16)} on the urgent channel`, {
        offset: at, context: CONTEXT, expected: 'PAGE (0x8), ZERO (0x2), optionally with CONTINUE (0x20), or EOS (0x10)',
      });
    }
    if (hi >= 0x200000) {
      throw new ProtocolError('BAD_OFFSET', 'page offset too large', { offset: at, context: CONTEXT, expected: 'an offset inside the block' });
    }
    const offset = hi * 0x1_0000_0000 + (lo - flags);
    let q = p + 8;
    let region: number;
    if ((flags & RAM_SAVE_FLAG_CONTINUE) !== 0) {
      region = this.last;
      if (region < 0) {
        throw new ProtocolError('CONTINUE_WITHOUT_BLOCK', 'CONTINUE flag with no previous block on the urgent channel', {
          offset: at, context: CONTEXT, expected: 'a record naming its block first',
        });
      }
    } else {
      if (end - q < 1) return -1;
      const n = d[q];
      if (n === 0) throw new ProtocolError('BAD_IDSTR', 'empty block name', { offset: at + 8, context: CONTEXT, expected: 'a block name of 1..255 bytes' });
      if (end - q < 1 + n) return -1;
      region = this.findName(d, q + 1, n);
      if (region < 0) {
        // Not a registered block: validate() throws the error naming the known ones.
        this.wire.validate(Buffer.from(d.buffer, d.byteOffset + q + 1, n).toString('latin1'), offset, this.ps, at + 9, CONTEXT);
        throw new ProtocolError('UNKNOWN_BLOCK', 'unknown block', { offset: at + 9, context: CONTEXT, expected: 'a registered block' });
      }
      q += 1 + n;
    }
    const need = kind === RAM_SAVE_FLAG_PAGE ? this.ps : 1;
    if (end - q < need) return -1;
    // Offset and length inside the block (throws before anything is placed).
    this.page = this.wire.validate(this.names[region], offset, this.ps, at, CONTEXT);
    this.last = region;
    if (kind === RAM_SAVE_FLAG_PAGE) {
      this.kind = URGENT_PAGE;
      this.payload = q;
    } else {
      this.kind = URGENT_ZERO;
      this.fill = d[q];
    }
    this.consumed += q + need - p;
    return q + need;
  }

  private findName(d: Uint8Array, at: number, n: number): number {
    const last = this.last;
    if (last >= 0 && this.equals(this.nameBytes[last], d, at, n)) return last;
    for (let i = 0; i < this.nameBytes.length; i++) if (this.equals(this.nameBytes[i], d, at, n)) return i;
    return -1;
  }

  private equals(name: Buffer, d: Uint8Array, at: number, n: number): boolean {
    if (name.length !== n) return false;
    for (let k = 0; k < n; k++) if (name[k] !== d[at + k]) return false;
    return true;
  }
}
