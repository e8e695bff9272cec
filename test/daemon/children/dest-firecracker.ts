// A destination that attaches like Firecracker: ONE sendmsg carrying only its userfaultfd and a bare JSON
// array of regions without names (the daemon binds them to the source's blocks in order, missing mode).
import net from 'node:net';
import { prepareDestRegion } from '../../../src/dest/attach.js';
import { ControlReader } from '../../../src/dest/control-reader.js';
import { connectUnix, sendBytesWithFds } from '../../../src/uffd/fdpass.js';
import { digest } from './pattern.js';

const a = JSON.parse(process.argv[2]) as { control: string; size: number };
const dest = prepareDestRegion({ size: a.size, mode: 'missing', name: 'toy.ram' });
const fd = connectUnix(a.control, { type: 'stream' });
// ONE sendmsg: only the uffd, and a bare JSON array (no newline, no frame), as Firecracker sends it.
sendBytesWithFds(fd, [dest.uffd.fd], Buffer.from(JSON.stringify([
  { base_host_virt_addr: dest.spec.addr, size: dest.spec.size, offset: 0, page_size: 4096, page_size_kib: 4096 },
])));
const sock = new net.Socket({ fd, readable: true, writable: false });
const reader = new ControlReader({});
const out: Record<string, unknown> = { ok: false };
sock.on('data', (chunk: Buffer) => {
  for (const m of reader.push(chunk)) {
    if (m.type === 'state') {
      out.state = m.state.toString();
      out.digest = digest(dest.region.view(), 'random');
    } else if (m.type === 'complete') {
      out.ok = true;
      out.stats = m.stats;
      process.stdout.write(JSON.stringify(out) + '\n');
      process.exit(0);
    } else if (m.type === 'error') {
      out.error = m.message;
      process.stdout.write(JSON.stringify(out) + '\n');
      process.exit(0);
    }
  }
});
sock.on('close', () => { out.error = 'control socket closed'; process.stdout.write(JSON.stringify(out) + '\n'); process.exit(0); });
