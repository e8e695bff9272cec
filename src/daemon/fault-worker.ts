// Fault worker (DESIGN §3): one synchronous loop per userfaultfd. poll([uffd, urgent socket, stop eventfd])
// → batch-read faults (umem-compat getPageRequestsInto) → skip pages present or already requested (shared
// page state) → merged REQ_PAGES(_ID) on the urgent connection (blocking send) → urgent pages in (ram v4
// records) → placed through umem-compat (which wakes the faulting threads). This thread never touches the
// registered memory: placement is an ioctl and the daemon's own view of the memfd.
import { parentPort, workerData, receiveMessageOnPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { UmemDevice, PAGE_PRESENT } from '../umem-compat/index.js';
import { RamRecordDecoder, type RamRecord } from '../protocol/index.js';
import { Poller, eventfdRead } from '../uffd/events.js';
import { addressOf } from '../uffd/memory.js';
import { errnoName } from '../uffd/errors.js';
import { DaemonError } from './errors.js';
import { F, C, SharedStats } from './stats.js';
import { WireMap } from './regions.js';
import { PageSink } from './page-sink.js';
import { RequestEncoder } from './requests.js';
import { recvSome, sendAll, setBlocking, MSG_DONTWAIT } from './sockets.js';
import type { FaultWorkerData, WorkerMessage } from './worker-common.js';

const MAX_OUTSTANDING = 4096;
const URGENT_RECV_BYTES = 256 * 1024;

function post(m: WorkerMessage): void {
  parentPort?.postMessage(m);
}

export function runFaultWorker(d: FaultWorkerData): void {
  const stats = new SharedStats(d.stats);
  const device = UmemDevice.attach({
    uffd: d.uffd, memfd: d.memfd >= 0 ? d.memfd : undefined, regions: d.regions, mode: d.mode,
    pageSize: d.pageSize, pageState: d.pageState, eventReader: true, ownsFds: false,
  });
  const wire = new WireMap(d.regions, d.pageSize, d.named);
  const ps = device.pageSize;
  const sink = new PageSink(device, wire, stats, 'fault', () => post({ type: 'all-present' }), 256 * 1024);

  // Wait until the stream worker has matched the source's block list (names for REQ_PAGES_ID).
  while (Atomics.load(stats.cells, C.blocksBound) === 0) Atomics.wait(stats.cells, C.blocksBound, 0, 1000);
  if (Atomics.load(stats.cells, C.blocksBound) < 0) { device.close(); return; }
  // The block names the stream worker bound (the session posts them before setting the flag).
  const m = parentPort ? receiveMessageOnPort(parentPort) : undefined;
  const names = (m?.message as { names?: string[] } | undefined)?.names;
  if (names) wire.setNames(names);

  let urgentFd = d.urgentFd;
  let requestFd = d.requestFd;
  let requestIsSocket = d.requestIsSocket;
  // The urgent connection may arrive after we started (requests then go on the main return path): the
  // session publishes its fd (+1) in a shared cell and nudges us. Adopted once; when it closes at the end
  // we keep serving through the main stream.
  let urgentAdopted = urgentFd >= 0;
  if (urgentFd >= 0) setBlocking(urgentFd, true);
  if (requestFd >= 0) setBlocking(requestFd, true);
  // [uffd, stop, nudge (pages placed by the stream worker while faults wait), urgent socket]
  const makePoller = (): Poller => new Poller(urgentFd >= 0 ? [d.uffd, d.stopFd, d.nudgeFd, urgentFd] : [d.uffd, d.stopFd, d.nudgeFd]);
  let poller = makePoller();
  const decoder = new RamRecordDecoder({ targetPageSize: ps });
  const recvBuf = Buffer.allocUnsafeSlow(URGENT_RECV_BYTES);
  const recvAddr = addressOf(recvBuf);
  const req = new RequestEncoder();
  const reqAddr = addressOf(req.buf);
  const pages = new Float64Array(256);
  const toRequest = new Float64Array(256);
  const outPage = new Float64Array(MAX_OUTSTANDING);
  const outT0 = new Float64Array(MAX_OUTSTANDING);
  const outWall = new Float64Array(MAX_OUTSTANDING);
  let outN = 0;
  let blockedSince = 0;
  const v = stats.v;
  const state = device.pageState;

  const sendRequests = (n: number): void => {
    // toRequest[0..n) in fault order; merge ascending contiguous pages of one block.
    req.reset();
    let i = 0;
    while (i < n) {
      const first = toRequest[i];
      const ri = wire.regionIndexOf(first);
      let j = i + 1;
      while (j < n && toRequest[j] === toRequest[j - 1] + 1 && wire.regionIndexOf(toRequest[j]) === ri) j++;
      req.add(wire.regionName(ri), (first - wire.regionFirstPage(ri)) * ps, (j - i) * ps);
      v[F.pagesRequested] += j - i;
      i = j;
      if (req.full) flushRequests();
    }
    flushRequests();
  };
  const flushRequests = (): void => {
    if (req.length === 0) return;
    const r = sendAll(requestFd, reqAddr, req.length, requestIsSocket);
    req.reset();
    if (r < 0) throw new DaemonError('SOURCE_LOST', `sending page requests to the source failed: ${errnoName(-r)}`);
  };

  const sweep = (): void => {
    // Outstanding faults whose page became present (on either channel): record latency, end blocked time.
    if (outN === 0) return;
    const now = performance.now();
    for (let k = outN - 1; k >= 0; k--) {
      if (state.get(outPage[k]) === PAGE_PRESENT) {
        stats.recordLatency((now - outT0[k]) * 1000);
        outN--;
        outPage[k] = outPage[outN]; outT0[k] = outT0[outN]; outWall[k] = outWall[outN];
      }
    }
    Atomics.store(stats.cells, C.outstanding, outN);
    if (outN === 0) {
      v[F.blockedUs] += (now - blockedSince) * 1000;
      v[F.oldestOutstandingMs] = 0;
    } else {
      let oldest = outWall[0];
      for (let k = 1; k < outN; k++) if (outWall[k] < oldest) oldest = outWall[k];
      v[F.oldestOutstandingMs] = oldest;
    }
  };

  for (;;) {
    poller.wait(outN > 0 ? 20 : -1);
    if (poller.ready(1)) break; // stop eventfd
    if (poller.ready(2)) eventfdRead(d.nudgeFd);
    if (!urgentAdopted) {
      const fd = Atomics.load(stats.cells, C.urgentFd) - 1;
      if (fd >= 0) {
        urgentAdopted = true;
        setBlocking(fd, true);
        urgentFd = requestFd = fd;
        requestIsSocket = true;
        poller = makePoller();
      }
    }
    // 1. faults
    let n: number;
    let nreq = 0;
    while ((n = device.getPageRequestsInto(pages)) > 0) {
      const now = performance.now();
      for (let i = 0; i < n; i++) {
        const page = pages[i];
        v[F.faults]++;
        if (state.get(page) === PAGE_PRESENT) {
          // Placed between the fault and now (the placement woke it, or will): make sure it is awake.
          v[F.faultsOnPresent]++;
          device.uffd.wakeRaw(device.guestAddress(page), ps);
          continue;
        }
        let known = false;
        for (let k = 0; k < outN; k++) if (outPage[k] === page) { known = true; break; }
        if (!known && outN < MAX_OUTSTANDING) {
          if (outN === 0) blockedSince = now;
          outPage[outN] = page; outT0[outN] = now; outWall[outN] = Date.now(); outN++;
          if (v[F.oldestOutstandingMs] === 0) v[F.oldestOutstandingMs] = outWall[outN - 1];
          Atomics.store(stats.cells, C.outstanding, outN);
        }
        if (state.tryRequest(page)) {
          toRequest[nreq++] = page;
          if (nreq === toRequest.length) { sendRequests(nreq); nreq = 0; }
        }
      }
    }
    if (nreq > 0) sendRequests(nreq);
    // 2. urgent pages
    if (urgentFd >= 0 && poller.ready(3)) {
      const r = recvSome(urgentFd, recvAddr, URGENT_RECV_BYTES, true, MSG_DONTWAIT);
      if (r > 0) {
        v[F.bytesUrgent] += r;
        const recs: RamRecord[] = decoder.push(recvBuf.subarray(0, r));
        for (let i = 0; i < recs.length; i++) sink.add(recs[i]);
        sink.flush();
      } else if (r === 0 || (r < 0 && r !== -11)) {
        // The source closed its urgent channel (normal at the end); keep serving faults through the main stream.
        urgentFd = -1;
        poller = makePoller();
      }
    }
    sweep();
  }
  device.close();
}

// Spawned ahead of time (modules and koffi loaded), the worker waits for its job: starting a thread is
// not on the migration's critical path.
if (parentPort && (workerData as { role?: string })?.role === 'fault') {
  parentPort.once('message', (d: FaultWorkerData) => {
    try {
      runFaultWorker(d);
      post({ type: 'done' });
    } catch (e) {
      const err = e as Error & { code?: string };
      post({ type: 'error', code: err.code ?? 'INTERNAL', message: err.message });
    }
    parentPort?.close();
  });
}
