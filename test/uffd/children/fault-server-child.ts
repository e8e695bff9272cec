// Child side of the FaultServer tests (runs under runInChild: a broken server means a hung touch here, which
// the parent's hard timeout kills, never the test process).
import { FaultServer, fillPatternPage, Userfaultfd, mapAnonymous, pageSize } from '../../../src/uffd/index.js';

/** Touch `pages` pages served by a FaultServer (blocking uffd on purpose: the server must cope). */
export async function servePattern(a: { pages: number; blocking: boolean }): Promise<{ mismatches: number; stats: unknown; eexist: number }> {
  const region = mapAnonymous(a.pages * pageSize);
  const uffd = Userfaultfd.open({ nonBlocking: !a.blocking });
  uffd.register(region.addr, region.length, { missing: true });
  const server = await FaultServer.start({ uffdFd: uffd.fd, base: region.addr, pageSize, source: { kind: 'pattern' } });
  const expected = new Uint8Array(pageSize);
  let mismatches = 0;
  // Touch in a scattered order: page content must depend on the page, not on the fault order.
  for (let k = 0; k < a.pages; k++) {
    const p = (k * 7919) % a.pages;
    fillPatternPage(expected, p);
    const got = region.view(p * pageSize, pageSize);
    if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.length), Buffer.from(expected)) !== 0) mismatches++;
  }
  const stats = await server.stop();
  uffd.close();
  region.unmap();
  return { mismatches, stats, eexist: stats.eexist };
}

/** A module page source (the `module` kind): every byte of page i is i & 0xff. */
export function fillIndexByte(page: Uint8Array, index: number): void {
  page.fill(index & 0xff);
}

export async function serveModule(a: { pages: number }): Promise<{ bytes: number[]; served: number }> {
  const region = mapAnonymous(a.pages * pageSize);
  const uffd = Userfaultfd.open({ nonBlocking: true });
  uffd.register(region.addr, region.length, { missing: true });
  const server = await FaultServer.start({
    uffdFd: uffd.fd, base: region.addr, pageSize, source: { kind: 'module', url: import.meta.url, exportName: 'fillIndexByte' },
  });
  const bytes: number[] = [];
  for (let p = 0; p < a.pages; p++) bytes.push(region.view(p * pageSize + 100, 1)[0]);
  const { served } = await server.stop();
  uffd.close();
  region.unmap();
  return { bytes, served };
}
