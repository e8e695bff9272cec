// Source side of the urgent channel, in a worker thread (started by urgent-server.ts): a synchronous loop on
// the blocking urgent socket. recv → parse REQ_PAGES(_ID) in place → validate → for each requested page one
// ram v4 PAGE record, sent as [header, page] iovecs straight from the region's memory with writev (no copy,
// no event loop, no allocation per request). The shared `sent` bitmap is updated with Atomics so the main
// thread's scan skips those pages. Any other return-path message is forwarded to the main thread as bytes.
import { parentPort, workerData } from 'node:worker_threads';
import { libc, errno } from '../uffd/libc.js';
import { addressOf } from '../uffd/memory.js';
import { RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_EOS, RAM_SAVE_FLAG_PAGE } from '../protocol/constants.js';

export interface UrgentWorkerBlock { name: string; firstPage: number; pages: number; size: number; base: number }
export interface UrgentWorkerData {
  role: 'urgent-source';
  fd: number;
  pageSize: number;
  blocks: UrgentWorkerBlock[];
  /** PageMap.sent (1 byte per page, SharedArrayBuffer). */
  sent: SharedArrayBuffer;
  /** Int32 cells, see U.* */
  cells: SharedArrayBuffer;
  resend: boolean;
  total: number;
}
/** Shared Int32 cells. */
export const U = { newlySent: 0, mainSent: 1, pagesUrgent: 2, resent: 3, requests: 4, bytesLo: 5, bytesHi: 6, count: 8 } as const;

export type UrgentWorkerMessage =
  | { type: 'all-sent' }
  | { type: 'rp'; bytes: Uint8Array }
  | { type: 'bad-request'; message: string; block: string; start: number; length: number }
  | { type: 'closed'; errno: number }
  | { type: 'done' };

const recvFn = libc.func('intptr_t recv(int fd, intptr_t buf, size_t len, int flags)') as (fd: number, buf: number, len: number, flags: number) => number;
const sendFn = libc.func('intptr_t send(int fd, intptr_t buf, size_t len, int flags)') as (fd: number, buf: number, len: number, flags: number) => number;
const writevFn = libc.func('intptr_t writev(int fd, intptr_t iov, int cnt)') as (fd: number, iov: number, cnt: number) => number;
const MSG_NOSIGNAL = 0x4000;
const EINTR = 4;
const MAX_IOV = 128; // 64 records per writev
const RECV_BYTES = 64 * 1024;
const REQ_PAGES_ID = 3;
const REQ_PAGES = 4;

export function runUrgentWorker(d: UrgentWorkerData): void {
  const post = (m: UrgentWorkerMessage): void => parentPort!.postMessage(m);
  const ps = d.pageSize;
  const sent = new Uint8Array(d.sent);
  const cells = new Int32Array(d.cells);
  const blocks = d.blocks;
  const nameBytes = blocks.map((b) => Buffer.from(b.name, 'latin1'));
  const rbuf = Buffer.allocUnsafeSlow(RECV_BYTES);
  const raddr = addressOf(rbuf);
  // Record headers (≤ 8 + 1 + 255 bytes each) and the iovec array, preallocated.
  const hdr = Buffer.allocUnsafeSlow((MAX_IOV / 2) * 264);
  const hdrAddr = addressOf(hdr);
  const iov = Buffer.allocUnsafeSlow(MAX_IOV * 16);
  const iovAddr = addressOf(iov);
  const iov32 = new Uint32Array(iov.buffer, iov.byteOffset, MAX_IOV * 4);
  let niov = 0;
  let hpos = 0;
  let lastBlock = -1; // CONTINUE state of this channel
  let bytes = 0;

  const setIov = (k: number, addr: number, len: number): void => {
    iov32[k * 4] = addr >>> 0; iov32[k * 4 + 1] = Math.floor(addr / 0x1_0000_0000);
    iov32[k * 4 + 2] = len; iov32[k * 4 + 3] = 0;
  };
  const sendRaw = (addr: number, len: number): boolean => {
    while (len > 0) {
      const r = sendFn(d.fd, addr, len, MSG_NOSIGNAL);
      if (r > 0) { addr += r; len -= r; continue; }
      if (r < 0 && errno() === EINTR) continue;
      return false;
    }
    return true;
  };
  const flush = (): boolean => {
    if (niov === 0) return true;
    let total = 0;
    for (let k = 0; k < niov; k++) total += iov32[k * 4 + 2];
    let r = writevFn(d.fd, iovAddr, niov);
    while (r < 0 && errno() === EINTR) r = writevFn(d.fd, iovAddr, niov);
    if (r < 0) return false;
    if (r < total) {
      // Short write (signal, tiny socket buffer): send the rest iovec by iovec.
      let skip = r;
      for (let k = 0; k < niov; k++) {
        const len = iov32[k * 4 + 2];
        if (skip >= len) { skip -= len; continue; }
        const addr = iov32[k * 4] + iov32[k * 4 + 1] * 0x1_0000_0000;
        if (!sendRaw(addr + skip, len - skip)) return false;
        skip = 0;
      }
    }
    bytes += total;
    cells[U.bytesLo] = bytes % 0x4000_0000; cells[U.bytesHi] = Math.floor(bytes / 0x4000_0000);
    niov = 0; hpos = 0;
    return true;
  };
  /** Queue the PAGE record of global page p of block bi. */
  const addPage = (bi: number, p: number): boolean => {
    if (niov + 2 > MAX_IOV && !flush()) return false;
    const b = blocks[bi];
    const off = (p - b.firstPage) * ps;
    const h = hpos;
    const named = bi !== lastBlock;
    hdr.writeUInt32BE(Math.floor(off / 0x1_0000_0000), h);
    hdr.writeUInt32BE(((off >>> 0) | RAM_SAVE_FLAG_PAGE | (named ? 0 : RAM_SAVE_FLAG_CONTINUE)) >>> 0, h + 4);
    let len = 8;
    if (named) { hdr[h + 8] = nameBytes[bi].length; nameBytes[bi].copy(hdr, h + 9); len += 1 + nameBytes[bi].length; lastBlock = bi; }
    setIov(niov++, hdrAddr + h, len);
    setIov(niov++, b.base + off, ps);
    hpos += len;
    return true;
  };

  let have = 0;
  let forwardAll = false;
  let curBlock = -1; // REQ_PAGES refers to the previous REQ_PAGES_ID's block
  for (;;) {
    let r = recvFn(d.fd, raddr + have, RECV_BYTES - have, 0);
    if (r < 0 && errno() === EINTR) continue;
    if (r <= 0) {
      const e = r < 0 ? errno() : 0;
      // End (the main thread shut our read side down, or the destination closed): EOS, then report.
      hdr.writeUInt32BE(0, 0); hdr.writeUInt32BE(RAM_SAVE_FLAG_EOS, 4);
      if (sendRaw(hdrAddr, 8)) { bytes += 8; cells[U.bytesLo] = bytes % 0x4000_0000; cells[U.bytesHi] = Math.floor(bytes / 0x4000_0000); }
      post({ type: 'closed', errno: e });
      return;
    }
    const end = have + r;
    let p = 0;
    while (end - p >= 4) {
      const type = rbuf.readUInt16BE(p);
      const len = rbuf.readUInt16BE(p + 2);
      if (forwardAll || (type !== REQ_PAGES && type !== REQ_PAGES_ID)) {
        // Anything else (SHUT, PONG, garbage): the main thread's decoder judges it, and everything after it
        // (our framing is no longer trusted).
        if (!flush()) break;
        forwardAll = true;
        post({ type: 'rp', bytes: Uint8Array.prototype.slice.call(rbuf, p, end) });
        p = end;
        break;
      }
      if (len > 13 + 255) {
        post({ type: 'bad-request', block: '', start: 0, length: 0, message: `page request of ${len} bytes (at most ${13 + 255}) on the urgent return path` });
        return;
      }
      if (end - p < 4 + len) break;
      const q = p + 4;
      let bad = len < 12;
      let bi = curBlock;
      let name = '';
      if (!bad && type === REQ_PAGES_ID) {
        const n = len > 12 ? rbuf[q + 12] : 0;
        bad = len !== 13 + n || n === 0;
        if (!bad) {
          bi = -1;
          for (let k = 0; k < nameBytes.length; k++) if (nameBytes[k].length === n && nameBytes[k].equals(rbuf.subarray(q + 13, q + 13 + n))) { bi = k; break; }
          if (bi < 0) name = rbuf.toString('latin1', q + 13, q + 13 + n);
        }
      } else if (!bad) bad = len !== 12;
      const start = bad ? 0 : rbuf.readUInt32BE(q) * 0x1_0000_0000 + rbuf.readUInt32BE(q + 4);
      const length = bad ? 0 : rbuf.readUInt32BE(q + 8);
      if (bad || bi < 0 || start % ps !== 0 || length % ps !== 0 || length === 0 || start >= blocks[bi].size || length > blocks[bi].size - start) {
        flush();
        post({
          type: 'bad-request', block: bi >= 0 ? blocks[bi].name : name, start, length,
          message: bad ? `malformed page request (type ${type}, length ${len}) on the urgent return path`
            : bi < 0 ? `destination requested pages of unknown block ${JSON.stringify(name)}`
              : `destination requested [0x${start.toString(16)}, 0x${(start + length).toString(16)}) of "${blocks[bi].name}" (0x${blocks[bi].size.toString(16)} bytes, page size ${ps})`,
        });
        return;
      }
      curBlock = bi;
      Atomics.add(cells, U.requests, 1);
      const first = blocks[bi].firstPage + start / ps;
      const count = length / ps;
      for (let pg = first; pg < first + count; pg++) {
        const fresh = Atomics.compareExchange(sent, pg, 0, 1) === 0;
        if (!fresh && !d.resend) continue;
        if (!addPage(bi, pg)) break;
        Atomics.add(cells, U.pagesUrgent, 1);
        if (fresh) {
          if (Atomics.add(cells, U.newlySent, 1) + 1 + Atomics.load(cells, U.mainSent) === d.total) { flush(); post({ type: 'all-sent' }); }
        } else {
          Atomics.add(cells, U.resent, 1);
        }
      }
      p = q + len;
    }
    if (!flush()) { post({ type: 'closed', errno: errno() }); return; }
    if (forwardAll && p < end) { post({ type: 'rp', bytes: Uint8Array.prototype.slice.call(rbuf, p, end) }); p = end; }
    have = end - p;
    if (have > 0 && p > 0) rbuf.copyWithin(0, p, end);
    if (have === RECV_BYTES) { post({ type: 'bad-request', message: 'return-path message larger than the receive buffer', block: '', start: 0, length: 0 }); return; }
  }
}

if (parentPort && (workerData as { role?: string })?.role === 'urgent-source') {
  try {
    runUrgentWorker(workerData as UrgentWorkerData);
  } catch (e) {
    parentPort.postMessage({ type: 'closed', errno: -1, message: (e as Error).message });
  }
  parentPort.postMessage({ type: 'done' });
}
