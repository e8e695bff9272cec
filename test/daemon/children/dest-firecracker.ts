// A destination that attaches like Firecracker: ONE sendmsg carrying only its userfaultfd and a bare JSON
// array of regions without names (the daemon binds them to the source's blocks in order, missing mode).
import net from 'node:net';
import { prepareDestRegion } from '../../../src/dest/attach.js';
import { ControlReader } from '../../../src/dest/control-reader.js';
import { connectUnix } from '../../../src/uffd/fdpass.js';
import { libc, koffi } from '../../../src/uffd/libc.js';
import { digest } from './pattern.js';

const sendmsgFn = libc.func('intptr_t sendmsg(int fd, void *msg, int flags)');

function sendWithFd(sock: number, fd: number, bytes: Buffer): void {
  const control = Buffer.alloc(24);
  control.writeBigUInt64LE(20n, 0);
  control.writeInt32LE(1, 8);
  control.writeInt32LE(1, 12);
  control.writeInt32LE(fd, 16);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt(koffi.address(bytes) as bigint), 0);
  iov.writeBigUInt64LE(BigInt(bytes.length), 8);
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(BigInt(koffi.address(iov) as bigint), 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(BigInt(koffi.address(control) as bigint), 32);
  msg.writeBigUInt64LE(BigInt(control.length), 40);
  if (Number(sendmsgFn(sock, msg, 0x4000)) !== bytes.length) throw new Error('sendmsg failed');
}

const a = JSON.parse(process.argv[2]) as { control: string; size: number };
const dest = prepareDestRegion({ size: a.size, mode: 'missing', name: 'toy.ram' });
const fd = connectUnix(a.control, { type: 'stream' });
sendWithFd(fd, dest.uffd.fd, Buffer.from(JSON.stringify([
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
