// Fault scenarios run by test/uffd/*.test.ts in a child process (test/helpers/child.ts: runInChild), so a
// scenario that never gets its fault resolved is SIGKILLed by the harness instead of hanging the suite.
// In every scenario a worker thread touches the registered memory and this (main) thread resolves.
import {
  Userfaultfd, mapAnonymous, createMemfd, mapMemfd, addressOf, pageSize, hugePageSize,
  UFFD_EVENT_PAGEFAULT, UffdError, type MemoryRegion,
} from '../../../src/uffd/index.js';
import { gettidFn, koffi } from '../../../src/uffd/libc.js';
import { startToucher, serve, patternPage, sleepSync, settledWithin } from './common.js';

export type MemKind = 'anon' | 'shmem' | 'hugetlb';

function region(kind: MemKind, pages: number): { r: MemoryRegion; psize: number; cleanup: () => void } {
  if (kind === 'anon') { const r = mapAnonymous(pages * pageSize); return { r, psize: pageSize, cleanup: () => r.unmap() }; }
  const huge = kind === 'hugetlb';
  const psize = huge ? hugePageSize : pageSize;
  const m = createMemfd(`uffd-${kind}`, pages * psize, { hugetlb: huge });
  const r = mapMemfd(m);
  return { r, psize, cleanup: () => { r.unmap(); m.close(); } };
}

/** MISSING faults resolved by UFFDIO_COPY (resolver: 'copy') or UFFDIO_ZEROPAGE. */
export async function missing(a: { kind: MemKind; resolver: 'copy' | 'zeropage'; pages: number }) {
  const uffd = Userfaultfd.open({ nonBlocking: true });
  const { r, psize, cleanup } = region(a.kind, a.pages);
  uffd.register(r.addr, r.length, { missing: true });
  const pages = Array.from({ length: a.pages }, (_, i) => i);
  const t = startToucher(r.addr, pages, 'read', undefined, psize);
  const srcs = pages.map((p) => patternPage(0x1000 + p, psize));
  const faults: number[] = [];
  serve(uffd, a.pages, (rd, i) => {
    if (rd.kind(i) !== UFFD_EVENT_PAGEFAULT) return false;
    const page = (rd.address(i) - r.addr) / psize;
    faults.push(page);
    const n = a.resolver === 'copy'
      ? uffd.copyRaw(r.addr + page * psize, addressOf(srcs[page]), psize, 0)
      : uffd.zeropageRaw(r.addr + page * psize, psize, 0);
    if (n !== psize) throw new Error(`${a.resolver} returned ${n}`);
    return true;
  }, 10000);
  const { values } = await t.done;
  await t.worker.terminate();
  cleanup(); uffd.close();
  return { faults, values };
}

/** COPY with DONTWAKE: the toucher stays blocked until UFFDIO_WAKE; a second COPY then gives EEXIST. */
export async function dontwakeThenWake() {
  const uffd = Userfaultfd.open({ nonBlocking: true });
  const r = mapAnonymous(pageSize);
  uffd.register(r.addr, r.length, { missing: true });
  const t = startToucher(r.addr, [0], 'read');
  const src = patternPage(77);
  let copied = -1;
  serve(uffd, 1, (rd, i) => { if (!rd.isPagefault(i)) return false; copied = uffd.copyRaw(r.addr, addressOf(src), pageSize, 1 /* DONTWAKE */); return true; });
  const blockedAfterDontwake = !(await settledWithin(t.done, 200));
  const second = uffd.copyRaw(r.addr, addressOf(src), pageSize, 0);
  let eexistCode = '';
  try { uffd.copy(r.addr, addressOf(src), pageSize); } catch (e) { eexistCode = (e as UffdError).code; }
  const stillBlockedAfterEexist = !(await settledWithin(t.done, 100));
  uffd.wake(r.addr, pageSize);
  const { values } = await t.done;
  await t.worker.terminate();
  r.unmap(); uffd.close();
  return { copied, blockedAfterDontwake, second, eexistCode, stillBlockedAfterEexist, values };
}

/** The kernel's "EEXIST then wake": the page appears behind the faulting thread's back; COPY says EEXIST; WAKE releases it. */
export async function eexistThenWake() {
  const uffd = Userfaultfd.open({ nonBlocking: true });
  const r = mapAnonymous(2 * pageSize);
  uffd.register(r.addr, r.length, { missing: true });
  const t = startToucher(r.addr, [1], 'read');
  const src = patternPage(5);
  let first = 0; let second = 0; let field = 0;
  serve(uffd, 1, (rd, i) => {
    if (!rd.isPagefault(i)) return false;
    // Another resolver (here: us, with DONTWAKE) already filled the range, including the faulting page.
    first = uffd.copyRaw(r.addr, addressOf(Buffer.concat([patternPage(4), src])), 2 * pageSize, 1);
    second = uffd.copyRaw(rd.address(i), addressOf(src), pageSize, 0);
    field = uffd.lastResultField('copy');
    uffd.wake(rd.address(i), pageSize);
    return true;
  });
  const { values } = await t.done;
  await t.worker.terminate();
  r.unmap(); uffd.close();
  return { first, second, field, values };
}

/** MINOR faults on a memfd mapped twice: populate through the alias, CONTINUE; a second CONTINUE gives EEXIST. */
export async function minorContinue(a: { kind: 'shmem' | 'hugetlb'; pages: number }) {
  const huge = a.kind === 'hugetlb';
  const psize = huge ? hugePageSize : pageSize;
  const uffd = Userfaultfd.open({ nonBlocking: true, require: [huge ? 'MINOR_HUGETLBFS' : 'MINOR_SHMEM'] });
  const m = createMemfd('minor', a.pages * psize, { hugetlb: huge });
  const faulting = mapMemfd(m);
  const alias = mapMemfd(m);
  for (let p = 0; p < a.pages; p++) new Uint32Array(alias.view(p * psize, psize).buffer, alias.view(p * psize, psize).byteOffset, 1)[0] = 0x100 + p;
  const mask = faulting.length && uffd.register(faulting.addr, faulting.length, { minor: true });
  const pages = Array.from({ length: a.pages }, (_, i) => i);
  const t = startToucher(faulting.addr, pages, 'read', undefined, psize);
  const flags: number[] = [];
  serve(uffd, a.pages, (rd, i) => {
    if (!rd.isPagefault(i)) return false;
    flags.push(rd.faultFlags(i));
    const page = (rd.address(i) - faulting.addr) / psize;
    // The resolver edits the page through the alias (never through the registered mapping), then maps it.
    const w = alias.view(page * psize, 4);
    new Uint32Array(w.buffer, w.byteOffset, 1)[0] += 0x1000;
    const n = uffd.continueRaw(faulting.addr + page * psize, psize, 0);
    if (n !== psize) throw new Error(`continue returned ${n}`);
    return true;
  }, 10000);
  const { values } = await t.done;
  const again = uffd.continueRaw(faulting.addr, psize, 0);
  await t.worker.terminate();
  faulting.unmap(); alias.unmap(); m.close(); uffd.close();
  return { mask, flags, values, again };
}

/** WP: write to a protected populated page raises a WP|WRITE fault; unprotecting wakes the writer. */
export async function wpBasic(a: { unpopulated: boolean }) {
  const uffd = Userfaultfd.open({ nonBlocking: true, require: ['PAGEFAULT_FLAG_WP', ...(a.unpopulated ? ['WP_UNPOPULATED' as const] : [])],
    features: a.unpopulated ? ['WP_UNPOPULATED', 'THREAD_ID'] : ['THREAD_ID'] });
  const r = mapAnonymous(4 * pageSize);
  if (!a.unpopulated) r.view().fill(1);
  uffd.register(r.addr, r.length, { wp: true });
  uffd.writeProtect(r.addr, r.length, { wp: true });
  const t = startToucher(r.addr, [0, 2], 'write', 0xabcd);
  const flags: number[] = [];
  serve(uffd, 2, (rd, i) => {
    if (!rd.isPagefault(i)) return false;
    flags.push(rd.faultFlags(i));
    uffd.writeProtect(rd.address(i), pageSize, { wp: false });
    return true;
  });
  const { values } = await t.done;
  await t.worker.terminate();
  const untouched = new Uint32Array(r.view(pageSize, 4).buffer, r.view(pageSize, 4).byteOffset, 1)[0];
  r.unmap(); uffd.close();
  return { flags, values, untouched };
}

/**
 * COPY_MODE_WP / CONTINUE_MODE_WP (kernel `minor-wp`, `events-wp`): a write fault is resolved with a
 * write-protected page, so the retried write raises a second fault carrying WP|WRITE; unprotecting releases
 * the writer. 'anon' registers MISSING|WP and resolves with COPY; 'shmem' registers MINOR|WP on a memfd
 * (populated through an alias) and resolves with CONTINUE.
 */
export async function resolveWithWp(a: { kind: 'anon' | 'shmem' }) {
  const shmem = a.kind === 'shmem';
  const uffd = Userfaultfd.open({ nonBlocking: true,
    require: ['PAGEFAULT_FLAG_WP', ...(shmem ? ['MINOR_SHMEM', 'WP_HUGETLBFS_SHMEM'] as const : [])] });
  const m = shmem ? createMemfd('minor-wp', pageSize) : null;
  const r = m ? mapMemfd(m) : mapAnonymous(pageSize);
  const alias = m ? mapMemfd(m) : null;
  alias?.view().fill(7);
  const mask = uffd.register(r.addr, r.length, { wp: true, ...(shmem ? { minor: true } : { missing: true }) });
  const t = startToucher(r.addr, [0], 'write', 0xbeef);
  const src = patternPage(0x42);
  const flags: number[] = [];
  const results: number[] = [];
  serve(uffd, 2, (rd, i) => {
    if (!rd.isPagefault(i)) return false;
    flags.push(rd.faultFlags(i));
    if (!rd.isWp(i)) {
      // First fault (missing or minor): map the page write-protected; the write retries and faults again.
      results.push(shmem ? uffd.continueRaw(r.addr, pageSize, 2 /* CONTINUE_MODE_WP */)
        : uffd.copyRaw(r.addr, addressOf(src), pageSize, 2 /* COPY_MODE_WP */));
    } else {
      uffd.writeProtect(r.addr, pageSize, { wp: false });
    }
    return true;
  });
  const { values } = await t.done;
  await t.worker.terminate();
  const after = r.view(0, 8);
  const word1 = new Uint32Array(after.buffer, after.byteOffset, 2)[1];
  r.unmap(); alias?.unmap(); m?.close(); uffd.close();
  return { mask, flags, results, values, word1 };
}

/** MISSING faults resolved by UFFDIO_MOVE from a staging area; the source pages become empty. */
export async function move(a: { pages: number }) {
  const uffd = Userfaultfd.open({ nonBlocking: true, require: ['MOVE'] });
  const dst = mapAnonymous(a.pages * pageSize);
  const staging = mapAnonymous(a.pages * pageSize);
  for (let p = 0; p < a.pages; p++) { const v = staging.view(p * pageSize, 4); new Uint32Array(v.buffer, v.byteOffset, 1)[0] = 0x500 + p; }
  uffd.register(dst.addr, dst.length, { missing: true });
  const pages = Array.from({ length: a.pages }, (_, i) => i);
  const t = startToucher(dst.addr, pages, 'read');
  serve(uffd, a.pages, (rd, i) => {
    if (!rd.isPagefault(i)) return false;
    const page = (rd.address(i) - dst.addr) / pageSize;
    uffd.move(dst.addr + page * pageSize, staging.addr + page * pageSize, pageSize, { allowSrcHoles: true });
    return true;
  });
  const { values } = await t.done;
  await t.worker.terminate();
  const sourceAfter = Array.from(new Uint32Array(staging.view().buffer, staging.view().byteOffset, staging.length / 4)).some((x) => x !== 0);
  // Moving out of a never-touched source (a hole; reading `staging` above mapped zero pages, which MOVE
  // does move): ENOENT without ALLOW_SRC_HOLES, skipped (len reported done) with it.
  let enoent = '';
  const dst2 = mapAnonymous(pageSize);
  const hole = mapAnonymous(pageSize);
  uffd.register(dst2.addr, pageSize, { missing: true });
  try { uffd.move(dst2.addr, hole.addr, pageSize); } catch (e) { enoent = (e as UffdError).code; }
  const holeSkipped = uffd.moveRaw(dst2.addr, hole.addr, pageSize, 2 /* ALLOW_SRC_HOLES */);
  dst.unmap(); dst2.unmap(); hole.unmap(); staging.unmap(); uffd.close();
  return { values, sourceNonZeroAfter: sourceAfter, enoent, holeSkipped };
}

/** THREAD_ID: the fault message names the toucher's tid. */
export async function threadId() {
  const uffd = Userfaultfd.open({ nonBlocking: true, require: ['THREAD_ID'] });
  const r = mapAnonymous(pageSize);
  uffd.register(r.addr, r.length, { missing: true });
  const t = startToucher(r.addr, [0], 'read');
  let ptid = -1;
  serve(uffd, 1, (rd, i) => { if (!rd.isPagefault(i)) return false; ptid = rd.threadId(i); uffd.zeropage(r.addr, pageSize); return true; });
  const { tid } = await t.done;
  await t.worker.terminate();
  r.unmap(); uffd.close();
  return { ptid, tid, resolverTid: gettidFn() };
}

/**
 * POISON: page 0 copied, page 1 poisoned (no fault needed: both install PTEs up front). Touching page 0
 * works and is reported; touching page 1 must kill this process with SIGBUS. Runs on the main thread:
 * nothing here can block on a fault (a missing poison would block → the harness timeout fails the test).
 */
export function poison() {
  const uffd = Userfaultfd.open({ nonBlocking: true, require: ['POISON'] });
  const r = mapAnonymous(2 * pageSize);
  const mask = uffd.register(r.addr, r.length, { missing: true });
  uffd.copy(r.addr, addressOf(patternPage(9)), pageSize);
  const poisoned = uffd.poison(r.addr + pageSize, pageSize);
  const first = new Uint32Array(koffi.view(r.addr, 4) as ArrayBuffer)[0];
  process.send!({ kind: 'user', message: { first, poisoned, mask } });
  sleepSync(50); // let the message out before we die
  return new Uint32Array(koffi.view(r.addr + pageSize, 4) as ArrayBuffer)[0]; // SIGBUS
}

/** SIGBUS mode: a missing fault raises SIGBUS instead of an event; copied pages read fine. */
export function sigbusMode() {
  const uffd = Userfaultfd.open({ nonBlocking: true, require: ['SIGBUS'], features: ['SIGBUS'] });
  const r = mapAnonymous(2 * pageSize);
  uffd.register(r.addr, r.length, { missing: true });
  uffd.copy(r.addr, addressOf(patternPage(11)), pageSize);
  const first = new Uint32Array(koffi.view(r.addr, 4) as ArrayBuffer)[0];
  process.send!({ kind: 'user', message: { first } });
  sleepSync(50);
  return new Uint32Array(koffi.view(r.addr + pageSize, 4) as ArrayBuffer)[0]; // SIGBUS, no event
}


/**
 * mmap-changing (kernel uffd-unit-tests): while a REMOVE event is unread (a worker blocked in
 * madvise(DONTNEED) on a registered range), every resolver returns -EAGAIN and writes -EAGAIN into its result
 * field. Reading the event releases the worker.
 */
export async function mmapChanging() {
  const { Worker } = await import('node:worker_threads');
  const uffd = Userfaultfd.open({ nonBlocking: true, features: ['EVENT_REMOVE', 'MOVE', 'POISON', 'MINOR_SHMEM', 'PAGEFAULT_FLAG_WP'],
    require: ['EVENT_REMOVE'] });
  const anon = mapAnonymous(4 * pageSize);
  anon.view().fill(1);
  const m = createMemfd('mmap-changing', 2 * pageSize);
  const shm = mapMemfd(m);
  const alias = mapMemfd(m);
  alias.view().fill(2); // page cache populated: CONTINUE would succeed if not for mmap_changing
  uffd.register(anon.addr, anon.length, { missing: true, wp: true });
  uffd.register(shm.addr, shm.length, { minor: true });
  const staging = mapAnonymous(pageSize);
  staging.view().fill(3);
  const src = patternPage(4);
  // The worker blocks in madvise until we read the REMOVE event.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const koffi = require(workerData.koffi);
    const madvise = koffi.load('libc.so.6').func('madvise', 'int', ['uintptr_t', 'size_t', 'int']);
    parentPort.postMessage({ r: madvise(workerData.addr, workerData.len, 4) });`;
  const w = new Worker(code, { eval: true, workerData: { addr: anon.addr + 2 * pageSize, len: pageSize, koffi: require_koffi() } });
  const done = new Promise((r) => w.on('message', r));
  // Wait until the REMOVE is queued (uffd readable), without reading it.
  const { Poller } = await import('../../../src/uffd/index.js');
  const p = new Poller([uffd.fd]);
  const deadline = Date.now() + 5000;
  while (p.wait(20) === 0) if (Date.now() > deadline) throw new Error('REMOVE event never arrived');
  const results: Record<string, { ret: number; field?: number }> = {};
  results.copy = { ret: uffd.copyRaw(anon.addr + 3 * pageSize, addressOf(src), pageSize, 0), field: uffd.lastResultField('copy') };
  results.zeropage = { ret: uffd.zeropageRaw(anon.addr + 3 * pageSize, pageSize, 0), field: uffd.lastResultField('zeropage') };
  results.move = { ret: uffd.moveRaw(anon.addr + 3 * pageSize, staging.addr, pageSize, 0), field: uffd.lastResultField('move') };
  results.poison = { ret: uffd.poisonRaw(anon.addr + 3 * pageSize, pageSize, 0), field: uffd.lastResultField('poison') };
  results.continue = { ret: uffd.continueRaw(shm.addr, pageSize, 0), field: uffd.lastResultField('continue') };
  results.writeProtect = { ret: uffd.writeProtectRaw(anon.addr, pageSize, 1) };
  let thrown = '';
  try { uffd.copy(anon.addr + 3 * pageSize, addressOf(src), pageSize); } catch (e) { thrown = `${(e as Error).name}:${(e as UffdError).code}`; }
  const blockedWhileUnread = !(await settledWithin(done, 50));
  const { UffdEventReader } = await import('../../../src/uffd/index.js');
  const rd = new UffdEventReader(uffd.fd);
  const n = rd.read();
  const event = n ? rd.event(0) : null;
  const madviseResult = await done;
  // Afterwards the resolvers work again.
  const after = uffd.copyRaw(anon.addr + 2 * pageSize, addressOf(src), pageSize, 0); // the page madvise dropped
  await w.terminate();
  anon.unmap(); shm.unmap(); alias.unmap(); staging.unmap(); m.close(); uffd.close();
  return { results, thrown, blockedWhileUnread, event, madviseResult, after };
}

function require_koffi(): string {
  return new URL('../../../../node_modules/koffi/index.cjs', import.meta.url).pathname;
}

/**
 * Bounded stress: `threads` workers fault on `pages` pages at once ('disjoint': each its own interleaved
 * pages; 'racing': all of them every page, in different orders), this thread resolves in batches with
 * copyRaw (EEXIST → wake). Nothing may be lost: every toucher finishes and reads the right content.
 */
export async function stress(a: { pages: number; threads: number; pattern: 'disjoint' | 'racing' }) {
  const { UffdEventReader, Poller } = await import('../../../src/uffd/index.js');
  const uffd = Userfaultfd.open({ nonBlocking: true });
  const r = mapAnonymous(a.pages * pageSize);
  uffd.register(r.addr, r.length, { missing: true });
  const counter = new SharedArrayBuffer(4);
  const finished = new Int32Array(counter);
  const touchers = Array.from({ length: a.threads }, (_, k) => {
    let pages: number[];
    if (a.pattern === 'disjoint') pages = Array.from({ length: Math.ceil((a.pages - k) / a.threads) }, (_, j) => k + j * a.threads);
    else pages = Array.from({ length: a.pages }, (_, j) => (k % 2 ? a.pages - 1 - j : (j * 7 + k) % a.pages));
    return { pages, t: startToucher(r.addr, pages, 'read', undefined, pageSize, counter) };
  });
  const src = Buffer.alloc(pageSize);
  const srcU32 = new Uint32Array(src.buffer, src.byteOffset, pageSize / 4);
  const srcAddr = addressOf(src);
  const reader = new UffdEventReader(uffd.fd, 64);
  const poller = new Poller([uffd.fd]);
  const resolved = new Uint8Array(a.pages);
  let faults = 0; let eexist = 0; let reads = 0; let maxBatch = 0;
  const deadline = Date.now() + 30000;
  while (Atomics.load(finished, 0) < a.threads) {
    if (Date.now() > deadline) throw new Error(`stress: ${Atomics.load(finished, 0)}/${a.threads} touchers done, ${faults} faults`);
    if (poller.wait(10) === 0) continue;
    const n = reader.read();
    reads++;
    if (n > maxBatch) maxBatch = n;
    for (let i = 0; i < n; i++) {
      if (!reader.isPagefault(i)) continue;
      faults++;
      const addr = reader.address(i);
      const page = (addr - r.addr) / pageSize;
      srcU32[0] = 0xc0de0000 + page;
      const res = uffd.copyRaw(addr, srcAddr, pageSize, 0);
      if (res === pageSize) resolved[page]++;
      else if (res === -17) { eexist++; uffd.wakeRaw(addr, pageSize); } else throw new Error(`copy returned ${res}`);
    }
  }
  const results = await Promise.all(touchers.map((x) => x.t.done));
  let wrong = 0;
  touchers.forEach((x, k) => x.pages.forEach((p, j) => { if (results[k].values[j] !== 0xc0de0000 + p) wrong++; }));
  await Promise.all(touchers.map((x) => x.t.worker.terminate()));
  const copiedOnce = resolved.every((c) => c === 1);
  r.unmap(); uffd.close();
  return { faults, eexist, reads, maxBatch, wrong, copiedOnce, touched: touchers.reduce((s, x) => s + x.pages.length, 0) };
}
