// The destination process's side of the postcopy-daemon control socket (docs/migration-protocol.md):
//   prepareDestRegion()  memfd + MAP_SHARED mapping (or, for 'missing' mode, anonymous private memory) +
//                        userfaultfd (UFFDIO_API) + UFFDIO_REGISTER
//   attachToDaemon()     ONE sendmsg: SCM_RIGHTS [uffd, memfd] + the JSON line describing the regions
//                        (Firecracker's layout), then wait for the state blob and the completion message.
// The process touches its memory from its main thread; that is fine here because the daemon (another
// process) resolves the faults.
import net from 'node:net';
import createDebug from 'debug';
import { Userfaultfd, type FeatureName } from '../uffd/index.js';
import { connectUnix, sendBytesWithFds } from '../uffd/fdpass.js';
import { closeFn } from '../uffd/libc.js';
import { pageSize, mapAnonymous, MAX_VIEW_BYTES } from '../uffd/memory.js';
import { createMigratableRegion, type MigratableRegion } from '../source/region.js';
import { ControlReader, ControlProtocolError, type ControlMessage } from './control-reader.js';

const log = createDebug('postcopy:dest');

export type DestMode = 'missing' | 'minor';
/**
 * What backs the destination's memory. 'anonymous' (MAP_PRIVATE|MAP_ANONYMOUS, like Firecracker) is only
 * possible in 'missing' mode and places pages faster: UFFDIO_COPY into anonymous memory skips the shmem
 * page-cache insertion (measured here, 1 GiB in 1 MiB UFFDIO_COPYs: anon 2.2–2.8 GB/s vs shmem 2.05 GB/s;
 * 4 KiB copies: 1.78 vs 1.16 GB/s). No memfd is handed to the daemon then (MIGRATION.md: memfd optional).
 */
export type DestMemory = 'memfd' | 'anonymous';

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
  /** The memory; `region.fd` is -1 for anonymous memory (no memfd to hand over). */
  readonly region: MigratableRegion;
  readonly memory: DestMemory;
  readonly uffd: Userfaultfd;
  readonly mode: DestMode;
  /** The spec to pass to attachToDaemon's `regions`. */
  readonly spec: DestRegionSpec;
  /** Close the uffd and unmap/close the region (the daemon keeps its own copies of the fds). */
  close(): void;
}

/**
 * Create the destination's memory and the userfaultfd (non-blocking: the daemon polls it, this process
 * never reads it), then register:
 *   'missing' → MISSING (the daemon places pages with UFFDIO_COPY/ZEROPAGE); the memory is a shared memfd
 *               mapping by default, or anonymous private memory with `memory: 'anonymous'` (faster placement);
 *   'minor'   → MISSING|MINOR on a shared memfd mapping (the daemon writes the memfd and maps with
 *               UFFDIO_CONTINUE). MINOR alone would let a never-written page read as zeros without a fault
 *               (DESIGN §3 pitfalls).
 */
export function prepareDestRegion(opts: { size: number; name?: string; mode?: DestMode; memory?: DestMemory }): DestRegion {
  const mode = opts.mode ?? 'missing';
  if (mode !== 'missing' && mode !== 'minor') throw new AttachError('BAD_ARGUMENT', `mode must be "missing" or "minor", got ${String(mode)}`);
  const memory = opts.memory ?? 'memfd';
  if (memory !== 'memfd' && memory !== 'anonymous') throw new AttachError('BAD_ARGUMENT', `memory must be "memfd" or "anonymous", got ${String(memory)}`);
  if (memory === 'anonymous' && mode === 'minor') throw new AttachError('BAD_ARGUMENT', 'minor mode needs memfd memory (the daemon writes pages into the memfd)');
  const name = opts.name ?? 'toy.ram';
  const region = memory === 'anonymous' ? createAnonymousRegion(opts.size, name) : createMigratableRegion(opts.size, name);
  let uffd: Userfaultfd | undefined;
  try {
    const require: FeatureName[] = mode === 'minor' ? ['MISSING_SHMEM', 'MINOR_SHMEM'] : memory === 'memfd' ? ['MISSING_SHMEM'] : [];
    uffd = Userfaultfd.open({ nonBlocking: true, require });
    uffd.register(region.addr, region.size, { missing: true, minor: mode === 'minor' });
  } catch (e) {
    uffd?.close();
    region.close();
    throw e;
  }
  const u = uffd;
  log('dest region %s: %d bytes at 0x%s, uffd %d (%s, %s)', region.name, region.size, region.addr.toString(16), u.fd, mode, memory);
  return {
    region, uffd: u, mode, memory,
    spec: { name: region.name, addr: region.addr, size: region.size, offset: region.fdOffset },
    close() { u.close(); region.close(); },
  };
}

/** Anonymous private memory in the MigratableRegion shape (fd -1: nothing to hand over). */
function createAnonymousRegion(size: number, name: string): MigratableRegion {
  if (!Number.isSafeInteger(size) || size <= 0 || size % pageSize !== 0) {
    throw new AttachError('BAD_ARGUMENT', `region "${name}": size ${size} must be a positive multiple of the page size ${pageSize}`);
  }
  const mapping = mapAnonymous(size, { noReserve: true });
  let open = true;
  return {
    name, fd: -1, fdOffset: 0, addr: mapping.addr, size,
    view(offset = 0, len?: number): Uint8Array {
      if (!open) throw new AttachError('BAD_ARGUMENT', `region "${name}" is closed`);
      return mapping.view(offset, len ?? Math.min(size - offset, MAX_VIEW_BYTES));
    },
    close(): void {
      if (!open) return;
      open = false;
      mapping.unmap();
    },
  };
}

export interface AttachOptions {
  uffd: number | Userfaultfd;
  /** The memfd behind the regions (required in minor mode; omit, or -1, for a Firecracker-style uffd-only attach). */
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

/** The JSON line of docs/migration-protocol.md step 1. */
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
  const fds = opts.memfdFd !== undefined && opts.memfdFd >= 0 ? [uffdFd, opts.memfdFd] : [uffdFd];

  let sockFd: number;
  try {
    sockFd = connectUnix(controlPath, { type: 'stream', timeoutMs: opts.connectTimeoutMs ?? 5000 });
  } catch (e) {
    throw new AttachError('CONNECT', `cannot connect to the daemon's control socket ${controlPath}: ${(e as Error).message}`);
  }
  try {
    // ONE sendmsg: SCM_RIGHTS on the first byte of the bare JSON line (no PCFD frame: docs/migration-protocol.md step 1).
    sendBytesWithFds(sockFd, fds, line, { timeoutMs: opts.connectTimeoutMs ?? 5000 });
  } catch (e) {
    closeFn(sockFd);
    throw new AttachError('SEND', `sending the handshake on the control socket failed: ${(e as Error).message}`);
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
