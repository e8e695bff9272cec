// Scenarios run inside a child process (runInChild, hard timeout): the device lives here, touchers are worker
// threads, and this (main) thread is the server. It never touches the guest mapping itself.
import { Worker } from 'node:worker_threads';
import { UmemDevice, type UmemMode, encodeOffsets, decodeOffsets, UmemError } from '../../../src/umem-compat/index.js';
import { fillPage, expectedFirst, expectedLast, check } from './pattern.js';

const toucherUrl = new URL('./toucher.js', import.meta.url);

export interface Touch {
  worker: Worker;
  results: Int32Array;
  pages: number[];
  exited: Promise<number>;
}

export function startToucher(dev: UmemDevice, pages: number[], opts: { writeMarker?: number; start?: SharedArrayBuffer } = {}): Touch {
  const results = new SharedArrayBuffer(4 * (1 + 2 * pages.length));
  const worker = new Worker(toucherUrl, {
    workerData: { base: dev.regions[0].base, pageSize: dev.pageSize, pages, writeMarker: opts.writeMarker, results, start: opts.start },
  });
  const exited = new Promise<number>((resolve, reject) => { worker.on('exit', resolve); worker.on('error', reject); });
  return { worker, results: new Int32Array(results), pages, exited };
}

const done = (t: Touch): boolean => Atomics.load(t.results, 0) === 1;

/** Verify what a toucher saw against the pattern (or zeros for pages in `zeroPages`). */
export function verify(t: Touch, zeroPages: Set<number> = new Set()): void {
  const n = t.pages.length;
  for (let i = 0; i < n; i++) {
    const p = t.pages[i];
    const first = zeroPages.has(p) ? 0 : expectedFirst(p);
    const last = zeroPages.has(p) ? 0 : expectedLast(p);
    check(t.results[1 + i] === first, `page ${p}: first u32 0x${(t.results[1 + i] >>> 0).toString(16)}, expected 0x${(first >>> 0).toString(16)}`);
    check(t.results[1 + n + i] === last, `page ${p}: last byte ${t.results[1 + n + i]}, expected ${last}`);
  }
}

/**
 * Serve requests until every toucher is done: request → write page into the shmem view → mark cached.
 * Returns the requests seen (duplicates included). Bounded by a deadline so a bug cannot spin forever.
 */
export function serve(dev: UmemDevice, touches: Touch[], opts: { useReadWrite?: boolean; deadlineMs?: number } = {}): number[] {
  const seen: number[] = [];
  const out = new Float64Array(64);
  const buf = Buffer.alloc(64 * 8);
  const deadline = Date.now() + (opts.deadlineMs ?? 15_000);
  while (!touches.every(done)) {
    check(Date.now() < deadline, `server deadline: touchers not done; requests so far ${seen.length}`);
    let offsets: ArrayLike<number>;
    let n: number;
    if (opts.useReadWrite) {
      let bytes = 0;
      try {
        bytes = dev.read(buf, { timeoutMs: 20 });
      } catch (e) {
        if ((e as UmemError).code === 'EAGAIN') continue;
        throw e;
      }
      offsets = decodeOffsets(buf.subarray(0, bytes));
      n = offsets.length;
    } else {
      if (!dev.waitForPageRequests(20)) continue;
      n = dev.getPageRequestsInto(out);
      offsets = out;
    }
    for (let i = 0; i < n; i++) {
      const p = offsets[i];
      seen.push(p);
      if (!dev.isCached(p)) fillPage(dev.shmemView(p), p);
    }
    if (opts.useReadWrite) dev.write(encodeOffsets(Array.from(offsets).slice(0, n)));
    else dev.markPagesCachedRaw(out, n) >= 0 || check(false, 'markPagesCachedRaw failed');
  }
  return seen;
}

async function finish(touches: Touch[]): Promise<void> {
  for (const t of touches) check((await t.exited) === 0, 'toucher exit code');
}

// ---------------------------------------------------------------------------------------------------------

/** request → write page → mark cached → the toucher sees the right bytes. */
export async function basic(a: { mode: UmemMode; useReadWrite?: boolean }) {
  const dev = UmemDevice.init(64 * 4096 - 100, { mode: a.mode });
  try {
    check(dev.size === 64 * 4096, `size rounded up to ${dev.size}`);
    const pages = [0, 1, 2, 7, 63, 31, 32, 5];
    const t = startToucher(dev, pages, { writeMarker: 0xabcdef });
    const seen = serve(dev, [t], { useReadWrite: a.useReadWrite });
    await finish([t]);
    verify(t);
    for (const p of pages) check(seen.includes(p), `page ${p} was requested`);
    check(seen.every((p) => pages.includes(p)), `only touched pages requested: ${seen}`);
    return { seen, stats: { ...dev.stats }, size: dev.size };
  } finally {
    dev.close();
  }
}

/** Proactive marking: pages marked before any access cause no request; an unmarked page does. */
export async function proactive(a: { mode: UmemMode }) {
  const dev = UmemDevice.init(32 * 4096, { mode: a.mode });
  try {
    const pre = [0, 1, 2, 3, 10, 11, 20];
    for (const p of pre) fillPage(dev.shmemView(p), p);
    const r1 = dev.markPageCached(pre.slice(0, 4)); // a contiguous run: one ioctl
    const r2 = dev.write(encodeOffsets(pre.slice(4)));
    check(r1.placed === 4 && r2 === 24, `placed ${JSON.stringify(r1)} / wrote ${r2}`);
    // Zero pages too (UFFDIO_ZEROPAGE / zeroed memfd page).
    dev.placeZero(25, 2);
    // And place() straight from a caller buffer (no shmem write by the caller).
    const src = Buffer.alloc(2 * 4096);
    fillPage(src.subarray(0, 4096), 28);
    fillPage(src.subarray(4096), 29);
    dev.place(28, src);
    const touched = [...pre, 25, 26, 28, 29, 15];
    const t = startToucher(dev, touched);
    const seen = serve(dev, [t]);
    await finish([t]);
    verify(t, new Set([25, 26]));
    check(seen.length >= 1 && seen.every((p) => p === 15), `only page 15 requested, saw ${seen}`);
    // place() never overwrites a present page.
    const again = dev.place(28, Buffer.alloc(4096));
    check(again.placed === 0 && again.duplicates === 1, `re-place of a present page: ${JSON.stringify(again)}`);
    return { seen, stats: { ...dev.stats } };
  } finally {
    dev.close();
  }
}

/** Duplicates: the same offset marked twice, in one buffer and across calls; two threads faulting one page. */
export async function duplicates(a: { mode: UmemMode }) {
  const dev = UmemDevice.init(16 * 4096, { mode: a.mode });
  try {
    fillPage(dev.shmemView(3), 3);
    const w = dev.write(encodeOffsets([3, 3, 3]));
    check(w === 24, `write consumed ${w}`);
    const again = dev.markPageCached(3);
    check(again.placed === 0 && again.duplicates === 1, `second mark: ${JSON.stringify(again)}`);
    // Two touchers on the same pages at the same time: requests may repeat; all must be served.
    const start = new SharedArrayBuffer(4);
    const pages = [5, 6, 7, 8];
    const t1 = startToucher(dev, pages, { start });
    const t2 = startToucher(dev, [...pages].reverse(), { start });
    await new Promise((r) => setTimeout(r, 100));
    Atomics.store(new Int32Array(start), 0, 1);
    Atomics.notify(new Int32Array(start), 0);
    const seen = serve(dev, [t1, t2]);
    // Serve every request again (a daemon reading stale requests): harmless duplicates.
    const dup = dev.markPageCached(seen);
    await finish([t1, t2]);
    verify(t1);
    verify(t2);
    check(dup.placed === 0 && dup.duplicates === seen.length, `re-marking served pages: ${JSON.stringify(dup)}`);
    return { seen, stats: { ...dev.stats }, dup };
  } finally {
    dev.close();
  }
}

function expectError(fn: () => unknown, code: string, what: string): UmemError {
  try {
    fn();
  } catch (e) {
    check(e instanceof UmemError, `${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
    check(e.code === code, `${what}: code ${e.code}, expected ${code} (${e.message})`);
    return e;
  }
  throw new Error(`${what}: did not throw ${code}`);
}

/** read()/write() u64 semantics: sizes, offsets beyond the end, blocking modes, host endianness. */
export async function readWrite(a: { mode: UmemMode }) {
  const dev = UmemDevice.init(8 * 4096, { mode: a.mode });
  try {
    const errors: Record<string, unknown> = {};
    expectError(() => dev.read(Buffer.alloc(4)), 'EINVAL', 'read into 4 bytes');
    expectError(() => dev.read(Buffer.alloc(0)), 'EINVAL', 'read into 0 bytes');
    expectError(() => dev.read(Buffer.alloc(8), { nonBlocking: true }), 'EAGAIN', 'non-blocking read, nothing pending');
    dev.nonBlocking = true;
    expectError(() => dev.read(Buffer.alloc(8)), 'EAGAIN', 'O_NONBLOCK-like read');
    dev.nonBlocking = false;
    const t0 = Date.now();
    expectError(() => dev.read(Buffer.alloc(8), { timeoutMs: 50 }), 'EAGAIN', 'timed read');
    check(Date.now() - t0 >= 40, 'timed read waited');
    dev.interrupt();
    expectError(() => dev.read(Buffer.alloc(8)), 'EINTR', 'interrupted blocking read');
    expectError(() => dev.write(Buffer.alloc(4)), 'EINVAL', 'write of 4 bytes');
    const beyond = expectError(() => dev.write(encodeOffsets([1, 8])), 'EINVAL', 'write of offset == end');
    errors.beyond = { offset: beyond.offset, pageCount: beyond.pageCount };
    check(beyond.offset === 8 && beyond.pageCount === 8, 'error names the offset and the end');
    check(!dev.isCached(1), 'a rejected write marks nothing (page 1 before the bad offset)');
    const huge = Buffer.alloc(8, 0xff); // 2^64 - 1
    expectError(() => dev.write(huge), 'EINVAL', 'write of 2^64-1');
    expectError(() => dev.markPageCached([-1]), 'EINVAL', 'negative offset');
    expectError(() => dev.markPageCached([1.5]), 'EINVAL', 'fractional offset');
    check(dev.markPagesCachedRaw([9], 1) === -22, 'raw mark of a bad offset → -EINVAL');
    expectError(() => dev.shmemView(8), 'EINVAL', 'shmemView beyond the end');
    // 12 bytes: one whole u64 consumed, trailing bytes ignored.
    fillPage(dev.shmemView(2), 2);
    const twelve = Buffer.alloc(12);
    twelve.set(encodeOffsets([2]));
    check(dev.write(twelve) === 8, 'write of 12 bytes consumes 8');
    check(dev.isCached(2), 'page 2 cached');
    // read() returns host-endian u64 offsets of faulting pages; a big buffer gets only what is pending.
    const t = startToucher(dev, [6]);
    const buf = Buffer.alloc(64, 0xee);
    const n = dev.read(buf, { timeoutMs: 5000 });
    check(n === 8, `read returned ${n} bytes`);
    const u64 = new BigUint64Array(buf.buffer, buf.byteOffset, 8);
    check(u64[0] === 6n, `host-endian u64 offset ${u64[0]}`);
    check(buf[8] === 0xee, 'bytes past the returned count untouched');
    fillPage(dev.shmemView(6), 6);
    check(dev.write(buf.subarray(0, n)) === 8, 'write back');
    await finish([t]);
    verify(t);
    // Non-pagefault failures: a closed device.
    dev.close();
    expectError(() => dev.markPageCached(1), 'EBADF', 'mark after close');
    return { errors, stats: { ...dev.stats } };
  } finally {
    dev.close();
  }
}

/** makeVmaAnonymous: EBUSY while pages are missing; then plain access with no requests. */
export async function anonymous(a: { mode: UmemMode; force?: boolean }) {
  const pages = 16;
  const dev = UmemDevice.init(pages * 4096, { mode: a.mode });
  try {
    const half = Array.from({ length: pages / 2 }, (_, i) => i);
    for (const p of half) fillPage(dev.shmemView(p), p);
    dev.markPageCached(half);
    if (!a.force) {
      expectError(() => dev.makeVmaAnonymous(), 'EBUSY', 'anonymous with pages missing');
      const rest = Array.from({ length: pages / 2 }, (_, i) => i + pages / 2);
      for (const p of rest) fillPage(dev.shmemView(p), p);
      dev.MARK_PAGE_CACHED(rest);
      dev.MAKE_VMA_ANONYMOUS();
    } else {
      dev.makeVmaAnonymous({ force: true });
    }
    check(dev.isAnonymous, 'isAnonymous');
    expectError(() => dev.markPageCached(0), 'EINVAL', 'mark after anonymous');
    const all = Array.from({ length: pages }, (_, i) => i);
    const t = startToucher(dev, all, { writeMarker: 0x1234 });
    const deadline = Date.now() + 10_000;
    while (!done(t)) check(Date.now() < deadline, 'toucher blocked after makeVmaAnonymous');
    await finish([t]);
    // With force, the unmarked half reads as zeros (never requested, nothing written there).
    verify(t, a.force ? new Set(all.slice(pages / 2)) : new Set());
    return { stats: { ...dev.stats } };
  } finally {
    dev.close();
  }
}

/** Bounded stress: several threads fault on overlapping random pages at once; nothing lost, no hang. */
export async function stress(a: { mode: UmemMode; threads: number; pagesPerThread: number; totalPages: number; seed: number }) {
  const dev = UmemDevice.init(a.totalPages * 4096, { mode: a.mode });
  try {
    let s = a.seed >>> 0;
    const rnd = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
    const lists = Array.from({ length: a.threads }, () => Array.from({ length: a.pagesPerThread }, () => (rnd() >>> 12) % a.totalPages));
    const start = new SharedArrayBuffer(4);
    const touches = lists.map((l) => startToucher(dev, l, { start }));
    await new Promise((r) => setTimeout(r, 200));
    Atomics.store(new Int32Array(start), 0, 1);
    Atomics.notify(new Int32Array(start), 0);
    const t0 = Date.now();
    const seen = serve(dev, touches, { deadlineMs: 60_000 });
    const ms = Date.now() - t0;
    await finish(touches);
    for (const t of touches) verify(t);
    const distinct = new Set(lists.flat());
    check(dev.stats.placed === distinct.size, `placed ${dev.stats.placed} == distinct touched ${distinct.size}`);
    check(new Set(seen).size === distinct.size, 'every touched page was requested');
    return { requests: seen.length, distinct: distinct.size, ms, stats: { ...dev.stats } };
  } finally {
    dev.close();
  }
}

/**
 * Cross-process: a guest process hands its uffd + memfd + a two-region Firecracker-style table over a unix
 * socket (SCM_RIGHTS, fdpass); this process attaches a device to them and serves its faults.
 */
export async function crossProcess(a: { mode: UmemMode; eagain?: boolean }) {
  const { spawn } = await import('node:child_process');
  const { unixSocketPair, recvFds, tryRecvFds, sendFds } = await import('../../../src/uffd/fdpass.js');
  const [mine, theirs] = unixSocketPair('seqpacket');
  const guestScript = new URL('./guest.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [guestScript, JSON.stringify({ mode: a.mode, eagain: a.eagain })], { stdio: ['ignore', 'pipe', 'pipe', theirs] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  try {
    const hello = recvFds(mine, { timeoutMs: 10_000 });
    const p = hello.payload as { mode: UmemMode; regions: never[] };
    check(hello.fds.length === 2, `got ${hello.fds.length} fds`);
    const events: string[] = [];
    const dev = UmemDevice.attach({
      uffd: hello.fds[0], memfd: hello.fds[1], regions: p.regions, mode: p.mode, onEvent: (e) => events.push(e.kind),
    });
    try {
      check(dev.pageCount === 128 && dev.regions.length === 2, 'two regions of 64 pages');
      check(dev.table.devicePage('r1', 36) === 100, 'devicePage conversion');
      check(dev.table.locate(100).region.name === 'r1' && dev.table.locate(100).pageInRegion === 36, 'locate conversion');
      // A second instance (as a background worker would hold) places page 100 proactively, sharing page state.
      const placer = UmemDevice.attach({ ...dev.shareInfo(), eventReader: false, ownsFds: false });
      const buf = Buffer.alloc(4096);
      fillPage(buf, 100);
      check(placer.place(100, buf).placed === 1, 'placer placed page 100');
      placer.close();
      check(dev.isCached(100), 'page state shared between instances');
      const pages = [0, 5, 63, 64, 74, 100, 127];
      sendFds(mine, [], { pages });
      const seen: number[] = [];
      const out = new Float64Array(16);
      const deadline = Date.now() + 15_000;
      let touched = null as { results: { page: number; ok: boolean }[] } | null;
      while (!touched) {
        check(Date.now() < deadline, `guest never reported; requests ${seen}; stderr ${stderr}`);
        const m = tryRecvFds(mine);
        if (m) { touched = m.payload as never; break; }
        if (!dev.waitForPageRequests(20)) continue;
        const n = dev.getPageRequestsInto(out);
        for (let i = 0; i < n; i++) {
          seen.push(out[i]);
          if (!dev.isCached(out[i])) fillPage(dev.shmemView(out[i]), out[i]);
        }
        check(dev.markPagesCachedRaw(out, n) >= 0, 'mark');
      }
      check(touched.results.every((r) => r.ok), `guest saw wrong bytes: ${JSON.stringify(touched.results)}`);
      check(!seen.includes(100), 'the pre-placed page was never requested');
      check([0, 5, 63, 64, 74, 127].every((x) => seen.includes(x)), `all other pages requested: ${seen}`);
      let eagainSeen = 0;
      if (a.eagain) {
        // The guest starts a madvise(DONTNEED) (REMOVE event, unread); our placement must back off, read
        // the event (onEvent), then succeed: no spin, no error, no hang.
        sendFds(mine, [], { page: 40 });
        check((recvFds(mine, { timeoutMs: 10_000 }).payload as { kind: string }).kind === 'removing', 'removing');
        await new Promise((r) => setTimeout(r, 300));
        const before = dev.stats.eagain;
        const z = Buffer.alloc(4096);
        fillPage(z, 41);
        check(dev.place(41, z).placed === 1, 'placed page 41 despite the pending REMOVE');
        eagainSeen = dev.stats.eagain - before;
        check((recvFds(mine, { timeoutMs: 10_000 }).payload as { kind: string }).kind === 'removed', 'removed');
        check(events.includes('remove'), `REMOVE event delivered to onEvent: ${events}`);
      }
      // End of migration, done by the server on the guest's uffd.
      dev.makeVmaAnonymous({ force: true });
      sendFds(mine, [], { pages: [20, 90] });
      const plain = recvFds(mine, { timeoutMs: 10_000 }).payload as { results: { page: number; sum: number }[] };
      check(plain.results.every((r) => r.sum === 7), `unfetched pages are plain zeros after unregister: ${JSON.stringify(plain.results)}`);
      check((await exited) === 0, `guest exit; stderr ${stderr}`);
      return { seen, stats: { ...dev.stats }, events, eagainSeen };
    } finally {
      dev.close();
    }
  } finally {
    child.kill('SIGKILL');
  }
}
