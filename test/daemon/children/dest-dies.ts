// A destination process that attaches, waits for the state, then dies (SIGKILL) mid-migration.
import { prepareDestRegion, attachToDaemon } from '../../../src/dest/attach.js';

const a = JSON.parse(process.argv[2]) as { control: string; size: number };
const dest = prepareDestRegion({ size: a.size, mode: 'missing' });
const att = attachToDaemon(a.control, { uffd: dest.uffd, memfdFd: dest.region.fd, regions: [dest.spec], mode: 'missing' });
await att.state;
await new Promise((r) => setTimeout(r, 200));
process.kill(process.pid, 'SIGKILL');
