// The destination process's side of the postcopy-daemon control socket (team MIGRATION.md):
//   prepareDestRegion()  memfd + MAP_SHARED mapping + userfaultfd (UFFDIO_API) + UFFDIO_REGISTER
//   attachToDaemon()     ONE sendmsg: SCM_RIGHTS [uffd, memfd] + the JSON line describing the regions
//                        (Firecracker's layout), then wait for the state blob and the completion message.
// The process touches its memory from its main thread; that is fine here because the daemon (another
// process) resolves the faults.
import net from 'node:net';
import createDebug from 'debug';
import { Userfaultfd, type FeatureName } from '../uffd/index.js';
import { connectUnix } from '../uffd/fdpass.js';
import { libc, errno, strerror, koffi } from '../uffd/libc.js';
import { pageSize } from '../uffd/memory.js';
import { createMigratableRegion, type MigratableRegion } from '../source/region.js';
import { ControlReader, ControlProtocolError, type ControlMessage } from './control-reader.js';

const log = createDebug('postcopy:dest');

export type DestMode = 'missing' | 'minor';

export class AttachError extends Error {
  override name = 'AttachError';
  constructor(readonly code: 'BAD_ARGUMENT' | 'CONNECT' | 'SEND' | 'DAEMON_ERROR' | 'CLOSED' | 'PROTOCOL' | 'TIMEOUT', message: string) {
    super(message);
  }
}

/** One region as the process describes it to the daemon (Firecracker's GuestRegionUffdMapping). */
export interface RegionDescriptor {
  base_host_virt_addr: number;
  size: number;
  offset: number;
  page_size: number;
  page_size_kib: number;
  name: string;
}

/** What the caller knows about a region; converted to a RegionDescriptor. */
export interface DestRegionSpec {
  name: string;
  addr: number;
  size: number;
  /** Offset of the region inside the memfd (default 0). */
  offset?: number;
}

export interface DestRegion {
  readonly region: MigratableRegion;
  readonly uffd: Userfaultfd;
  readonly mode: DestMode;
  /** The spec to pass to attachToDaemon's `regions`. */
  readonly spec: DestRegionSpec;
  /** Close the uffd and unmap/close the region (the daemon keeps its own copies of the fds). */
  close(): void;
}

/**
 * Create the destination's memory: a memfd of `size` bytes mapped shared, a userfaultfd (non-blocking: the
 * daemon polls it, this process never reads it) and the registration:
 *   'missing' → MISSING on the shared memfd mapping (the daemon places pages with UFFDIO_COPY/ZEROPAGE);
 *   'minor'   → MISSING|MINOR (the daemon writes the memfd and maps with UFFDIO_CONTINUE). MINOR alone
 *               would let a never-written page read as zeros without a fault (DESIGN §3 pitfalls).
 */
export function prepareDestRegion(opts: { size: number; name?: string; mode?: DestMode }): DestRegion {
  const mode = opts.mode ?? 'missing';
  if (mode !== 'missing' && mode !== 'minor') throw new AttachError('BAD_ARGUMENT', `mode must be "missing" or "minor", got ${String(mode)}`);
  const region = createMigratableRegion(opts.size, opts.name ?? 'toy.ram');
  let uffd: Userfaultfd | undefined;
  try {
    const require: FeatureName[] = mode === 'minor' ? ['MISSING_SHMEM', 'MINOR_SHMEM'] : ['MISSING_SHMEM'];
    uffd = Userfaultfd.open({ nonBlocking: true, require });
    uffd.register(region.addr, region.size, { missing: true, minor: mode === 'minor' });
  } catch (e) {
    uffd?.close();
    region.close();
    throw e;
  }
  const u = uffd;
  log('dest region %s: %d bytes at 0x%s, uffd %d (%s)', region.name, region.size, region.addr.toString(16), u.fd, mode);
  return {
    region, uffd: u, mode,
    spec: { name: region.name, addr: region.addr, size: region.size, offset: region.fdOffset },
    close() { u.close(); region.close(); },
  };
}

export interface AttachOptions {
  uffd: number | Userfaultfd;
  /** The memfd behind the regions (required in minor mode; omit for a Firecracker-style uffd-only attach). */
  memfdFd?: number;
  regions: DestRegionSpec[];
  mode?: DestMode;
  /** Give up if the daemon does not accept the connection within this time (default 5 s). */
  connectTimeoutMs?: number;
  /** Reject `state` if it has not arrived in this time (default: wait forever; the source may come later). */
  stateTimeoutMs?: number;
  /** Largest state blob accepted (default 256 MiB). */
  maxStateBytes?: number;
}

export interface DaemonAttachment {
  /** The source's state blob, as soon as the daemon forwards it. */
  readonly state: Promise<Buffer>;
  /** The daemon's completion stats (every page present, ranges unregistered). Rejects with AttachError on failure. */
  readonly done: Promise<Record<string, unknown>>;
  /** Close the control socket (idempotent). */
  close(): void;
}

/** The JSON line of MIGRATION.md step 1. */
export function describeRegions(regions: DestRegionSpec[], mode: DestMode, pid = process.pid): string {
  if (!Array.isArray(regions) || regions.length === 0) throw new AttachError('BAD_ARGUMENT', 'at least one region is required');
  const out: RegionDescriptor[] = regions.map((r, i) => {
    for (const k of ['addr', 'size'] as const) {
      if (!Number.isSafeInteger(r[k]) || r[k] < 0) throw new AttachError('BAD_ARGUMENT', `region ${i}: ${k} ${r[k]} is not a non-negative integer`);
    }
    if (r.size === 0 || r.size % pageSize !== 0 || r.addr % pageSize !== 0) {
      throw new AttachError('BAD_ARGUMENT', `region ${i} ("${r.name}"): addr 0x${r.addr.toString(16)} and size ${r.size} must be page-aligned and non-empty`);
    }
    return {
      base_host_virt_addr: r.addr, size: r.size, offset: r.offset ?? 0,
      page_size: pageSize, page_size_kib: pageSize, // Firecracker's field is (despite its name) bytes
      name: r.name,
    };
  });
  return JSON.stringify({ version: 1, pid, mode, regions: out }) + '\n';
}

// ---------------------------------------------------------------------------------------------------------
// One sendmsg with SCM_RIGHTS and raw bytes. fdpass.ts's sendFds() wraps its payload in a "PCFD" frame,
// which the control-socket contract (a bare JSON line, Firecracker-compatible) does not use.

const sendmsgFn = libc.func('intptr_t sendmsg(int fd, void *msg, int flags)') as (fd: number, msg: Buffer, flags: number) => number | bigint;
const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)') as (fds: Buffer, n: number, t: number) => number;
const MSG_NOSIGNAL = 0x4000;
const EAGAIN = 11;
const EINTR = 4;

function sendBytesWithFds(sockFd: number, fds: number[], bytes: Buffer, timeoutMs: number): void {
  const control = Buffer.alloc(16 + ((4 * fds.length + 7) & ~7));
  control.writeBigUInt64LE(BigInt(16 + 4 * fds.length), 0); // cmsg_len
  control.writeInt32LE(1, 8); // SOL_SOCKET
  control.writeInt32LE(1, 12); // SCM_RIGHTS
  fds.forEach((fd, i) => control.writeInt32LE(fd, 16 + 4 * i));
  const deadline = Date.now() + timeoutMs;
  let sent = 0;
  while (sent < bytes.length) {
    const chunk = bytes.subarray(sent);
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(BigInt(koffi.address(chunk) as bigint), 0);
    iov.writeBigUInt64LE(BigInt(chunk.length), 8);
    const msg = Buffer.alloc(56); // struct msghdr (LP64)
    msg.writeBigUInt64LE(BigInt(koffi.address(iov) as bigint), 16);
    msg.writeBigUInt64LE(1n, 24);
    if (sent === 0 && fds.length) { // the fds ride on the first byte only
      msg.writeBigUInt64LE(BigInt(koffi.address(control) as bigint), 32);
      msg.writeBigUInt64LE(BigInt(control.length), 40);
    }
    const r = Number(sendmsgFn(sockFd, msg, MSG_NOSIGNAL));
    if (r > 0) { sent += r; continue; }
    const e = errno();
    if (e === EINTR) continue;
    if (e !== EAGAIN || Date.now() > deadline) throw new AttachError('SEND', `sendmsg on the control socket failed: ${strerror(e)} after ${sent} of ${bytes.length} bytes`);
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(sockFd, 0);
    pfd.writeInt16LE(4, 4); // POLLOUT
    pollFn(pfd, 1, Math.max(1, deadline - Date.now()));
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Connect to the daemon's control socket and hand over the uffd (+ memfd) and the region table. Resolves
 * `state` with the source's blob when it arrives; `done` with the daemon's stats when every page is present.
 */
export function attachToDaemon(controlPath: string, opts: AttachOptions): DaemonAttachment {
  const mode = opts.mode ?? 'missing';
  const uffdFd = typeof opts.uffd === 'number' ? opts.uffd : opts.uffd.fd;
  if (!Number.isInteger(uffdFd) || uffdFd < 0) throw new AttachError('BAD_ARGUMENT', `uffd fd ${uffdFd} is not open`);
  if (mode === 'minor' && (opts.memfdFd === undefined || opts.memfdFd < 0)) throw new AttachError('BAD_ARGUMENT', 'minor mode needs memfdFd (the daemon writes pages into it)');
  const line = Buffer.from(describeRegions(opts.regions, mode), 'utf8');
  const fds = opts.memfdFd !== undefined ? [uffdFd, opts.memfdFd] : [uffdFd];

  let sockFd: number;
  try {
    sockFd = connectUnix(controlPath, { type: 'stream', timeoutMs: opts.connectTimeoutMs ?? 5000 });
  } catch (e) {
    throw new AttachError('CONNECT', `cannot connect to the daemon's control socket ${controlPath}: ${(e as Error).message}`);
  }
  try {
    sendBytesWithFds(sockFd, fds, line, opts.connectTimeoutMs ?? 5000);
  } catch (e) {
    libc.func('int close(int fd)')(sockFd);
    throw e;
  }
  log('attached to %s: %d fds, %d regions, %s mode', controlPath, fds.length, opts.regions.length, mode);

  // From here on the daemon only sends plain bytes: let libuv read them.
  const sock = new net.Socket({ fd: sockFd, readable: true, writable: false });
  const reader = new ControlReader({ maxStateBytes: opts.maxStateBytes });
  let resolveState!: (b: Buffer) => void, rejectState!: (e: Error) => void;
  let resolveDone!: (s: Record<string, unknown>) => void, rejectDone!: (e: Error) => void;
  const state = new Promise<Buffer>((res, rej) => { resolveState = res; rejectState = rej; });
  const done = new Promise<Record<string, unknown>>((res, rej) => { resolveDone = res; rejectDone = rej; });
  // The caller may await only one of the two: never let the other become an unhandled rejection.
  state.catch(() => {});
  done.catch(() => {});
  let gotState = false, finished = false, closing = false;
  let stateTimer: NodeJS.Timeout | undefined;

  const fail = (err: AttachError): void => {
    if (finished) return;
    finished = true;
    if (stateTimer) clearTimeout(stateTimer);
    if (!gotState) rejectState(err);
    rejectDone(err);
    sock.destroy();
  };
  const handle = (m: ControlMessage): void => {
    if (m.type === 'state') {
      if (gotState) return fail(new AttachError('PROTOCOL', 'daemon sent a second state blob'));
      gotState = true;
      if (stateTimer) clearTimeout(stateTimer);
      log('state blob: %d bytes', m.state.length);
      resolveState(m.state);
    } else if (m.type === 'complete') {
      if (!gotState) return fail(new AttachError('PROTOCOL', 'daemon reported completion before sending the state'));
      finished = true;
      log('migration complete');
      resolveDone(m.stats);
      sock.destroy();
    } else if (m.type === 'error') {
      fail(new AttachError('DAEMON_ERROR', `postcopy-daemon: ${m.message}`));
    } else {
      log('ignoring control message %o', m.message);
    }
  };

  if (opts.stateTimeoutMs !== undefined) {
    stateTimer = setTimeout(() => fail(new AttachError('TIMEOUT', `no state from the daemon within ${opts.stateTimeoutMs} ms`)), opts.stateTimeoutMs);
    stateTimer.unref?.();
  }
  sock.on('data', (chunk: Buffer) => {
    try {
      for (const m of reader.push(chunk)) { handle(m); if (finished) break; }
    } catch (e) {
      fail(new AttachError('PROTOCOL', e instanceof ControlProtocolError ? e.message : String(e)));
    }
  });
  sock.on('error', (e) => fail(new AttachError('CLOSED', `control socket error: ${e.message}`)));
  sock.on('close', () => {
    if (closing) return fail(new AttachError('CLOSED', 'attachment closed by the process'));
    fail(new AttachError('CLOSED', gotState
      ? 'daemon closed the control socket before reporting completion (daemon died?)'
      : 'daemon closed the control socket before sending the state'));
  });

  return {
    state,
    done,
    close(): void {
      closing = true;
      sock.destroy();
    },
  };
}
