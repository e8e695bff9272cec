// Placer worker: takes the runs the stream worker staged in the PlacementRing and places them (UFFDIO_COPY /
// ZEROPAGE, or memfd + CONTINUE through umem-compat) with the same accounting as a synchronous PageSink, so
// receiving the next chunk overlaps placing this one. Never touches the registered memory itself.
import { parentPort, workerData } from 'node:worker_threads';
import { UmemDevice } from '../umem-compat/index.js';
import { eventfdWrite } from '../uffd/events.js';
import { C, SharedStats } from './stats.js';
import { WireMap } from './regions.js';
import { PageSink } from './page-sink.js';
import { PlacementRing, type RunDescriptor } from './placement-ring.js';
import type { PlacerWorkerData, WorkerMessage } from './worker-common.js';

function post(m: WorkerMessage): void {
  parentPort?.postMessage(m);
}

export function runPlacerWorker(d: PlacerWorkerData): void {
  const stats = new SharedStats(d.stats);
  const ring = new PlacementRing(d.ring);
  const device = UmemDevice.attach({
    uffd: d.uffd, memfd: d.memfd >= 0 ? d.memfd : undefined, regions: d.regions, mode: d.mode,
    pageSize: d.pageSize, pageState: d.pageState, eventReader: false, ownsFds: false,
  });
  const sink = new PageSink(device, new WireMap(d.regions, device.pageSize, d.named), stats, 'background', () => post({ type: 'all-present' }));
  const run: RunDescriptor = { first: 0, count: 0, kind: 0, zeros: 0, addr: 0, slot: 0 };
  try {
    for (let slot = 0; ring.take(slot, run); slot = (slot + 1) % ring.slots) {
      try {
        sink.placeRun(run.first, run.count, run.kind, run.zeros, run.addr);
      } catch (e) {
        ring.fail();
        throw e;
      }
      ring.release(slot);
      // Faults waiting on the fault worker may have just been served: let it notice now.
      if (Atomics.load(stats.cells, C.outstanding) > 0) eventfdWrite(d.nudgeFd, 1);
    }
  } finally {
    device.close();
  }
}

// Spawned ahead of time (modules and koffi loaded); the job arrives as the first message.
if (parentPort && (workerData as { role?: string })?.role === 'placer') {
  parentPort.once('message', (d: PlacerWorkerData) => {
    try {
      runPlacerWorker(d);
      post({ type: 'done' });
    } catch (e) {
      const err = e as Error & { code?: string };
      post({ type: 'error', code: err.code ?? 'INTERNAL', message: err.message });
    }
    parentPort?.close();
  });
}
