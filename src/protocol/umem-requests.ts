// The June 2012 seed's page-request protocol (daemon → source, spec-notes §1.7): u8 cmd, [u8 len +
// idstr], [be32 nr + nr × be64 target-page index]; at most 4063 offsets per message.
import { DEFAULT_TARGET_PAGE_SIZE, UMEM_MAX_PAGE_NR, UmemReq, type UmemRequestName } from './constants.js';
import { ByteWriter, be32, be64, latin1 } from './bytes.js';
import { protocolError } from './errors.js';
import { IncrementalDecoder, NEED } from './incremental.js';
import type { RamBlockInfo, UmemRequest } from './types.js';

const NAMES: UmemRequestName[] = ['INIT', 'ON_DEMAND', 'ON_DEMAND_CONT', 'BACKGROUND', 'BACKGROUND_CONT', 'REMOVE', 'EOC'];
const NAMED = new Set<UmemRequestName>(['ON_DEMAND', 'BACKGROUND', 'REMOVE']);

export class UmemRequestDecoder extends IncrementalDecoder<UmemRequest> {
  private lastBlock: string | null = null;
  private blockMap: Map<string, RamBlockInfo> | null = null;
  private readonly pageSize: number;
  private eoc = false;

  constructor(opts: { blocks?: readonly RamBlockInfo[]; targetPageSize?: number } = {}) {
    super();
    this.pageSize = opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE;
    if (opts.blocks) this.blockMap = new Map(opts.blocks.map((b) => [b.idstr, b]));
  }

  setBlocks(blocks: readonly RamBlockInfo[]): void {
    this.blockMap = new Map(blocks.map((b) => [b.idstr, b]));
  }

  /** True once EOC was received. */
  get ended(): boolean {
    return this.eoc;
  }

  protected describe(): string {
    return 'umem page request';
  }

  protected finish(): void {}

  private needBytes(n: number): number {
    this.need = n;
    return NEED;
  }

  protected step(d: Uint8Array, p: number, end: number): number {
    if (end - p < 1) return this.needBytes(1);
    const abs = this.pos;
    const cmd = NAMES[d[p]];
    if (cmd === undefined) {
      throw protocolError('UNKNOWN_COMMAND', `request code 0x${d[p].toString(16)}`, abs, 'umem page request', 'QEMU_UMEM_REQ_* 0x00..0x06');
    }
    const ctx = `QEMU_UMEM_REQ_${cmd}`;
    if (this.eoc) throw protocolError('TRAILING_DATA', `${cmd} after EOC`, abs, ctx, 'nothing after EOC');
    if (cmd === 'INIT' || cmd === 'EOC') {
      if (cmd === 'EOC') this.eoc = true;
      this.out.push({ kind: 'umem-request', offset: abs, cmd, pages: [] });
      return p + 1;
    }
    let q = p + 1;
    let idstr: string | undefined;
    let block: string | null;
    if (NAMED.has(cmd)) {
      if (end - q < 1) return this.needBytes(2);
      const n = d[q];
      if (n === 0) throw protocolError('BAD_IDSTR', 'empty block name', abs + 1, ctx, 'a block name of 1..255 bytes');
      if (end - q < 1 + n) return this.needBytes(2 + n);
      idstr = latin1(d, q + 1, n);
      q += 1 + n;
      block = idstr;
    } else {
      block = this.lastBlock;
      if (block === null) throw protocolError('CONTINUE_WITHOUT_BLOCK', `${cmd} with no earlier named request`, abs, ctx, 'ON_DEMAND/BACKGROUND/REMOVE naming the block first');
    }
    const info = this.blockMap?.get(block);
    if (this.blockMap !== null && info === undefined) {
      throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(block)}`, abs + 2, ctx, 'a known block');
    }
    if (end - q < 4) return this.needBytes(q - p + 4);
    const nr = be32(d, q);
    if (nr > UMEM_MAX_PAGE_NR) throw protocolError('BAD_LENGTH', `${nr} pages`, abs + (q - p), ctx, `at most ${UMEM_MAX_PAGE_NR} pages per message`);
    q += 4;
    if (end - q < nr * 8) return this.needBytes(q - p + nr * 8);
    const limit = info !== undefined ? Math.ceil(info.usedLength / this.pageSize) : Infinity;
    const pages = new Array<number>(nr);
    for (let i = 0; i < nr; i++) {
      const at = abs + (q - p) + i * 8;
      const pg = be64(d, q + i * 8, at, ctx);
      if (pg >= limit) throw protocolError('BAD_OFFSET', `page ${pg} beyond block ${JSON.stringify(block)}`, at, ctx, `a page index below ${limit}`);
      pages[i] = pg;
    }
    this.lastBlock = block;
    this.out.push({ kind: 'umem-request', offset: abs, cmd, idstr, block, pages });
    return q + nr * 8;
  }
}

/** One message; pages.length must be ≤ 4063 (use encodeUmemRequests to split). */
export function encodeUmemRequest(req: { cmd: UmemRequestName; idstr?: string; pages?: readonly number[] }): Uint8Array {
  const pages = req.pages ?? [];
  const ctx = `QEMU_UMEM_REQ_${req.cmd}`;
  const w = new ByteWriter(16 + pages.length * 8).u8(UmemReq[req.cmd]);
  if (req.cmd === 'INIT' || req.cmd === 'EOC') return w.done();
  if (NAMED.has(req.cmd)) {
    if (req.idstr === undefined) throw protocolError('ENCODE', 'block name missing', -1, ctx, 'an idstr');
    w.counted(req.idstr, ctx);
  }
  if (pages.length > UMEM_MAX_PAGE_NR) throw protocolError('ENCODE', `${pages.length} pages`, -1, ctx, `at most ${UMEM_MAX_PAGE_NR}`);
  w.u32(pages.length);
  for (const pg of pages) w.u64(pg);
  return w.done();
}

/**
 * A page list as the seed daemon sends it: ON_DEMAND (BACKGROUND) when the block differs from
 * `previousBlock`, else ON_DEMAND_CONT (BACKGROUND_CONT), further 4063-page chunks as *_CONT;
 * REMOVE lists become several REMOVE messages.
 */
export function encodeUmemRequests(kind: 'ON_DEMAND' | 'BACKGROUND' | 'REMOVE', idstr: string, pages: readonly number[], previousBlock: string | null = null): Uint8Array[] {
  const out: Uint8Array[] = [];
  let same = previousBlock === idstr;
  for (let i = 0; i < pages.length || (i === 0 && pages.length === 0); i += UMEM_MAX_PAGE_NR) {
    const chunk = pages.slice(i, i + UMEM_MAX_PAGE_NR);
    const cmd: UmemRequestName = kind === 'REMOVE' ? 'REMOVE' : same ? (`${kind}_CONT` as UmemRequestName) : kind;
    out.push(encodeUmemRequest({ cmd, idstr, pages: chunk }));
    same = true;
    if (pages.length === 0) break;
  }
  return out;
}

/** Stateful encoder remembering the last block written (the daemon's "last block" rule). */
export class UmemRequestEncoder {
  private last: string | null = null;
  request(kind: 'ON_DEMAND' | 'BACKGROUND' | 'REMOVE', idstr: string, pages: readonly number[]): Uint8Array[] {
    const out = encodeUmemRequests(kind, idstr, pages, this.last);
    this.last = idstr;
    return out;
  }
  eoc(): Uint8Array {
    return encodeUmemRequest({ cmd: 'EOC' });
  }
}

