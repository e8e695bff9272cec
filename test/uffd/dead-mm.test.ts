// A uffd that outlives the process it was created in (its mm is gone): every resolver says ESRCH, REGISTER
// and UNREGISTER say ENOMEM, as typed errors; WAKE has nothing to wake and succeeds. Nothing here faults.
import test from 'ava';
import { startInChild } from '../helpers/child.js';
import {
  Userfaultfd, pidfdOpen, pidfdGetfd, closeFd, addressOf, pageSize, UffdNoProcessError, UffdNoMemoryError,
} from '../../src/uffd/index.js';

const ESRCH = 3;
const holder = new URL('./children/holder.js', import.meta.url).href;

test('uffd whose process exited: resolvers ESRCH (UffdNoProcessError), register/unregister ENOMEM (UffdNoMemoryError)', async (t) => {
  const c = startInChild(holder, 'holdRegisteredUffd', { pages: 4 }, { timeoutMs: 20_000 });
  let fd = -1;
  try {
    const m = await c.nextMessage() as { fd: number; addr: number; len: number; pid: number };
    const pidfd = pidfdOpen(m.pid);
    try { fd = pidfdGetfd(pidfd, m.fd); } finally { closeFd(pidfd); }
    c.kill();
    const r = await c.done;
    t.is(r.signal, 'SIGKILL', 'the holder is gone');
    const u = Userfaultfd.fromFd(fd);
    const src = Buffer.alloc(pageSize, 1);
    t.is(u.copyRaw(m.addr, addressOf(src), pageSize, 0), -ESRCH, 'COPY');
    t.is(u.lastResultField('copy'), 0, 'the kernel fails before writing the result field: copyRaw reports -errno');
    t.is(u.zeropageRaw(m.addr, pageSize, 0), -ESRCH, 'ZEROPAGE');
    t.is(u.continueRaw(m.addr, pageSize, 0), -ESRCH, 'CONTINUE');
    t.is(u.poisonRaw(m.addr, pageSize, 0), -ESRCH, 'POISON');
    t.is(u.writeProtectRaw(m.addr, pageSize, 1), -ESRCH, 'WRITEPROTECT');
    t.is(u.wakeRaw(m.addr, pageSize), 0, 'WAKE needs no mm');
    const e = t.throws(() => u.copy(m.addr, addressOf(src), pageSize), { instanceOf: UffdNoProcessError });
    t.is(e?.code, 'ESRCH');
    t.is(e?.done, 0);
    t.throws(() => u.writeProtect(m.addr, pageSize, { wp: true }), { instanceOf: UffdNoProcessError });
    const reg = t.throws(() => u.register(m.addr, m.len, { missing: true }), { instanceOf: UffdNoMemoryError });
    t.is(reg?.code, 'ENOMEM');
    t.throws(() => u.unregister(m.addr, m.len), { instanceOf: UffdNoMemoryError });
  } finally {
    c.kill();
    closeFd(fd);
  }
});
