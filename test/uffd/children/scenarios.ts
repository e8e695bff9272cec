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

