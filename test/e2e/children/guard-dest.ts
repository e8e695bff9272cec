#!/usr/bin/env node
// A destination process with guard pages around its region, to prove a hostile stream never makes the daemon
// write outside the registered memory. One memfd of GUARD + SIZE + GUARD bytes, mapped whole (MAP_SHARED);
// the guards are filled with 0xA5 and only the middle is registered and described to the daemon (region at
// `offset` GUARD inside the memfd, Firecracker layout). The test opens /proc/<pid>/fd/<memfd> to read the
// whole memfd after the migration ended (even after the daemon SIGKILLed this process).
//   guard-dest --control PATH --size BYTES --guard BYTES --mode missing|minor
// stdout: "ready pid=P memfd=F", then "state N" on the state, "complete" or "error: MSG" at the end.
import { parseArgs } from 'node:util';
import { createMemfd, mapFd } from '../../../src/uffd/memory.js';
import { Userfaultfd, type FeatureName } from '../../../src/uffd/index.js';
import { attachToDaemon, type DestMode } from '../../../src/dest/attach.js';

const { values } = parseArgs({
  options: { control: { type: 'string' }, size: { type: 'string' }, guard: { type: 'string' }, mode: { type: 'string', default: 'minor' } },
});
setTimeout(() => { console.log('error: guard-dest 60 s limit'); process.exit(3); }, 60_000).unref();

const size = Number(values.size);
const guard = Number(values.guard);
const mode = values.mode as DestMode;
const memfd = createMemfd('toy.ram', guard + size + guard, { closeOnExec: true });
const map = mapFd(memfd.fd, memfd.size);
map.view(0, guard).fill(0xa5);
map.view(guard + size, guard).fill(0xa5);
const require: FeatureName[] = mode === 'minor' ? ['MISSING_SHMEM', 'MINOR_SHMEM'] : ['MISSING_SHMEM'];
const uffd = Userfaultfd.open({ nonBlocking: true, require });
uffd.register(map.addr + guard, size, { missing: true, minor: mode === 'minor' });
const att = attachToDaemon(values.control!, {
  uffd, memfdFd: memfd.fd, mode,
  regions: [{ name: 'toy.ram', addr: map.addr + guard, size, offset: guard }],
});
console.log(`ready pid=${process.pid} memfd=${memfd.fd}`);
att.state.then((s) => console.log(`state ${s.length}`), () => {});
att.done.then(
  () => { console.log('complete'); att.close(); process.exit(0); },
  (e: Error) => { console.log(`error: ${e.message}`); att.close(); process.exit(1); },
);
