// Fd passing over Unix sockets: frames with fds + JSON, both socket types, every malformed-frame error,
// no leaked fds, the event-loop wrappers, and a round trip of a uffd + memfd with a child process.
import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { libc, errno } from '../../src/uffd/libc.js';
import {
  sendFds, recvFds, tryRecvFds, unixSocketPair, FdChannel, FdServer, FdPassError, MAX_FDS_PER_MESSAGE,
  sendBytesWithFds, recvBytesWithFds, recvBytesWithFdsAsync, RawFdReceiver,
} from '../../src/uffd/fdpass.js';
import { pidfdOpen, pidfdGetfd } from '../../src/uffd/pidfd.js';
import { runInChild } from '../helpers/child.js';
import { Userfaultfd, parseFdinfoFeatures } from '../../src/uffd/userfaultfd.js';
import { createMemfd, mapFd, addressOf, pageSize } from '../../src/uffd/memory.js';
import { pageByte, sum, type Handover } from './children/fdpass-child.js';

const closeFn = libc.func('int close(int fd)');
const pipe2 = libc.func('int pipe2(void *fds, int flags)');
const writeFn = libc.func('intptr_t write(int fd, const void *buf, size_t len)');
const readFn = libc.func('intptr_t read(int fd, void *buf, size_t len)');
const fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');

function makePipe(): [number, number] {
  const b = Buffer.alloc(8);
  if ((pipe2(b, 0o2000000) as number) < 0) throw new Error(`pipe2 errno ${errno()}`);
  return [b.readInt32LE(0), b.readInt32LE(4)];
}
const openFdCount = (): number => fs.readdirSync('/proc/self/fd').length;
const fdTarget = (fd: number): string => fs.readlinkSync(`/proc/self/fd/${fd}`);
const isCloexec = (fd: number): boolean => ((fcntl(fd, 1 /* F_GETFD */, 0) as number) & 1) === 1;
function rawWrite(fd: number, bytes: Buffer): void {
  if (Number(writeFn(fd, bytes, bytes.length)) !== bytes.length) throw new Error(`write errno ${errno()}`);
}
function header(fdCount: number, payloadLen: number, magic = 0x44464350, version = 1): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(magic, 0);
  h.writeUInt16LE(version, 4);
  h.writeUInt16LE(fdCount, 6);
  h.writeUInt32LE(payloadLen, 8);
  return h;
}
function expectCode(t: any, fn: () => unknown, code: string): FdPassError {
  const err = t.throws(fn, { instanceOf: FdPassError }) as FdPassError;
  t.is(err.code, code, err.message);
  return err;
}

for (const type of ['seqpacket', 'stream'] as const) {
  test(`${type}: fds and payload arrive intact; the fds are the same files, close-on-exec`, (t) => {
    const [a, b] = unixSocketPair(type);
    const [r, w] = makePipe();
    const payload = { base: 0x7f0000000000, size: 1 << 30, offset: 4096, pageSize: 4096, name: 'guest ram ✓' };
    sendFds(a, [r, w], payload);
    const msg = recvFds(b, { timeoutMs: 1000 });
    t.deepEqual(msg.payload, payload);
    t.is(msg.fds.length, 2);
    t.is(fdTarget(msg.fds[0]), fdTarget(r));
    t.is(fdTarget(msg.fds[1]), fdTarget(w));
    t.true(isCloexec(msg.fds[0]) && isCloexec(msg.fds[1]));
    // Usable: write through the received write end, read through the original read end.
    rawWrite(msg.fds[1], Buffer.from('ping'));
    const buf = Buffer.alloc(4);
    t.is(Number(readFn(r, buf, 4)), 4);
    t.is(buf.toString(), 'ping');
    [a, b, r, w, ...msg.fds].forEach((fd) => closeFn(fd));
  });

  test(`${type}: back-to-back frames (with and without fds) are not merged or over-read`, (t) => {
    const [a, b] = unixSocketPair(type);
    const [r, w] = makePipe();
    sendFds(a, [r], { n: 1 });
    sendFds(a, [], { n: 2, big: 'x'.repeat(30000) });
    sendFds(a, [w, r], [3]);
    const m1 = recvFds(b, { timeoutMs: 1000 });
    const m2 = recvFds(b, { timeoutMs: 1000 });
    const m3 = recvFds(b, { timeoutMs: 1000 });
    t.deepEqual([m1.payload, m1.fds.length], [{ n: 1 }, 1]);
    t.is((m2.payload as any).n, 2);
    t.is((m2.payload as any).big.length, 30000);
    t.is(m2.fds.length, 0);
    t.deepEqual([m3.payload, m3.fds.length], [[3], 2]);
    t.is(tryRecvFds(b), null, 'nothing left');
    [a, b, r, w, ...m1.fds, ...m3.fds].forEach((fd) => closeFn(fd));
  });

  test(`${type}: garbage, bad version, fd-count mismatch and oversize are refused and leak no fds`, (t) => {
    const [r, w] = makePipe();
    const before = openFdCount();
    // A stream is unusable after a bad frame (its tail is still queued), so each case gets a fresh pair.
    const pairs: number[][] = [];
    const fresh = (): number[] => { const p = unixSocketPair(type); pairs.push(p); return p; };

    let [a, b] = fresh();
    rawWrite(a, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const e = expectCode(t, () => recvFds(b, { timeoutMs: 1000 }), 'BAD_MAGIC');
    t.regex(e.message, /magic 0x20544547/);

    [a, b] = fresh();
    rawWrite(a, Buffer.concat([header(0, 2, undefined, 9), Buffer.from('{}')]));
    expectCode(t, () => recvFds(b, { timeoutMs: 1000 }), 'BAD_VERSION');

    // Header says 2 fds, 1 arrives.
    [a, b] = fresh();
    sendFds(a, [r], {});
    const ok = recvFds(b, { timeoutMs: 1000 });
    closeFn(ok.fds[0]);
    rawWrite(a, Buffer.concat([header(2, 2), Buffer.from('{}')]));
    expectCode(t, () => recvFds(b, { timeoutMs: 1000 }), 'FD_COUNT_MISMATCH');

    // Oversized payload: the receiver's limit wins, and the fds that came with it are closed.
    [a, b] = fresh();
    sendFds(a, [r, w], { blob: 'y'.repeat(5000) }, { maxPayloadBytes: 10000 });
    const big = expectCode(t, () => recvFds(b, { timeoutMs: 1000, maxPayloadBytes: 1000 }), 'PAYLOAD_TOO_LARGE');
    t.is(big.details.expected, 1000);
    t.is(big.details.got, 5000 + '{"blob":""}'.length);

    [a, b] = fresh();
    rawWrite(a, Buffer.concat([header(0, 5), Buffer.from('{nope')]));
    expectCode(t, () => recvFds(b, { timeoutMs: 1000 }), 'BAD_PAYLOAD');

    for (const fd of pairs.flat()) closeFn(fd);
    t.is(openFdCount(), before, 'no received fd leaked');
    closeFn(r); closeFn(w);
  });

  test(`${type}: more fds than accepted → CTRUNC, every received fd closed`, (t) => {
    const [a, b] = unixSocketPair(type);
    const [r, w] = makePipe();
    const before = openFdCount();
    sendFds(a, [r, w, r, w, r], { many: true });
    const e = expectCode(t, () => recvFds(b, { maxFds: 2, timeoutMs: 1000 }), 'CTRUNC');
    t.regex(e.message, /more fds than the 2 accepted/);
    t.is(openFdCount(), before);
    [a, b, r, w].forEach((fd) => closeFn(fd));
  });

  test(`${type}: peer gone → EOF before a frame, TRUNCATED inside one`, (t) => {
    let [a, b] = unixSocketPair(type);
    closeFn(a);
    expectCode(t, () => recvFds(b, { timeoutMs: 1000 }), 'EOF');
    closeFn(b);
    [a, b] = unixSocketPair(type);
    rawWrite(a, Buffer.concat([header(0, 100), Buffer.from('{"cut":')]));
    closeFn(a);
    const e = expectCode(t, () => recvFds(b, { timeoutMs: 1000, frameTimeoutMs: 200 }), 'TRUNCATED');
    t.truthy(e.message);
    closeFn(b);
    [a, b] = unixSocketPair(type);
    rawWrite(a, Buffer.from('PCFD')); // a frame shorter than its header
    closeFn(a);
    expectCode(t, () => recvFds(b, { timeoutMs: 1000, frameTimeoutMs: 200 }), 'TRUNCATED');
    closeFn(b);
  });
}

test('sender-side limits: oversized payload, too many fds, bad fds, non-JSON payload', (t) => {
  const [a, b] = unixSocketPair();
  expectCode(t, () => sendFds(a, [], { s: 'z'.repeat(70000) }), 'PAYLOAD_TOO_LARGE');
  expectCode(t, () => sendFds(a, new Array(MAX_FDS_PER_MESSAGE + 1).fill(0), {}), 'TOO_MANY_FDS');
  expectCode(t, () => sendFds(a, [-1], {}), 'BAD_ARGUMENT');
  const cyclic: any = {};
  cyclic.self = cyclic;
  expectCode(t, () => sendFds(a, [], cyclic), 'BAD_PAYLOAD');
  expectCode(t, () => sendFds(a, [12345], {}), 'EBADF');
  t.is(tryRecvFds(b), null, 'nothing was sent');
  closeFn(a); closeFn(b);
});

test('recvFds times out on a quiet socket; an fd that is not a socket gives ENOTSOCK', (t) => {
  const [a, b] = unixSocketPair();
  const t0 = Date.now();
  expectCode(t, () => recvFds(b, { timeoutMs: 60 }), 'ETIMEDOUT');
  t.true(Date.now() - t0 >= 50);
  const [r, w] = makePipe();
  expectCode(t, () => recvFds(r, { timeoutMs: 10 }), 'ENOTSOCK');
  [a, b, r, w].forEach((fd) => closeFn(fd));
});

test('FdServer / FdChannel: accept and receive without blocking the event loop', async (t) => {
  const sockPath = path.join(os.tmpdir(), `fdpass-${process.pid}-a.sock`);
  const server = FdServer.listen(sockPath, { replace: true });
  let ticks = 0;
  const ticker = setInterval(() => { ticks++; }, 5);
  try {
    const accepted = server.accept({ timeoutMs: 5000 });
    const later = new Promise<FdChannel>((resolve) => setTimeout(() => resolve(FdChannel.connect(sockPath)), 60));
    const [srv, cli] = await Promise.all([accepted, later]);
    const received = srv.recv({ timeoutMs: 5000 });
    const [r, w] = makePipe();
    setTimeout(() => void cli.send([r, w], { hello: 'daemon' }), 60);
    const msg = await received;
    t.deepEqual(msg.payload, { hello: 'daemon' });
    t.is(msg.fds.length, 2);
    // A wait that blocked the thread would leave 0 ticks; on a loaded 2-vCPU machine timers fire late, so ask for 2.
    t.true(ticks >= 2, `event loop kept running while waiting (${ticks} ticks)`);
    await t.throwsAsync(srv.recv({ timeoutMs: 30 }), { instanceOf: FdPassError, message: /ETIMEDOUT/ });
    [r, w, ...msg.fds].forEach((fd) => closeFn(fd));
    srv.close(); cli.close();
  } finally {
    clearInterval(ticker);
    server.close();
  }
  t.false(fs.existsSync(sockPath), 'close() removes the socket file');
});

test('FdChannel.adopt takes over a net.Server socket (pauseOnConnect) without libuv eating the fds', async (t) => {
  const sockPath = path.join(os.tmpdir(), `fdpass-${process.pid}-b.sock`);
  fs.rmSync(sockPath, { force: true });
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(sockPath, resolve));
  const connected = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = FdChannel.connect(sockPath, { type: 'stream' });
  const [r, w] = makePipe();
  sendFds(client.fd, [r, w], { via: 'net.Server' }); // sent before the server even accepted
  const chan = FdChannel.adopt(await connected);
  const msg = await chan.recv({ timeoutMs: 5000 });
  t.deepEqual(msg.payload, { via: 'net.Server' });
  t.is(msg.fds.length, 2);
  t.is(fdTarget(msg.fds[0]), fdTarget(r));
  [r, w, ...msg.fds].forEach((fd) => closeFn(fd));
  chan.close(); client.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

test('pidfd_getfd takes a copy of a child process fd', async (t) => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    await new Promise((resolve) => child.once('spawn', resolve));
    const pidfd = pidfdOpen(child.pid!);
    const theirStdin = pidfdGetfd(pidfd, 0); // the read end of the pipe we write to
    t.true(isCloexec(theirStdin));
    child.stdin!.write('from parent');
    await new Promise((resolve) => child.stdin!.once('drain', resolve).write('', resolve));
    const buf = Buffer.alloc(11);
    t.is(Number(readFn(theirStdin, buf, 11)), 11);
    t.is(buf.toString(), 'from parent');
    const bad = t.throws(() => pidfdGetfd(pidfd, 987)) as Error & { code: string };
    t.is(bad.code, 'EBADF');
    closeFn(theirStdin); closeFn(pidfd);
  } finally {
    child.kill('SIGKILL');
  }
  const gone = t.throws(() => pidfdOpen(0x3ffffff0)) as Error & { code: string };
  t.is(gone.code, 'ESRCH');
});

test('uffd + memfd to a child process and back: bytes match, the child resolves our pages through the uffd', async (t) => {
  const uffd = Userfaultfd.open();
  if (!uffd.has('MISSING_SHMEM')) {
    t.log('skipped: MISSING_SHMEM not supported');
    uffd.close();
    return t.pass();
  }
  const pages = 16;
  const prefilled = 8;
  const memfd = createMemfd('fdpass-test', pages * pageSize);
  const plain = mapFd(memfd.fd, memfd.size); // never registered: safe to read from this thread
  const registered = mapFd(memfd.fd, memfd.size);
  const sockPath = path.join(os.tmpdir(), `fdpass-${process.pid}-c.sock`);
  const server = FdServer.listen(sockPath, { replace: true });
  try {
    const pre = plain.view(0, prefilled * pageSize);
    for (let i = 0; i < pre.length; i++) pre[i] = pageByte(Math.floor(i / pageSize), i % pageSize);
    uffd.register(registered.addr, registered.length, { missing: true });

    const child = runInChild(new URL('./children/fdpass-child.js', import.meta.url).href, 'exchange', { path: sockPath }, { timeoutMs: 15_000 });
    const chan = await server.accept({ timeoutMs: 10_000 });
    const handover: Handover = {
      regions: [{ base_host_virt_addr: registered.addr, size: registered.length, offset: 0, page_size: pageSize }],
      prefilledPages: prefilled,
      prefilledSum: sum(pre),
    };
    await chan.send([uffd.fd, memfd.fd], handover);
    const back = await chan.recv({ timeoutMs: 10_000 });
    const res = await child;
    t.true(res.ok, res.summary);

    const reply = back.payload as { seenSum: number; copied: number; uffdKind: string; features: string };
    t.is(reply.seenSum, handover.prefilledSum, 'child saw the same memfd bytes');
    t.regex(reply.uffdKind, /userfaultfd/);
    // The child reports fdinfo's raw word, which carries the kernel-internal bit 31: parse it our way.
    t.is(parseFdinfoFeatures(`API:\t0:${reply.features}:0`), uffd.features, 'the received uffd carries our handshake');
    t.is(reply.copied, (pages - prefilled) * pageSize);
    // The pages the child copied are in the memfd now (read through the unregistered mapping).
    const filled = plain.view(prefilled * pageSize, (pages - prefilled) * pageSize);
    let bad = -1;
    for (let i = 0; i < filled.length && bad < 0; i++) if (filled[i] !== pageByte(prefilled + Math.floor(i / pageSize), i % pageSize)) bad = i;
    t.is(bad, -1, `first wrong byte at ${bad}`);
    // The fds that came back are the same objects: the uffd sees the pages as present (EEXIST).
    t.is(back.fds.length, 2);
    const again = Userfaultfd.fromFd(back.fds[1]);
    const src = Buffer.alloc(pageSize);
    t.is(again.copyRaw(registered.addr + prefilled * pageSize, addressOf(src), pageSize, 0), -17, 'EEXIST through the returned uffd');
    const viaReturned = mapFd(back.fds[0], memfd.size);
    t.is(sum(viaReturned.view(0, prefilled * pageSize)), handover.prefilledSum);
    viaReturned.unmap();
    again.close(); closeFn(back.fds[0]);
    chan.close();
  } finally {
    server.close();
    registered.unmap(); plain.unmap(); memfd.close(); uffd.close();
  }
});

// ---------------------------------------------------------------------------------------------------------
// Raw mode: bare bytes + fds (the daemon's JSON-line control handshake, Firecracker's JSON array)

test('raw mode: one sendmsg of a JSON line with two fds; the line split over two writes still arrives whole', (t) => {
  const [a, b] = unixSocketPair('stream');
  const [r, w] = makePipe();
  const line = Buffer.from(JSON.stringify({ version: 1, mode: 'missing' }) + '\n');
  sendBytesWithFds(a, [r, w], line.subarray(0, 7));
  rawWrite(a, line.subarray(7));
  rawWrite(a, Buffer.from('{"next"')); // what follows the delimiter comes back as `rest`
  const m = recvBytesWithFds(b, { timeoutMs: 2000 });
  t.is(m.fds.length, 2);
  t.true(m.fds.every(isCloexec), 'received fds are close-on-exec');
  t.is(fdTarget(m.fds[0]), fdTarget(r));
  t.deepEqual(m.bytes, line);
  t.is(m.rest.toString(), '{"next"');
  [...m.fds, a, b, r, w].forEach((fd) => closeFn(fd));
});

test('raw mode: a caller-defined end (Firecracker array without newline) and a length limit', (t) => {
  const [a, b] = unixSocketPair('stream');
  const [r, w] = makePipe();
  const arr = Buffer.from(JSON.stringify([{ base_host_virt_addr: 4096, size: 4096, offset: 0, page_size: 4096 }]));
  sendBytesWithFds(a, [r], arr);
  const parses = (buf: Buffer): number | undefined => { try { JSON.parse(buf.toString()); return buf.length; } catch { return undefined; } };
  const m = recvBytesWithFds(b, { timeoutMs: 2000, complete: parses });
  t.is(m.fds.length, 1);
  t.deepEqual(JSON.parse(m.bytes.toString()), JSON.parse(arr.toString()));
  // No delimiter within maxBytes: refused, and the fds that came with it are closed.
  const before = openFdCount();
  sendBytesWithFds(a, [r, w], Buffer.alloc(64, 0x61));
  expectCode(t, () => recvBytesWithFds(b, { timeoutMs: 500, maxBytes: 32 }), 'PAYLOAD_TOO_LARGE');
  t.is(openFdCount(), before, 'fds of a refused message are closed');
  [...m.fds, a, b, r, w].forEach((fd) => closeFn(fd));
});

test('raw mode: too many fds (CTRUNC), a peer that closes mid-message, silence, and stray fds are handled', (t) => {
  const [r, w] = makePipe();
  {
    const [a, b] = unixSocketPair('stream');
    const before = openFdCount();
    sendBytesWithFds(a, [r, w, r, w], Buffer.from('{}\n'));
    expectCode(t, () => recvBytesWithFds(b, { timeoutMs: 1000, maxFds: 2 }), 'CTRUNC');
    t.is(openFdCount(), before, 'the fds that did arrive are closed');
    closeFn(a); closeFn(b);
  }
  {
    const [a, b] = unixSocketPair('stream');
    const before = openFdCount();
    sendBytesWithFds(a, [r], Buffer.from('{"half":'));
    closeFn(a);
    expectCode(t, () => recvBytesWithFds(b, { timeoutMs: 1000 }), 'TRUNCATED');
    t.is(openFdCount(), before - 1, 'the fd of the cut message is closed (and a is gone)');
    closeFn(b);
  }
  {
    const [a, b] = unixSocketPair('stream');
    closeFn(a);
    expectCode(t, () => recvBytesWithFds(b, { timeoutMs: 1000 }), 'EOF');
    closeFn(b);
  }
  {
    const [a, b] = unixSocketPair('stream');
    const t0 = Date.now();
    expectCode(t, () => recvBytesWithFds(b, { timeoutMs: 80 }), 'ETIMEDOUT');
    t.true(Date.now() - t0 >= 70);
    // Fds on a later chunk (not the first bytes) are a misbehaving peer's: closed, not handed over.
    sendBytesWithFds(a, [], Buffer.from('{"a":'));
    const rx = new RawFdReceiver(b);
    t.is(rx.poll(), null, 'incomplete: null, never blocks');
    const before = openFdCount();
    sendBytesWithFds(a, [r, w], Buffer.from('1}\n'));
    const m = rx.poll();
    t.deepEqual(m?.fds, []);
    t.is(m?.bytes.toString(), '{"a":1}\n');
    t.is(openFdCount(), before, 'stray fds closed');
    closeFn(a); closeFn(b);
  }
  expectCode(t, () => sendBytesWithFds(r, [], Buffer.alloc(0)), 'BAD_ARGUMENT');
  closeFn(r); closeFn(w);
});

test('raw mode async: a silent peer does not block the event loop; the message arrives when sent', async (t) => {
  const [a, b] = unixSocketPair('stream');
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  const got = recvBytesWithFdsAsync(b, { timeoutMs: 5000 });
  await new Promise((res) => setTimeout(res, 200));
  // A blocking wait would leave 0 ticks; a loaded machine fires timers late, so 2 is the bar.
  t.true(ticks >= 2, `the event loop kept running while waiting (${ticks} ticks in 200 ms)`);
  const [r, w] = makePipe();
  sendBytesWithFds(a, [w], Buffer.from('hello\n'));
  const m = await got;
  clearInterval(ticker);
  t.is(m.bytes.toString(), 'hello\n');
  t.is(m.fds.length, 1);
  const quiet = await recvBytesWithFdsAsync(b, { timeoutMs: 50 }).then(() => null, (e: FdPassError) => e);
  t.is(quiet?.code, 'ETIMEDOUT');
  [...m.fds, a, b, r, w].forEach((fd) => closeFn(fd));
});
