// The "guest" process of the cross-process scenario: owns its memory (one memfd, two regions mapped at
// separate addresses), its userfaultfd and the registration; hands uffd + memfd + the region table to the
// server over fd 3 (a unix socket it inherited), then touches pages on its main thread. The server is
// another process, so the toucher is never the resolver.
import { Userfaultfd } from '../../../src/uffd/userfaultfd.js';
import { createMemfd, mapFd, madvise } from '../../../src/uffd/memory.js';
import { sendFds, recvFds } from '../../../src/uffd/fdpass.js';
import { expectedFirst, expectedLast } from './pattern.js';

const SOCK = 3;
const PS = 4096;
const REGION_PAGES = 64;
const { mode, eagain } = JSON.parse(process.argv[2]) as { mode: 'minor' | 'missing'; eagain?: boolean };

const memfd = createMemfd('guest.ram', 2 * REGION_PAGES * PS);
const a = mapFd(memfd.fd, REGION_PAGES * PS, { offset: 0 });
const b = mapFd(memfd.fd, REGION_PAGES * PS, { offset: REGION_PAGES * PS });
const uffd = Userfaultfd.open({ features: eagain ? ['EVENT_REMOVE'] : [], require: mode === 'minor' ? ['MINOR_SHMEM', 'MISSING_SHMEM'] : ['MISSING_SHMEM'] });
for (const r of [a, b]) uffd.register(r.addr, r.length, mode === 'minor' ? { minor: true, missing: true } : { missing: true });
const regions = [a, b].map((r, i) => ({
  base_host_virt_addr: r.addr, size: r.length, offset: i * REGION_PAGES * PS, page_size: PS, page_size_kib: PS, name: `r${i}`,
}));
sendFds(SOCK, [uffd.fd, memfd.fd], { version: 1, pid: process.pid, mode, regions });

function touch(pages: number[]): { page: number; first: number; last: number; ok: boolean }[] {
  return pages.map((page) => {
    const r = page < REGION_PAGES ? a : b;
    const v = r.view((page % REGION_PAGES) * PS, PS);
    const first = new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true) | 0;
    const last = v[PS - 1];
    return { page, first, last, ok: first === expectedFirst(page) && last === expectedLast(page) };
  });
}

// Wait for the server's go (it attached and pre-placed page 100), then fault.
const go = recvFds(SOCK, { timeoutMs: 10_000 });
const first = touch((go.payload as { pages: number[] }).pages);
sendFds(SOCK, [], { kind: 'touched', results: first });
// EAGAIN phase: madvise(DONTNEED) raises a REMOVE event and blocks here until the server reads it; while it
// is unread every resolver on the server side answers EAGAIN (baseline.md pitfall 8).
if (eagain) {
  const rm = recvFds(SOCK, { timeoutMs: 10_000 }).payload as { page: number };
  sendFds(SOCK, [], { kind: 'removing' });
  madvise(a.addr + rm.page * PS, PS, 'dontneed');
  sendFds(SOCK, [], { kind: 'removed' });
}
// After makeVmaAnonymous (done by the server on our uffd), unfetched pages are plain memory (zeros).
const anon = recvFds(SOCK, { timeoutMs: 10_000 });
const plain = (anon.payload as { pages: number[] }).pages.map((page) => {
  const r = page < REGION_PAGES ? a : b;
  const v = r.view((page % REGION_PAGES) * PS, PS);
  v[1] = 7; // writable, no fault left
  return { page, sum: v.reduce((s, x) => s + x, 0) };
});
sendFds(SOCK, [], { kind: 'plain', results: plain });
