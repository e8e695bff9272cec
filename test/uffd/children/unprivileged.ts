// Run as an unprivileged uid by api.test.ts: what each creation path says when refused.
import { Userfaultfd } from '../../../src/uffd/index.js';

function attempt(fn: () => Userfaultfd): { ok?: boolean; code?: string; message?: string } {
  try { fn().close(); return { ok: true }; } catch (e) { return { code: (e as { code?: string }).code, message: (e as Error).message }; }
}

export function tryCreate() {
  return {
    syscall: attempt(() => Userfaultfd.create({ via: 'syscall' })),
    device: attempt(() => Userfaultfd.create({ via: 'device' })),
    auto: attempt(() => Userfaultfd.create({ via: 'auto' })),
    userModeOnly: attempt(() => Userfaultfd.open({ via: 'syscall', userModeOnly: true })),
  };
}
