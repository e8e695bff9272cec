// Fault worker (DESIGN §3): one synchronous loop per userfaultfd. Wait (in read() on the uffd when no fault
// is outstanding, else poll([uffd, stop, nudge, urgent socket])) → batch-read faults (umem-compat
// getPageRequestsInto) → skip pages present or already requested (shared page state) → merged
// REQ_PAGES(_ID) on the urgent connection (blocking send) → urgent pages in (ram v4 records) → placed
// through umem-compat (which wakes the faulting threads). This thread never touches the registered memory:
// placement is an ioctl and the daemon's own view of the memfd.
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { UmemDevice, PAGE_PRESENT, PAGE_ABSENT } from '../umem-compat/index.js';
import { Poller, eventfdRead, setNonBlocking } from '../uffd/events.js';
import { gettidFn } from '../uffd/libc.js';
import { wakeSignal } from '../uffd/wake-signal.js';
import { addressOf } from '../uffd/memory.js';
import { errnoName } from '../uffd/errors.js';
import { DaemonError } from './errors.js';
import { F, C, SharedStats } from './stats.js';
import { WireMap } from './regions.js';
import { placementError } from './page-sink.js';
import { UrgentRecordParser, URGENT_PAGE, URGENT_ZERO } from './urgent-records.js';
import { RequestEncoder } from './requests.js';
import { recvSome, sendAll, setBlocking, MSG_DONTWAIT } from './sockets.js';
import { serveWorkerJob, type FaultWorkerData, type WorkerMessage } from './worker-common.js';

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

  // Wait until the stream worker has matched the source's block list (names for REQ_PAGES_ID).
  while (Atomics.load(stats.cells, C.blocksBound) === 0) Atomics.wait(stats.cells, C.blocksBound, 0, 1000);
  if (Atomics.load(stats.cells, C.blocksBound) < 0) { device.close(); return; }
  // The block names the stream worker bound (the session posts them before setting the flag).
  const m = parentPort ? receiveMessageOnPort(parentPort) : undefined;
  const names = (m?.message as { names?: string[] } | undefined)?.names;
  if (names) wire.setNames(names);
  const parser = new UrgentRecordParser(wire);

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
  // Idle (no fault outstanding) the worker waits in read() on the uffd itself, as a C handler does: one
  // system call per fault instead of poll + read. That needs the uffd blocking (then poll() on it answers
  // POLLERR, so it is made non-blocking again whenever we poll), every other read non-blocking per call
  // (RWF_NOWAIT), and a signal through which the session stops us or makes us look at the urgent socket.
  const sig = wakeSignal();
  const canWaitInRead = sig !== null && device.canWaitBlocking;
  Atomics.store(stats.cells, C.faultTid, gettidFn());
  Atomics.store(stats.cells, C.wakeSignal, sig ?? 0);
  let uffdBlocking = false;
  const setUffdBlocking = (blocking: boolean): void => {
    if (blocking !== uffdBlocking) { setNonBlocking(d.uffd, !blocking); uffdBlocking = blocking; }
  };
  // Pages on the urgent channel that were never requested (the source's forward/backward prefault) — more
  // may follow while we would wait in read() — or more waiting faults than we track: from then on we wait
  // in poll() (which sees the socket).
  let unsolicited = false;
  // Receive buffer placed so that a CONTINUE PAGE record (8-byte header) at its start has its payload page
  // aligned: UFFDIO_COPY's copy_from_user (rep movsb) from a source 8 bytes off the destination's page
  // alignment ran ~10× slower here (4K aliasing). Payloads that land misaligned anyway go through `stage`.
  const recvMem = Buffer.allocUnsafeSlow(URGENT_RECV_BYTES + 3 * ps);
  const memAddr = addressOf(recvMem);
  const recvStart = ((ps - (memAddr % ps)) % ps) + ps - 8;
  const recvBuf = recvMem.subarray(recvStart, recvStart + URGENT_RECV_BYTES);
  const recvAddr = memAddr + recvStart;
  const stageMem = Buffer.allocUnsafeSlow(2 * ps);
  const stageOff = (ps - (addressOf(stageMem) % ps)) % ps;
  const stage = stageMem.subarray(stageOff, stageOff + ps);
  const stageAddr = addressOf(stage);
  let recvHave = 0; // bytes in recvBuf (an incomplete record at its start)
  const fillPage = Buffer.allocUnsafeSlow(ps); // ZERO records with a non-zero fill byte
  const fillAddr = addressOf(fillPage);
  const allPresentMsg = { type: 'all-present' } as const;
  let eagainSeen = device.stats.eagain;
  const req = new RequestEncoder();
  const reqAddr = addressOf(req.buf);
  const pages = new Float64Array(256);
  const toRequest = new Float64Array(256);
  const outPage = new Float64Array(MAX_OUTSTANDING);
  const outT0 = new Float64Array(MAX_OUTSTANDING);
  const outWall = new Float64Array(MAX_OUTSTANDING);
  let outN = 0;
  let blockedSince = 0;
  const wallOrigin = performance.timeOrigin; // epoch ms = wallOrigin + performance.now(), no Date.now() per fault
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

  /** Place one parsed urgent record and count it like PageSink does for the fault role. */
  const placeUrgent = (): void => {
    const page = parser.page;
    if (state.get(page) === PAGE_ABSENT) unsolicited = true;
    let r: number;
    let zero = 0;
    if (parser.kind === URGENT_PAGE) {
      let src = recvAddr + parser.payload;
      if (src % 64 !== 0) {
        recvBuf.copy(stage, 0, parser.payload, parser.payload + ps);
        src = stageAddr;
      }
      r = device.placeFromAddressRaw(page, 1, src);
    } else if (parser.fill === 0) {
      r = device.placeZeroRaw(page, 1);
      zero = 1;
    } else {
      fillPage.fill(parser.fill);
      r = device.placeFromAddressRaw(page, 1, fillAddr);
    }
    if (r < 0) throw placementError(-r, page);
    v[F.placedFault] += r;
    v[F.pagesOnDemand] += r;
    v[F.zeroOnDemand] += zero * r;
    v[F.duplicatesFault] += 1 - r;
    if (stats.addPresent(r, device.pageCount)) post(allPresentMsg);
  };

  /**
   * Receive what the urgent socket has (never blocks) and place every complete record straight from the
   * receive buffer. Returns false when the source closed its urgent channel.
   */
  const serviceUrgent = (): boolean => {
    const r = recvSome(urgentFd, recvAddr + recvHave, URGENT_RECV_BYTES - recvHave, true, MSG_DONTWAIT);
    if (r === -11) return true;
    if (r <= 0) return false;
    v[F.bytesUrgent] += r;
    const end = recvHave + r;
    let pos = 0;
    for (;;) {
      const q = parser.next(recvBuf, pos, end);
      if (q < 0) break;
      pos = q;
      if (parser.kind === URGENT_PAGE || parser.kind === URGENT_ZERO) placeUrgent();
    }
    recvHave = end - pos;
    if (recvHave > 0 && pos > 0) recvBuf.copyWithin(0, pos, end);
    v[F.eagainFault] = device.stats.eagain;
    return true;
  };

  let readFaults = true; // first pass: whatever is already queued
  try {
    for (;;) {
      // A placement's EAGAIN made umem-compat read the uffd: faults may sit in its ring, which no wait sees.
      const eagain = device.stats.eagain;
      if (eagain !== eagainSeen) { eagainSeen = eagain; readFaults = true; }
      const queued = readFaults || device.queuedPageRequests > 0;
      if (canWaitInRead && outN === 0 && urgentFd >= 0 && !unsolicited && !queued) {
        setUffdBlocking(true);
        Atomics.store(stats.cells, C.faultIdle, 1);
        let n = 0;
        try {
          if (!Atomics.load(stats.cells, C.stop)) n = device.waitPageRequestsBlocking();
        } finally {
          Atomics.store(stats.cells, C.faultIdle, 0);
        }
        if (n > 0) {
          poller.clear();
          readFaults = true;
        } else {
          poller.wait(0); // the signal: stop, or input on the urgent socket; look at everything once
        }
      } else {
        setUffdBlocking(false);
        poller.wait(queued ? 0 : outN > 0 ? 20 : -1);
        if (queued) readFaults = true;
      }
      if (poller.ready(1) || Atomics.load(stats.cells, C.stop)) break; // stop
      if (poller.ready(2)) eventfdRead(d.nudgeFd);
      if (!urgentAdopted) {
        const fd = Atomics.load(stats.cells, C.urgentFd) - 1;
        if (fd >= 0) {
          urgentAdopted = true;
          setBlocking(fd, true);
          urgentFd = requestFd = fd;
          requestIsSocket = true;
          poller = makePoller();
          readFaults = true;
        }
      }
      // 1. faults: read the uffd only when poll says so (or a placement's EAGAIN drained it into the ring), and
      // again only while reads come back full — no EAGAIN read per wake-up.
      let nreq = 0;
      if (readFaults || poller.ready(0)) {
        readFaults = false;
        let n: number;
        do {
          n = device.getPageRequestsInto(pages);
          if (n === 0) break;
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
            if (!known && outN === MAX_OUTSTANDING) unsolicited = true; // untracked waiters: keep polling
            if (!known && outN < MAX_OUTSTANDING) {
              if (outN === 0) blockedSince = now;
              outPage[outN] = page; outT0[outN] = now; outWall[outN] = wallOrigin + now; outN++;
              if (v[F.oldestOutstandingMs] === 0) v[F.oldestOutstandingMs] = outWall[outN - 1];
              Atomics.store(stats.cells, C.outstanding, outN);
            }
            if (state.tryRequest(page)) {
              toRequest[nreq++] = page;
              if (nreq === toRequest.length) { sendRequests(nreq); nreq = 0; }
            }
          }
        } while (n === pages.length);
      }
      if (nreq > 0) sendRequests(nreq);
      // 2. urgent pages: when poll said so, or right after sending requests (on one vCPU the source usually
      // answered while we were preempted in send(): one non-blocking recv instead of another poll).
      if (urgentFd >= 0 && (poller.ready(3) || nreq > 0)) {
        if (!serviceUrgent()) {
          // The source closed its urgent channel (normal at the end); keep serving faults through the main
          // stream: requests go back to its return path.
          urgentFd = -1;
          requestFd = d.requestFd;
          requestIsSocket = d.requestIsSocket;
          poller = makePoller();
        }
      }
      sweep();
    }
  } finally {
    setUffdBlocking(false); // the open file is shared with the process and the session's device
    device.close();
  }
}

// Spawned ahead of time (modules and koffi loaded), the worker waits for its job: starting a thread is
// not on the migration's critical path.
serveWorkerJob<FaultWorkerData>('fault', runFaultWorker);
