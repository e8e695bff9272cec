// Decoder for a bare sequence of "ram" v4 records: QEMU 7.2's postcopy-preempt channel (own CONTINUE
// state, EOS at the end) or the seed's post-switch page stream.
import { IncrementalDecoder, NEED } from './incremental.js';
import { RamChannel } from './ram-channel.js';
import type { DecoderOptions, RamBlockInfo, RamRecord } from './types.js';

export class RamRecordDecoder extends IncrementalDecoder<RamRecord> {
  private readonly channel: RamChannel;
  private eosCount = 0;

  constructor(opts: DecoderOptions = {}) {
    super();
    this.channel = new RamChannel(opts);
  }

  /** Block list used to check names and offsets (e.g. StreamDecoder.blocks of the main channel). */
  setBlocks(blocks: readonly RamBlockInfo[]): void {
    this.channel.setBlocks(blocks);
  }

  get blocks(): readonly RamBlockInfo[] | null {
    return this.channel.blockList;
  }

  /** Number of EOS records seen (QEMU ends the preempt channel with one). */
  get eosSeen(): number {
    return this.eosCount;
  }

  protected step(d: Uint8Array, p: number, end: number): number {
    const before = this.out.length;
    const q = this.channel.parse(d, p, end, this.pos, this.out);
    if (q === NEED) {
      this.need = this.channel.need;
      return NEED;
    }
    if (this.out.length > before && this.out[this.out.length - 1].kind === 'eos') this.eosCount++;
    return q;
  }

  protected finish(): void {}

  protected describe(): string {
    return 'ram record';
  }
}
