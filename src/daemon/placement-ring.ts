// A ring of staging slots in one SharedArrayBuffer between the stream worker (receive + decode + stage) and
// the placer worker (UFFDIO_COPY/ZEROPAGE + accounting), so the network and the placement ioctls run on two
// threads at once instead of alternating on one. Each slot holds one coalesced run of pages (≤ slotBytes)
// and its descriptor; a slot is FREE (the stream worker may fill it) or FULL (the placer owns it).
// Synchronisation is Atomics.wait/notify on the slot state cells; nothing is allocated per run.
// The slots' page bytes are ordinary (non-shared) Buffers owned by the producer: V8 copies into a
// SharedArrayBuffer with a slow relaxed-atomic memcpy (measured: staging 4x slower), and the placer only
// needs their addresses (same process), which travel in the descriptors.
import { addressOf } from '../uffd/memory.js';

const FREE = 0;
const FULL = 1;
/** Control cells after the slot states. */
const CLOSED = 0;
const FAILED = 1;
const CONTROL_CELLS = 2;
/** Descriptor fields per slot (Float64). */
const D_FIRST = 0;
const D_COUNT = 1;
const D_KIND = 2;
const D_ZEROS = 3;
const D_ADDR = 4;
const DESC_FIELDS = 5;

export interface PlacementRingInit {
  sab: SharedArrayBuffer;
  slots: number;
  slotBytes: number;
}

export interface RunDescriptor {
  first: number;
  count: number;
  kind: number;
  zeros: number;
  /** Address of the slot's page bytes. */
  addr: number;
  slot: number;
}

export class PlacementRing {
  readonly slots: number;
  readonly slotBytes: number;
  private readonly state: Int32Array;
  private readonly desc: Float64Array;
  private readonly data: Buffer;
  private readonly dataAddr: number;
  /** Per-slot Buffers over the shared data (made once). */
  readonly slotBuffers: Buffer[];

  static create(slots = 4, slotBytes = 1 << 20): PlacementRingInit {
    const bytes = align8((slots + CONTROL_CELLS) * 4) + slots * DESC_FIELDS * 8;
    return { sab: new SharedArrayBuffer(bytes), slots, slotBytes };
  }

  /** `producer`: allocate the slots' page memory here (the stream worker); the placer gets addresses only. */
  constructor(init: PlacementRingInit, producer = false) {
    this.slots = init.slots;
    this.slotBytes = init.slotBytes;
    const stateBytes = align8((init.slots + CONTROL_CELLS) * 4);
    this.state = new Int32Array(init.sab, 0, init.slots + CONTROL_CELLS);
    this.desc = new Float64Array(init.sab, stateBytes, init.slots * DESC_FIELDS);
    this.data = producer ? Buffer.allocUnsafeSlow(init.slots * init.slotBytes) : Buffer.alloc(0);
    this.dataAddr = producer ? addressOf(this.data) : 0;
    this.slotBuffers = [];
    if (producer) for (let i = 0; i < init.slots; i++) this.slotBuffers.push(this.data.subarray(i * init.slotBytes, (i + 1) * init.slotBytes));
  }

  /** Producer side: address of a slot's page bytes. */
  slotAddress(slot: number): number {
    return this.dataAddr + slot * this.slotBytes;
  }

  // ---- producer (stream worker)

  /** Wait until `slot` is FREE. Returns false if the placer failed (the caller stops; the placer reported why). */
  acquire(slot: number): boolean {
    const st = this.state;
    while (Atomics.load(st, slot) !== FREE) {
      if (Atomics.load(st, this.slots + FAILED) !== 0) return false;
      Atomics.wait(st, slot, FULL, 100);
    }
    return Atomics.load(st, this.slots + FAILED) === 0;
  }

  /** Hand the staged run in `slot` to the placer (the producer keeps the slot memory alive until drained). */
  publish(slot: number, first: number, count: number, kind: number, zeros: number): void {
    const d = slot * DESC_FIELDS;
    this.desc[d + D_FIRST] = first;
    this.desc[d + D_COUNT] = count;
    this.desc[d + D_KIND] = kind;
    this.desc[d + D_ZEROS] = zeros;
    this.desc[d + D_ADDR] = this.slotAddress(slot);
    Atomics.store(this.state, slot, FULL);
    Atomics.notify(this.state, slot);
  }

  /** Wait until every slot is FREE (everything handed over has been placed). False if the placer failed. */
  drain(): boolean {
    for (let i = 0; i < this.slots; i++) if (!this.acquire(i)) return false;
    return true;
  }

  /** No more runs: the placer leaves once it has placed what is FULL. */
  close(): void {
    Atomics.store(this.state, this.slots + CLOSED, 1);
    for (let i = 0; i < this.slots; i++) Atomics.notify(this.state, i);
  }

  // ---- consumer (placer worker)

  /** Wait for `slot` to be FULL and fill `out`; false once the ring is closed and the slot is empty. */
  take(slot: number, out: RunDescriptor): boolean {
    const st = this.state;
    while (Atomics.load(st, slot) !== FULL) {
      if (Atomics.load(st, this.slots + CLOSED) !== 0 && Atomics.load(st, slot) !== FULL) return false;
      Atomics.wait(st, slot, FREE, 100);
    }
    const d = slot * DESC_FIELDS;
    out.first = this.desc[d + D_FIRST];
    out.count = this.desc[d + D_COUNT];
    out.kind = this.desc[d + D_KIND];
    out.zeros = this.desc[d + D_ZEROS];
    out.addr = this.desc[d + D_ADDR];
    out.slot = slot;
    return true;
  }

  release(slot: number): void {
    Atomics.store(this.state, slot, FREE);
    Atomics.notify(this.state, slot);
  }

  /** The placer failed: wake and stop the producer. */
  fail(): void {
    Atomics.store(this.state, this.slots + FAILED, 1);
    for (let i = 0; i < this.slots; i++) Atomics.notify(this.state, i);
  }

  get failed(): boolean {
    return Atomics.load(this.state, this.slots + FAILED) !== 0;
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}
