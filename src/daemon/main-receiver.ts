// The stream worker's receive loop body (DESIGN §3): blocking receives from the main connection, handed to
// StreamIngest. Inside a run of CONTINUE PAGE records it receives scattered (ScatterReceiver: pages land
// where they are placed from); elsewhere into one reusable linear buffer. A record cut short by a receive is
// carried to the front of the next one, so the stream stays aligned on records between receives.
import { addressOf } from '../uffd/memory.js';
import { recvSome } from './sockets.js';
import { ScatterReceiver } from './scatter-recv.js';
import type { StreamIngest } from './stream-ingest.js';

/** Header + page units per scatter receive (1 MiB of pages with 4 KiB pages). */
const SCATTER_UNITS = 256;
/** Linear receives after a scatter receive met a ZERO record (then likely more: every one misaligns the units). */
const LINEAR_AFTER_ZERO = 8;

export interface MainReceiverOptions {
  /** Receive scattered inside page runs (default true; false: always into the linear buffer). */
  scatter?: boolean;
  /** Units per scatter receive (default 256). */
  scatterUnits?: number;
}

export class MainReceiver {
  /** Pages taken where a scatter receive put them (no staging copy), for stats and tests. */
  readonly counts = { scatteredPages: 0 };
  private readonly units: ScatterReceiver | null;
  private readonly bufAddr: number;
  /** Receives to do linearly after a scatter receive met a ZERO record. */
  private linearTurns = 0;
  /** Bytes of a record cut short by the last receive, at buf[carryAt, carryAt + carried). */
  private carried = 0;
  private carryAt = 0;

  constructor(
    private readonly fd: number,
    private readonly isSocket: boolean,
    private readonly ingest: StreamIngest,
    /** The linear receive buffer, the one `ingest` reads. */
    private readonly buf: Buffer,
    pageSize: number,
    opts: MainReceiverOptions = {},
  ) {
    this.bufAddr = addressOf(buf);
    const units = Math.min(opts.scatterUnits ?? SCATTER_UNITS, Math.floor(buf.length / (8 + pageSize)));
    this.units = opts.scatter === false || units < 1 ? null : new ScatterReceiver(pageSize, units);
  }

  /**
   * Receive once and hand the bytes to the ingest (which places pages through its sink; the caller flushes
   * it). Returns the bytes received (> 0), or 0 at EOF / -errno, after giving the decoder whatever was
   * carried so that it can judge a stream cut short. Protocol errors propagate from the ingest.
   */
  step(): number {
    const { units, ingest, buf } = this;
    if (units !== null && ingest.atPageRun && this.linearTurns === 0) {
      const prior = this.carried;
      if (prior > 0) units.prime(buf, this.carryAt, prior);
      const r = units.receive(this.fd, prior);
      if (r <= 0) return this.end(r);
      this.carried = 0;
      this.takeScattered(units, prior + r);
      return r;
    }
    if (this.linearTurns > 0) this.linearTurns--;
    if (this.carried > 0) {
      buf.copyWithin(0, this.carryAt, this.carryAt + this.carried);
      this.carryAt = 0;
    }
    const r = recvSome(this.fd, this.bufAddr + this.carried, buf.length - this.carried, this.isSocket);
    if (r <= 0) return this.end(r);
    const len = this.carried + r;
    this.carried = ingest.push(len, true);
    this.carryAt = len - this.carried;
    return r;
  }

  private end(r: number): number {
    if (this.carried > 0) {
      this.buf.copyWithin(0, this.carryAt, this.carryAt + this.carried);
      const n = this.carried;
      this.carried = 0;
      this.ingest.push(n);
    }
    return r;
  }

  /**
   * `have` bytes were scatter-received into the unit slots: CONTINUE PAGE units stay in place; from the first
   * other unit on, the bytes go back into stream order through the decoding path.
   */
  private takeScattered(units: ScatterReceiver, have: number): void {
    const unitBytes = units.unitBytes;
    const whole = Math.floor(have / unitBytes);
    const next = this.ingest.takeUnits(units, 0, whole);
    this.counts.scatteredPages += next;
    if (next * unitBytes === have) return;
    if (next < whole && this.ingest.isZeroUnit(units, next)) this.linearTurns = LINEAR_AFTER_ZERO;
    const len = units.linearize(next * unitBytes, have, this.buf);
    this.carried = this.ingest.push(len, true);
    this.carryAt = len - this.carried;
  }
}
