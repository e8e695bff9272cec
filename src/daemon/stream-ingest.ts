// StreamIngest: received main-stream bytes → the StreamDecoder, with a hot path that takes runs of CONTINUE
// PAGE / ZERO records without an object per page (DESIGN §3). Used by the stream worker via MainReceiver.
import {
  StreamDecoder, ProtocolError, RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_ZERO, type DecodedRecord,
} from '../protocol/index.js';
import { addressOf } from '../uffd/memory.js';
import type { PageSink } from './page-sink.js';
import type { ScatterReceiver } from './scatter-recv.js';

const PAGE_CONT = RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE;
const ZERO_CONT = RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_CONTINUE;
/** Bytes handed to the decoder at once when the next element's length is unknown (framing between pages). */
const DECODER_SLICE = 16 << 10;

/**
 * Feeds received bytes to the StreamDecoder without an object per page (DESIGN §3). Right after the decoder
 * emitted a PAGE/ZERO record and holds no partial element, the next bytes are ram records of that block: the
 * complete CONTINUE PAGE / CONTINUE ZERO records there are taken here (validated by the sink's WireMap exactly
 * like decoded ones, payload copied straight from the receive buffer into staging) and the decoder gets only
 * what is left: section framing, a record naming its block, anything unusual (which it validates as ever).
 * The decoder never sees the skipped bytes, so its error offsets are shifted back by `skipped` here.
 */
export class StreamIngest {
  /** PACKAGED / seed streams: the decoder tracks package ends by position, so everything goes through it. */
  fastOff = false;
  private streamPos = 0; // stream bytes received before buf[0]
  private skipped = 0; // stream bytes taken by the hot path
  private fastBlock: string | null = null;
  private readonly addr: number;
  private readonly flagMask: number;

  constructor(
    private readonly decoder: StreamDecoder,
    private readonly sink: PageSink,
    private readonly buf: Buffer,
    private readonly ps: number,
    private readonly handle: (rec: DecodedRecord) => void,
  ) {
    this.addr = addressOf(buf);
    this.flagMask = ps - 1;
  }

  /**
   * Process buf[0, r): the bytes just received (the buffer is reused after this returns). With `carry`, a
   * record of a page run cut short at the end is left unprocessed: returns its length (the caller puts those
   * bytes ahead of the next ones it receives), so the stream stays aligned on records; else returns 0.
   */
  push(r: number, carry = false): number {
    let p = 0;
    let left = 0;
    while (p < r) {
      if (this.fastBlock !== null) {
        const q = this.scan(p, r);
        this.skipped += q - p;
        p = q;
        if (p >= r) break;
        if (carry && this.cutShortPage(p, r)) {
          left = r - p;
          break;
        }
      }
      let to = r;
      if (!this.fastOff) {
        // Feed the decoder up to the end of the record it is in (or that starts at p) when that is a page
        // record, so it stops aligned after a page and the hot path resumes; else a slice of framing.
        const e = this.recordEnd(this.decoder.offset + this.skipped - this.streamPos, r);
        to = e > p && e <= r ? e : Math.min(r, p + DECODER_SLICE);
      }
      this.feed(p, to);
      p = to;
    }
    this.streamPos += r - left;
    return left;
  }

  /**
   * Is buf[p, r) the beginning of a CONTINUE PAGE record (or of any record's header: inside a page run the
   * next element is always a ram record)? Only then is the source committed to the bytes that complete it,
   * so holding them back cannot wait on bytes that never come (a PING after the section, say).
   */
  private cutShortPage(p: number, r: number): boolean {
    if (r - p < 8) return true;
    const buf = this.buf;
    return r - p < 8 + this.ps && buf.readUInt32BE(p) < 0x200000 && (buf.readUInt32BE(p + 4) & this.flagMask) === PAGE_CONT;
  }

  /** End of the PAGE/ZERO record starting at buf[at] (-1: not one, or its header is not all here). */
  private recordEnd(at: number, end: number): number {
    const buf = this.buf;
    if (at < 0 || end - at < 9) return -1;
    const flags = buf.readUInt32BE(at + 4) & this.flagMask;
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    const hdr = (flags & RAM_SAVE_FLAG_CONTINUE) !== 0 ? 8 : 9 + buf[at + 8];
    if (kind === RAM_SAVE_FLAG_PAGE) return at + hdr + this.ps;
    if (kind === RAM_SAVE_FLAG_ZERO) return at + hdr + 1;
    return -1;
  }

  /** The next stream byte starts a record of the block of a run of pages: a scatter receive may start here. */
  get atPageRun(): boolean {
    return this.fastBlock !== null && !this.fastOff;
  }

  /**
   * Take scatter-received units [from, to) while they are CONTINUE PAGE records (pages stay in their slots:
   * the sink places them from there). Returns the first unit not taken. Each unit is validated exactly as
   * scan() validates a record; the units taken count as stream bytes received and skipped by the decoder.
   */
  takeUnits(units: ScatterReceiver, from: number, to: number): number {
    const block = this.fastBlock;
    if (block === null || this.fastOff) return from;
    const { sink, ps, flagMask } = this;
    const unitBytes = units.unitBytes;
    let i = from;
    for (; i < to; i++) {
      const hi = units.headerHigh(i);
      const lo = units.headerLow(i);
      const flags = lo & flagMask;
      if (hi >= 0x200000 || flags !== PAGE_CONT) break; // not a CONTINUE PAGE (or an offset the decoder reports)
      sink.addInPlace(block, hi * 0x100000000 + (lo - flags), units.pagesAddr + i * ps, this.streamPos + (i - from) * unitBytes);
    }
    const taken = (i - from) * unitBytes;
    this.streamPos += taken;
    this.skipped += taken;
    return i;
  }

  /** Does unit i's header announce a CONTINUE ZERO record? */
  isZeroUnit(units: ScatterReceiver, i: number): boolean {
    return units.headerHigh(i) < 0x200000 && (units.headerLow(i) & this.flagMask) === ZERO_CONT;
  }

  /** Take the complete CONTINUE PAGE/ZERO records at buf[p, end); returns where they stop. */
  private scan(p: number, end: number): number {
    const { buf, sink, ps, addr, flagMask } = this;
    const block = this.fastBlock as string;
    const base = this.streamPos;
    while (end - p >= 9) {
      const hi = buf.readUInt32BE(p);
      const lo = buf.readUInt32BE(p + 4);
      const flags = lo & flagMask;
      if (hi >= 0x200000) break; // the decoder reports it
      const blockOffset = hi * 0x100000000 + (lo - flags);
      if (flags === PAGE_CONT) {
        if (end - p < 8 + ps) break;
        sink.addRaw(block, blockOffset, addr + p + 8, base + p);
        p += 8 + ps;
      } else if (flags === ZERO_CONT && buf[p + 8] === 0) {
        sink.addRaw(block, blockOffset, 0, base + p);
        p += 9;
      } else break;
    }
    return p;
  }

  private feed(from: number, to: number): void {
    let recs: DecodedRecord[];
    try {
      recs = this.decoder.push(this.buf.subarray(from, to));
      for (let i = 0; i < recs.length; i++) this.handle(recs[i]);
    } catch (e) {
      if (e instanceof ProtocolError && this.skipped > 0 && e.offset >= 0) {
        const message = e.message.replace(/ at byte \d+ \([^]*$/, '');
        throw new ProtocolError(e.code, message, { offset: e.offset + this.skipped, context: e.context, expected: e.expected });
      }
      throw e;
    }
    this.fastBlock = null;
    if (recs.length === 0 || this.fastOff || this.decoder.offset + this.skipped !== this.streamPos + to) return;
    const last = recs[recs.length - 1];
    if (last.kind === 'page' || last.kind === 'zero') this.fastBlock = last.block;
  }
}
