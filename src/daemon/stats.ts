// Migration statistics shared by the daemon's threads. Counters live in a SharedArrayBuffer of Float64s;
// each field has exactly one writer thread (so plain stores are enough), the main thread reads them for the
// progress bar and the final report. Fault-service latency goes into a log-linear histogram (1 µs steps
// below 128 µs, then 32 steps per power of two) so p50/p99 cost no allocation on the hot path.

export const F = {
  // fault worker
  faults: 0, // page-fault events read from the uffd
  pagesRequested: 1, // pages asked for on the return path
  pagesOnDemand: 2, // pages placed from the urgent channel (fault worker)
  zeroOnDemand: 3,
  duplicatesFault: 4, // EEXIST on the urgent path
  bytesUrgent: 5,
  blockedUs: 6, // time with ≥1 fault outstanding (QEMU blocktime)
  latCount: 7,
  latSumUs: 8,
  latMaxUs: 9,
  faultsOnPresent: 10, // fault for a page already placed (just woken)
  // background worker
  pagesBackground: 11,
  zeroBackground: 12,
  duplicatesBackground: 13, // EEXIST or already present when it arrived
  bytesMain: 14,
  eagainBackground: 15, // EAGAIN answers (each backed off) seen by this worker's device
  eagainFault: 19,
  oldestOutstandingMs: 16, // Date.now() of the oldest unanswered fault, 0 when none (stall detection)
  placedFault: 17, // pages this worker made present (zero pages included)
  placedBackground: 18,
  // stream worker: requested pages that came back inline on the main stream (exec:, no urgent channel)
  pagesOnDemandInline: 20,
} as const;
const FIELDS = 24;
/**
 * Int32 cells after the Float64 fields: pages present (Atomics), blocks bound flag, faults outstanding, urgent
 * fd + 1 (0: none yet); the fault worker's thread id, its wake signal (0: none) and whether it waits in
 * read() on the uffd (the session then stops it, or makes it look at its urgent socket, with that signal);
 * stop requested.
 */
export const C = { present: 0, blocksBound: 1, outstanding: 2, urgentFd: 3, faultTid: 4, wakeSignal: 5, faultIdle: 6, stop: 7 } as const;
const CELLS = 8;
export const HIST_BUCKETS = 1024;

export function latencyBucket(us: number): number {
  if (us < 128) return us < 0 ? 0 : Math.floor(us);
  const b = 128 + Math.floor((Math.log2(us) - 7) * 32);
  return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}

/** Representative value (µs) of a bucket: its lower bound. */
export function bucketValue(b: number): number {
  return b < 128 ? b : 2 ** (7 + (b - 128) / 32);
}

export class SharedStats {
  readonly buffer: SharedArrayBuffer;
  readonly v: Float64Array;
  readonly hist: Float64Array;
  readonly cells: Int32Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer((FIELDS + HIST_BUCKETS) * 8 + CELLS * 4);
    this.v = new Float64Array(this.buffer, 0, FIELDS);
    this.hist = new Float64Array(this.buffer, FIELDS * 8, HIST_BUCKETS);
    this.cells = new Int32Array(this.buffer, (FIELDS + HIST_BUCKETS) * 8, CELLS);
  }

  /** Add pages made present; true when this call completed the set of `total` pages. */
  addPresent(n: number, total: number): boolean {
    if (n <= 0) return false;
    const old = Atomics.add(this.cells, C.present, n);
    return old < total && old + n >= total;
  }

  get present(): number {
    return Atomics.load(this.cells, C.present);
  }

  /** Record one fault-service latency (fault read → page placed). */
  recordLatency(us: number): void {
    const v = this.v;
    v[F.latCount]++;
    v[F.latSumUs] += us;
    if (us > v[F.latMaxUs]) v[F.latMaxUs] = us;
    this.hist[latencyBucket(us)]++;
  }

  percentile(p: number): number {
    const n = this.v[F.latCount];
    if (n === 0) return 0;
    if (p >= 100) return this.v[F.latMaxUs];
    const rank = Math.ceil((p / 100) * n);
    let seen = 0;
    for (let b = 0; b < HIST_BUCKETS; b++) {
      seen += this.hist[b];
      if (seen >= rank) return Math.min(bucketValue(b), this.v[F.latMaxUs]);
    }
    return this.v[F.latMaxUs];
  }
}

export interface MigrationStats {
  pagesTotal: number;
  pagesPresent: number;
  pagesOnDemand: number;
  pagesBackground: number;
  pagesZero: number;
  pagesDuplicate: number;
  faults: number;
  pagesRequested: number;
  /** EAGAIN answers from the kernel (an unread non-cooperative event), each followed by a back-off. */
  eagainRetries: number;
  faultLatencyUs: { p50: number; p99: number; max: number; mean: number; count: number };
  blockedTimeMs: number;
  /**
   * The daemon's share of the downtime: the state blob arriving from the source → written to the process.
   * (The source stops its workload only after the daemon's PONG, so the whole downtime is this plus the
   * source's state() call and the transfer; compare stateDeliveredAt with the source's downtimeStart.)
   */
  downtimeMs: number | null;
  /** Epoch ms (performance.timeOrigin based) when the state reached the process (compare with the source's downtimeStart on one host). */
  stateDeliveredAt: number | null;
  totalTimeMs: number;
  bytesOnWire: number;
  throughputMBps: number;
  pageSize: number;
  mode: string;
  transport: string;
  ok: boolean;
  error?: string;
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

export function snapshot(s: SharedStats, extra: {
  pagesTotal: number; pagesPresent: number; downtimeMs: number | null; stateDeliveredAt: number | null; totalTimeMs: number; pageSize: number;
  mode: string; transport: string; ok: boolean; error?: string;
}): MigrationStats {
  const v = s.v;
  const bytes = v[F.bytesMain] + v[F.bytesUrgent];
  return {
    pagesTotal: extra.pagesTotal,
    pagesPresent: extra.pagesPresent,
    pagesOnDemand: v[F.pagesOnDemand] + v[F.pagesOnDemandInline],
    pagesBackground: v[F.pagesBackground],
    pagesZero: v[F.zeroOnDemand] + v[F.zeroBackground],
    pagesDuplicate: v[F.duplicatesFault] + v[F.duplicatesBackground],
    faults: v[F.faults],
    pagesRequested: v[F.pagesRequested],
    eagainRetries: v[F.eagainFault] + v[F.eagainBackground],
    faultLatencyUs: {
      p50: round(s.percentile(50)),
      p99: round(s.percentile(99)),
      max: round(v[F.latMaxUs]),
      mean: v[F.latCount] ? round(v[F.latSumUs] / v[F.latCount]) : 0,
      count: v[F.latCount],
    },
    blockedTimeMs: round(v[F.blockedUs] / 1000, 3),
    downtimeMs: extra.downtimeMs === null ? null : round(extra.downtimeMs, 3),
    stateDeliveredAt: extra.stateDeliveredAt,
    totalTimeMs: round(extra.totalTimeMs, 3),
    bytesOnWire: bytes,
    throughputMBps: extra.totalTimeMs > 0 ? round(bytes / 1e6 / (extra.totalTimeMs / 1000)) : 0,
    pageSize: extra.pageSize,
    mode: extra.mode,
    transport: extra.transport,
    ok: extra.ok,
    ...(extra.error ? { error: extra.error } : {}),
  };
}

export function formatSummary(m: MigrationStats): string {
  const mib = (b: number): string => (b / 1048576).toFixed(1);
  const lines = [
    `migration ${m.ok ? 'complete' : 'FAILED'}: ${m.pagesPresent}/${m.pagesTotal} pages (${mib(m.pagesTotal * m.pageSize)} MiB, ${m.mode} mode, ${m.transport})`,
    `  pages: on demand ${m.pagesOnDemand}, background ${m.pagesBackground}, zero ${m.pagesZero}, duplicate ${m.pagesDuplicate}; faults ${m.faults}, requested ${m.pagesRequested}`,
    `  fault service latency: p50 ${m.faultLatencyUs.p50} µs, p99 ${m.faultLatencyUs.p99} µs, max ${m.faultLatencyUs.max} µs (${m.faultLatencyUs.count} faults)`,
    `  blocked time ${m.blockedTimeMs} ms, downtime ${m.downtimeMs ?? 'n/a'} ms, total ${m.totalTimeMs} ms`,
    `  ${mib(m.bytesOnWire)} MiB on the wire, ${m.throughputMBps} MB/s`,
  ];
  if (m.error) lines.push(`  error: ${m.error}`);
  return lines.join('\n');
}
