// Stream worker (DESIGN §3): blocking receives of large chunks from the main connection into one reusable
// buffer, decoded with the protocol's StreamDecoder. The block list is checked against the registered
// regions, the state blob goes to the main thread at once, and background pages are validated and placed
// in coalesced runs (pages already present are skipped by umem-compat's page state). Never touches the
// registered memory itself.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { UmemDevice } from '../umem-compat/index.js';
import {
  StreamDecoder, ProtocolError, encodeReturnPathPong, RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_ZERO, type DecodedRecord,
} from '../protocol/index.js';
import { addressOf } from '../uffd/memory.js';
import { errnoName } from '../uffd/errors.js';
import { DaemonError } from './errors.js';
import { F, C, SharedStats } from './stats.js';
import { eventfdWrite } from '../uffd/events.js';
import { WireMap } from './regions.js';
import { PageSink } from './page-sink.js';
import { recvSome, sendAll, setBlocking } from './sockets.js';
import { serveWorkerJob, type StreamWorkerData, type WorkerMessage } from './worker-common.js';

const ECONNRESET = 104;
const PAGE_CONT = RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE;
const ZERO_CONT = RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_CONTINUE;
/** Bytes handed to the decoder at once when the next element's length is unknown (framing between pages). */
const DECODER_SLICE = 16 << 10;

function post(m: WorkerMessage, transfer?: ArrayBuffer[]): void {
  parentPort?.postMessage(m, transfer);
}

export function runStreamWorker(d: StreamWorkerData): void {
  const stats = new SharedStats(d.stats);
  const device = UmemDevice.attach({
    uffd: d.uffd, memfd: d.memfd >= 0 ? d.memfd : undefined, regions: d.regions, mode: d.mode,
    pageSize: d.pageSize, pageState: d.pageState, eventReader: false, ownsFds: false,
  });
  const ps = device.pageSize;
  const wire = new WireMap(d.regions, ps, d.named);
  const sink = new PageSink(device, wire, stats, 'background', () => post({ type: 'all-present' }), 1 << 20);
  const decoder = new StreamDecoder({ targetPageSize: ps });
  const buf = Buffer.allocUnsafeSlow(d.recvBytes);
  const addr = addressOf(buf);
  const v = stats.v;
  let sawEof = false;
  let sawBlocks = false;
  setBlocking(d.mainFd, true);

  const sendReturn = (msg: Uint8Array): void => {
    const r = sendAll(d.returnFd, addressOf(msg), msg.length, d.returnIsSocket);
    if (r < 0) throw new DaemonError('SOURCE_LOST', `writing to the source's return path failed: ${errnoName(-r)}`);
  };

  const handle = (rec: DecodedRecord): void => {
    switch (rec.kind) {
      case 'mem-size':
        wire.bindBlockList(rec.blocks, rec.offset);
        sawBlocks = true;
        post({ type: 'blocks', names: wire.names, at: performance.timeOrigin + performance.now() });
        return;
      case 'device-state': {
        if (rec.idstr !== d.stateSection) return; // someone else's device: not ours to interpret
        const data = rec.data;
        if (data.length < 4) {
          throw new ProtocolError('BAD_LENGTH', `state section of ${data.length} bytes has no length field`, { offset: rec.offset, context: `section "${rec.idstr}"`, expected: 'be32 length + blob' });
        }
        const len = Buffer.from(data.buffer, data.byteOffset, data.length).readUInt32BE(0);
        if (len !== data.length - 4) {
          throw new ProtocolError('BAD_LENGTH', `state blob announces ${len} bytes, the section holds ${data.length - 4}`, { offset: rec.offset, context: `section "${rec.idstr}"`, expected: `${data.length - 4}` });
        }
        const blob = new Uint8Array(len);
        blob.set(data.subarray(4));
        post({ type: 'state', blob, at: performance.timeOrigin + performance.now() }, [blob.buffer]);
        return;
      }
      case 'seed-postcopy':
        ingest.fastOff = true;
        return;
      case 'command':
        if (rec.command === 'PACKAGED') ingest.fastOff = true;
        if (rec.command === 'PING') sendReturn(encodeReturnPathPong(rec.value));
        else if (rec.command === 'POSTCOPY_ADVISE' && rec.targetPageSize !== undefined && rec.targetPageSize !== ps) {
          throw new ProtocolError('BAD_COMMAND', `source target page size ${rec.targetPageSize} differs from the destination's ${ps}`, { offset: rec.offset, context: 'POSTCOPY_ADVISE', expected: `${ps}` });
        } else if (rec.command === 'POSTCOPY_RUN') post({ type: 'run' });
        return;
      case 'eof':
        sawEof = true;
        return;
      default:
        if (rec.kind === 'page' || rec.kind === 'zero' || rec.kind === 'compressed-page' || rec.kind === 'xbzrle') {
          if (!sawBlocks) {
            throw new ProtocolError('BAD_RECORD', 'page record before the RAM block list', { offset: rec.offset, context: 'ram record', expected: 'a MEM_SIZE record first' });
          }
          sink.add(rec);
        }
    }
  };

  const ingest = new StreamIngest(decoder, sink, buf, ps, handle);

  try {
    for (;;) {
      const r = recvSome(d.mainFd, addr, buf.length, d.mainIsSocket);
      if (r === 0 || r === -ECONNRESET) {
        sink.flush();
        let detail = r === 0 ? 'connection closed' : 'connection reset';
        if (!sawEof) {
          try { decoder.end(); } catch (e) { detail += `: ${(e as Error).message}`; }
        }
        post({ type: 'stream-end', clean: sawEof, detail });
        return;
      }
      if (r < 0) {
        sink.flush();
        post({ type: 'stream-end', clean: false, detail: `receive failed: ${errnoName(-r)}` });
        return;
      }
      v[F.bytesMain] += r;
      ingest.push(r);
      sink.flush();
      // Faults waiting on the fault worker may have just been served by this chunk: let it notice now.
      if (Atomics.load(stats.cells, C.outstanding) > 0) eventfdWrite(d.nudgeFd, 1);
    }
  } finally {
    device.close();
  }
}

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

  /** Process buf[0, r): the bytes just received (the buffer is reused after this returns). */
  push(r: number): void {
    let p = 0;
    while (p < r) {
      if (this.fastBlock !== null) {
        const q = this.scan(p, r);
        this.skipped += q - p;
        p = q;
        if (p >= r) break;
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
    this.streamPos += r;
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

// Spawned ahead of time (modules and koffi loaded); the job arrives as the first message.
serveWorkerJob<StreamWorkerData>('stream', runStreamWorker);
