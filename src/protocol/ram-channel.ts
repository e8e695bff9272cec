// Parser for "ram" v4 records with the per-channel state QEMU keeps (last block for CONTINUE, block
// list from MEM_SIZE). Shared by StreamDecoder (records inside "ram" sections) and RamRecordDecoder
// (bare channels: QEMU 7.2's preempt channel, the seed's post-switch stream).
import {
  DEFAULT_TARGET_PAGE_SIZE,
  ENCODING_FLAG_XBZRLE,
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_FULL,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from './constants.js';
import { be16, be32, latin1 } from './bytes.js';
import { protocolError } from './errors.js';
import { NEED } from './incremental.js';
import { compressBound, inflatePage } from './compress.js';
import { xbzrleCheck } from './xbzrle.js';
import type { DecoderOptions, MemSizePageSizeRule, RamBlockInfo, RamRecord } from './types.js';

const FLAG_NAMES: Record<number, string> = {
  [RAM_SAVE_FLAG_ZERO]: 'ZERO',
  [RAM_SAVE_FLAG_PAGE]: 'PAGE',
  [RAM_SAVE_FLAG_XBZRLE]: 'XBZRLE',
  [RAM_SAVE_FLAG_COMPRESS_PAGE]: 'COMPRESS_PAGE',
  [RAM_SAVE_FLAG_MEM_SIZE]: 'MEM_SIZE',
};

export function checkTargetPageSize(n: number): number {
  if (!Number.isInteger(n) || n < 1024 || n > 65536 || (n & (n - 1)) !== 0) {
    throw protocolError('ENCODE', `target page size ${n}`, -1, 'options', 'a power of two between 1 KiB and 64 KiB');
  }
  return n;
}

export class RamChannel {
  readonly pageSize: number;
  private readonly pageMask: number;
  private readonly maxCompressed: number;
  private readonly pageSizeRule: MemSizePageSizeRule;
  /**
   * x-ignore-shared: every MEM_SIZE block carries a be64 guest address. Settable so StreamDecoder can
   * turn it on from the configuration section's validated capabilities when not given explicitly.
   */
  guestAddress: boolean;
  private readonly maxBlocks: number;
  private readonly inflate: boolean;
  /** Set by StreamDecoder when POSTCOPY_ADVISE is seen (MEM_SIZE may then carry page sizes). */
  advised: boolean;
  /** Page-size summary from POSTCOPY_ADVISE, used by the 'auto' page-size rule. */
  adviseSummary = 0;
  blockMap: Map<string, RamBlockInfo> | null = null;
  blockList: RamBlockInfo[] | null = null;
  lastBlock: RamBlockInfo | null = null;
  /** Bytes needed from the record start when parse() returned NEED. */
  need = 0;

  constructor(opts: DecoderOptions = {}) {
    this.pageSize = checkTargetPageSize(opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE);
    this.pageMask = this.pageSize - 1;
    this.maxCompressed = compressBound(this.pageSize);
    this.pageSizeRule = opts.memSizePageSize ?? 'auto';
    this.guestAddress = opts.memSizeGuestAddress ?? false;
    this.maxBlocks = opts.maxRamBlocks ?? 4096;
    this.inflate = opts.inflate ?? true;
    this.advised = opts.postcopyAdvised ?? false;
    if (opts.blocks) this.setBlocks(opts.blocks);
  }

  setBlocks(blocks: readonly RamBlockInfo[]): void {
    this.blockList = blocks.map((b) => ({ ...b }));
    this.blockMap = new Map(this.blockList.map((b) => [b.idstr, b]));
    if (this.lastBlock) this.lastBlock = this.blockMap.get(this.lastBlock.idstr) ?? null;
  }

  /** Forget the last block (a new connection starts without one). */
  resetContinue(): void {
    this.lastBlock = null;
  }

  private needBytes(n: number): number {
    this.need = n;
    return NEED;
  }

  /**
   * Parses one record at d[p..end) (absolute offset abs) and pushes it to out.
   * Returns the position after it, or NEED (this.need set). State changes only on success.
   */
  parse(d: Uint8Array, p: number, end: number, abs: number, out: RamRecord[]): number {
    if (end - p < 8) return this.needBytes(8);
    const hi = be32(d, p);
    const lo = be32(d, p + 4);
    const flags = lo & this.pageMask;
    const addrLo = (lo - flags) >>> 0;
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    const continued = (flags & RAM_SAVE_FLAG_CONTINUE) !== 0;

    if (kind === RAM_SAVE_FLAG_ZERO || kind === RAM_SAVE_FLAG_PAGE || kind === RAM_SAVE_FLAG_XBZRLE || kind === RAM_SAVE_FLAG_COMPRESS_PAGE) {
      if (hi >= 0x200000) {
        throw protocolError('BAD_OFFSET', 'page offset too large', abs, `ram record ${FLAG_NAMES[kind]}`, 'an offset inside the block');
      }
      const addr = hi * 0x100000000 + addrLo;
      let q = p + 8;
      let block: RamBlockInfo | null;
      let name: string;
      if (continued) {
        block = this.lastBlock;
        if (block === null) {
          throw protocolError('CONTINUE_WITHOUT_BLOCK', 'CONTINUE flag with no previous block on this channel', abs, `ram record ${FLAG_NAMES[kind]}`, 'a record naming its block first');
        }
        name = block.idstr;
      } else {
        if (end - q < 1) return this.needBytes(9);
        const n = d[q];
        if (n === 0) {
          throw protocolError('BAD_IDSTR', 'empty block name', abs + 8, `ram record ${FLAG_NAMES[kind]}`, 'a block name of 1..255 bytes');
        }
        if (end - q < 1 + n) return this.needBytes(9 + n);
        name = this.sameAsLast(d, q + 1, n) ? this.lastBlock!.idstr : latin1(d, q + 1, n);
        q += 1 + n;
        if (this.blockMap !== null) {
          block = this.blockMap.get(name) ?? null;
          if (block === null) {
            throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(name)} is not in the block list`, abs + 9, `ram record ${FLAG_NAMES[kind]}`, `one of ${[...this.blockMap.keys()].map((k) => JSON.stringify(k)).join(', ')}`);
          }
        } else {
          block = this.lastBlock !== null && this.lastBlock.idstr === name ? this.lastBlock : { idstr: name, usedLength: -1 };
        }
      }
      if (block.usedLength >= 0 && addr + this.pageSize > block.usedLength) {
        throw protocolError('BAD_OFFSET', `page offset 0x${addr.toString(16)} beyond block ${JSON.stringify(name)} (0x${block.usedLength.toString(16)} bytes)`, abs, `ram record ${FLAG_NAMES[kind]}`, 'an offset inside the block');
      }
      const hdr = q - p;
      if (kind === RAM_SAVE_FLAG_PAGE) {
        if (end - q < this.pageSize) return this.needBytes(hdr + this.pageSize);
        this.lastBlock = block;
        out.push({ kind: 'page', offset: abs, block: name, blockOffset: addr, continued, data: d.subarray(q, q + this.pageSize) });
        return q + this.pageSize;
      }
      if (kind === RAM_SAVE_FLAG_ZERO) {
        if (end - q < 1) return this.needBytes(hdr + 1);
        this.lastBlock = block;
        out.push({ kind: 'zero', offset: abs, block: name, blockOffset: addr, continued, fill: d[q] });
        return q + 1;
      }
      if (kind === RAM_SAVE_FLAG_XBZRLE) {
        if (end - q < 3) return this.needBytes(hdr + 3);
        if (d[q] !== ENCODING_FLAG_XBZRLE) {
          throw protocolError('BAD_XBZRLE', `XBZRLE encoding byte 0x${d[q].toString(16)}`, abs + hdr, 'ram record XBZRLE', 'ENCODING_FLAG_XBZRLE (0x01)');
        }
        const len = be16(d, q + 1);
        if (len > this.pageSize) {
          throw protocolError('BAD_LENGTH', `XBZRLE length ${len}`, abs + hdr + 1, 'ram record XBZRLE', `at most ${this.pageSize} bytes`);
        }
        if (end - q < 3 + len) return this.needBytes(hdr + 3 + len);
        const data = d.subarray(q + 3, q + 3 + len);
        const why: string[] = [];
        const bad = xbzrleCheck(data, this.pageSize, why);
        if (bad >= 0) {
          throw protocolError(why[1] === 'overflow' ? 'XBZRLE_OVERFLOW' : 'BAD_XBZRLE', 'invalid XBZRLE data', abs + hdr + 3 + bad, 'ram record XBZRLE', why[0]);
        }
        this.lastBlock = block;
        out.push({ kind: 'xbzrle', offset: abs, block: name, blockOffset: addr, continued, data });
        return q + 3 + len;
      }
      // COMPRESS_PAGE
      if (end - q < 4) return this.needBytes(hdr + 4);
      const len = be32(d, q);
      if (len > this.maxCompressed) {
        throw protocolError('BAD_LENGTH', `compressed length ${len}`, abs + hdr, 'ram record COMPRESS_PAGE', `at most compressBound(${this.pageSize}) = ${this.maxCompressed}`);
      }
      if (end - q < 4 + len) return this.needBytes(hdr + 4 + len);
      const data = d.subarray(q + 4, q + 4 + len);
      const page = this.inflate ? inflatePage(data, this.pageSize, abs + hdr + 4, 'ram record COMPRESS_PAGE') : undefined;
      this.lastBlock = block;
      out.push({ kind: 'compressed-page', offset: abs, block: name, blockOffset: addr, continued, data, page });
      return q + 4 + len;
    }

    if (continued || (kind !== RAM_SAVE_FLAG_MEM_SIZE && (hi !== 0 || addrLo !== 0))) {
      throw protocolError('BAD_FLAGS', `flags 0x${flags.toString(16)} with offset 0x${(hi * 0x100000000 + addrLo).toString(16)}`, abs, 'ram record', 'CONTINUE only on page records; zero offset on EOS/MULTIFD_FLUSH');
    }
    // The offset's low bits are the flags (as in QEMU), so an offset that is not page aligned shows
    // up here as unknown flag bits: the messages below say so.
    switch (kind) {
      case RAM_SAVE_FLAG_EOS:
        out.push({ kind: 'eos', offset: abs });
        return p + 8;
      case RAM_SAVE_FLAG_MULTIFD_FLUSH:
        out.push({ kind: 'multifd-flush', offset: abs });
        return p + 8;
      case RAM_SAVE_FLAG_MEM_SIZE:
        if (hi >= 0x200000) throw protocolError('BAD_LENGTH', 'MEM_SIZE total too large', abs, 'ram record MEM_SIZE', 'a total below 2^53');
        return this.parseMemSize(d, p, end, abs, hi * 0x100000000 + addrLo, out);
      case RAM_SAVE_FLAG_HOOK:
        throw protocolError('HOOK_UNSUPPORTED', 'RAM_SAVE_FLAG_HOOK (RDMA control data) cannot be decoded', abs, 'ram record HOOK', 'a non-RDMA record (ZERO, PAGE, XBZRLE, COMPRESS_PAGE, MEM_SIZE, EOS, MULTIFD_FLUSH)');
      case RAM_SAVE_FLAG_FULL:
        throw protocolError('BAD_FLAGS', 'obsolete RAM_SAVE_FLAG_FULL', abs, 'ram record', 'a v4 record kind');
      default:
        throw protocolError('BAD_FLAGS', `unknown flag combination 0x${flags.toString(16)} (or an offset not aligned to the ${this.pageSize}-byte target page)`, abs, 'ram record', 'a page-aligned offset with exactly one of ZERO, MEM_SIZE, PAGE, EOS, XBZRLE, COMPRESS_PAGE, MULTIFD_FLUSH (+CONTINUE on pages)');
    }
  }

  private sameAsLast(d: Uint8Array, q: number, n: number): boolean {
    const last = this.lastBlock;
    if (last === null || last.idstr.length !== n) return false;
    const s = last.idstr;
    for (let i = 0; i < n; i++) if (s.charCodeAt(i) !== d[q + i]) return false;
    return true;
  }

  private parseMemSize(d: Uint8Array, p: number, end: number, abs: number, total: number, out: RamRecord[]): number {
    const ctx = 'ram record MEM_SIZE';
    let q = p + 8;
    let remaining = total;
    const blocks: RamBlockInfo[] = [];
    const seen = new Set<string>();
    while (remaining > 0) {
      if (blocks.length >= this.maxBlocks) {
        throw protocolError('BAD_LENGTH', `more than ${this.maxBlocks} blocks`, abs + (q - p), ctx, `at most ${this.maxBlocks} RAM blocks (DecoderOptions.maxRamBlocks)`);
      }
      if (end - q < 1) return this.needBytes(q - p + 1);
      const n = d[q];
      if (n === 0) throw protocolError('BAD_IDSTR', 'empty block name', abs + (q - p), ctx, 'a block name of 1..255 bytes');
      if (end - q < 1 + n + 8) return this.needBytes(q - p + 1 + n + 8);
      const idstr = latin1(d, q + 1, n);
      if (seen.has(idstr)) throw protocolError('BAD_IDSTR', `block ${JSON.stringify(idstr)} listed twice`, abs + (q - p), ctx, 'distinct block names');
      seen.add(idstr);
      q += 1 + n;
      const lenHi = be32(d, q);
      const usedLength = lenHi * 0x100000000 + be32(d, q + 4);
      if (lenHi >= 0x200000 || usedLength > remaining) {
        throw protocolError('BAD_LENGTH', `block ${JSON.stringify(idstr)} length ${usedLength} exceeds the ${remaining} bytes left of the total`, abs + (q - p), ctx, 'block lengths adding up to the total');
      }
      if (usedLength % this.pageSize !== 0) {
        throw protocolError('BAD_LENGTH', `block ${JSON.stringify(idstr)} length ${usedLength}`, abs + (q - p), ctx, `a multiple of the ${this.pageSize}-byte target page`);
      }
      q += 8;
      remaining -= usedLength;
      const info: RamBlockInfo = { idstr, usedLength };
      const hasPageSize = this.pageSizePresent(idstr, d, q, end, remaining > 0);
      if (hasPageSize === null) return this.needBytes(q - p + 8 + 1);
      if (hasPageSize) {
        if (end - q < 8) return this.needBytes(q - p + 8);
        const ps = be32(d, q) * 0x100000000 + be32(d, q + 4);
        if (ps < this.pageSize || ps >= 2 ** 53 || !Number.isInteger(Math.log2(ps))) {
          throw protocolError('BAD_LENGTH', `block ${JSON.stringify(idstr)} page size ${ps}`, abs + (q - p), ctx, 'a power-of-two page size of at least the target page');
        }
        info.pageSize = ps;
        q += 8;
      }
      if (this.guestAddress) {
        if (end - q < 8) return this.needBytes(q - p + 8);
        const gHi = be32(d, q);
        if (gHi >= 0x200000) throw protocolError('BAD_LENGTH', 'guest address too large', abs + (q - p), ctx, 'an address below 2^53');
        info.guestAddress = gHi * 0x100000000 + be32(d, q + 4);
        q += 8;
      }
      blocks.push(info);
    }
    this.setBlocks(blocks);
    out.push({ kind: 'mem-size', offset: abs, totalBytes: total, blocks: blocks.map((b) => ({ ...b })) });
    return q;
  }

  /**
   * Whether the be64 page_size follows this block's used_length. 'auto' (not self-describing on the
   * wire, so decided by shape): only once postcopy was advised; a following byte 0 where a name length
   * must be (more blocks to come) can only be the top byte of a page size; for the last block, a be64
   * with no flag bits set that is a power of two ≥ 2 × target page can only be a page size, because
   * the record that follows MEM_SIZE always has flag bits. null = need more bytes.
   */
  private pageSizePresent(idstr: string, d: Uint8Array, q: number, end: number, moreBlocks: boolean): boolean | null {
    const rule = this.pageSizeRule;
    if (rule === 'never') return false;
    if (typeof rule === 'function') return rule(idstr);
    if (!this.advised) return false;
    if (this.guestAddress) {
      // With x-ignore-shared a guest address follows too; only the ADVISE summary can tell.
      if (end - q < 8) return null;
      const v = be32(d, q) * 0x100000000 + be32(d, q + 4);
      return v > this.pageSize && v < 2 ** 53 && Number.isInteger(Math.log2(v)) && Math.floor(this.adviseSummary / v) % 2 === 1;
    }
    if (moreBlocks) {
      if (end - q < 1) return null;
      return d[q] === 0;
    }
    if (end - q < 8) {
      if (end - q >= 1 && d[q] !== 0) return false;
      return null;
    }
    // Any power of two above the target page (up to 2^52: 16 GiB POWER pages have h != 0).
    const v = be32(d, q) * 0x100000000 + be32(d, q + 4);
    return v > this.pageSize && v < 2 ** 53 && Number.isInteger(Math.log2(v));
  }
}
