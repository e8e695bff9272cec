// A process that owns a uffd with a registered range and stays alive until killed (dead-mm.test.ts takes the
// uffd with pidfd_getfd, then kills this process so the uffd outlives its mm).
import { Userfaultfd, mapAnonymous, pageSize } from '../../../src/uffd/index.js';
import { sendToParent } from '../../helpers/child.js';

export function holdRegisteredUffd(a: { pages: number }): Promise<never> {
  const uffd = Userfaultfd.open({ features: ['MOVE', 'POISON', 'PAGEFAULT_FLAG_WP', 'MINOR_SHMEM'] });
  const r = mapAnonymous(a.pages * pageSize);
  uffd.register(r.addr, r.length, { missing: true, wp: true });
  sendToParent({ fd: uffd.fd, addr: r.addr, len: r.length, pid: process.pid });
  return new Promise(() => { setInterval(() => {}, 1000); });
}
