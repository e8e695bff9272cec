// Stream worker (DESIGN §3): blocking receives of large chunks from the main connection into one reusable
// buffer, decoded with the protocol's StreamDecoder. The block list is checked against the registered
// regions, the state blob goes to the main thread at once, and background pages are validated and placed
// in coalesced runs (pages already present are skipped by umem-compat's page state). Never touches the
// registered memory itself.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { UmemDevice } from '../umem-compat/index.js';
import {
  StreamDecoder, ProtocolError, encodeReturnPathPong, type DecodedRecord,
} from '../protocol/index.js';
import { addressOf } from '../uffd/memory.js';
import { errnoName } from '../uffd/errors.js';
import { DaemonError } from './errors.js';
import { F, C, SharedStats } from './stats.js';
import { eventfdWrite } from '../uffd/events.js';
import { WireMap } from './regions.js';
import { PageSink } from './page-sink.js';
import { sendAll, setBlocking } from './sockets.js';
import { StreamIngest } from './stream-ingest.js';
import { MainReceiver } from './main-receiver.js';
import { serveWorkerJob, type StreamWorkerData, type WorkerMessage } from './worker-common.js';

const ECONNRESET = 104;

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
  const receiver = new MainReceiver(d.mainFd, d.mainIsSocket, ingest, buf, ps);
  let requestedSeen = 0;

  try {
    for (;;) {
      const r = receiver.step();
      if (r <= 0) {
        sink.flush();
        if (r < 0 && r !== -ECONNRESET) {
          post({ type: 'stream-end', clean: false, detail: `receive failed: ${errnoName(-r)}` });
          return;
        }
        let detail = r === 0 ? 'connection closed' : 'connection reset';
        if (!sawEof) {
          try { decoder.end(); } catch (e) { detail += `: ${(e as Error).message}`; }
        }
        post({ type: 'stream-end', clean: sawEof, detail });
        return;
      }
      v[F.bytesMain] += r;
      sink.flush();
      // A page a fault waits for may have just been placed (the placement woke the faulting thread): let the
      // fault worker account for it now. Only then: a wake-up per receive would cost a CPU the stream needs.
      if (sink.requestedPlaced !== requestedSeen) {
        requestedSeen = sink.requestedPlaced;
        if (Atomics.load(stats.cells, C.outstanding) > 0) eventfdWrite(d.nudgeFd, 1);
      }
    }
  } finally {
    device.close();
  }
}

// Spawned ahead of time (modules and koffi loaded); the job arrives as the first message.
serveWorkerJob<StreamWorkerData>('stream', runStreamWorker);
