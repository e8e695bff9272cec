// Hot-path writer of "ram" v4 page records straight into a staging buffer: no allocation per page, the
// page copied once with Buffer#copy (memcpy). Each channel keeps its own CONTINUE state (spec-notes §2.2).
// The rest of the stream (header, sections, commands) is written with src/protocol's StreamEncoder.
import { RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_EOS, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_ZERO, QEMU_VM_SECTION_FOOTER, QEMU_VM_SECTION_PART } from '../protocol/constants.js';
import type { BlockInfo, PageMap } from './page-map.js';
import type { PageReader } from './page-reader.js';

const TWO32 = 0x1_0000_0000;

/** Per-channel record state: the block of the last record written on it (for CONTINUE). */
export class ChannelState {
  lastBlock = -1;
}

export interface RecordCounters {
  pages: number;
  zero: number;
  bytes: number;
}

/** Bytes one page record can take at most (header + idstr + payload). */
export function maxRecordBytes(pageSize: number): number {
  return 8 + 1 + 255 + pageSize;
}

/**
 * Append the record for global page `page` of `block` at `pos`; returns the new position. Zero pages go as
 * ZERO (1-byte payload), others as PAGE with the bytes copied from the region. Caller checks capacity
 * (maxRecordBytes) and marks the page sent.
 */
export function writePageRecord(
  buf: Buffer, pos: number, chan: ChannelState, map: PageMap, reader: PageReader, block: BlockInfo, page: number, counters: RecordCounters,
): number {
  const zero = reader.isZero(block, page);
  const byteOff = (page - block.firstPage) * map.pageSize;
  let flags = zero ? RAM_SAVE_FLAG_ZERO : RAM_SAVE_FLAG_PAGE;
  const cont = chan.lastBlock === block.index;
  if (cont) flags |= RAM_SAVE_FLAG_CONTINUE;
  const hi = Math.floor(byteOff / TWO32);
  buf.writeUInt32BE(hi, pos);
  buf.writeUInt32BE((byteOff - hi * TWO32 + flags) >>> 0, pos + 4);
  pos += 8;
  if (!cont) {
    buf[pos++] = block.nameBytes.length;
    pos += block.nameBytes.copy(buf, pos);
    chan.lastBlock = block.index;
  }
  counters.pages++;
  if (zero) {
    buf[pos++] = 0;
    counters.zero++;
  } else {
    reader.locate(block, page);
    pos += reader.win.bytes.copy(buf, pos, reader.off, reader.off + map.pageSize);
  }
  return pos;
}

export function writeEos(buf: Buffer, pos: number): number {
  buf.writeUInt32BE(0, pos);
  buf.writeUInt32BE(RAM_SAVE_FLAG_EOS, pos + 4);
  return pos + 8;
}

/** SECTION_PART/END header (type, be32 section id). */
export function writeSectionHeader(buf: Buffer, pos: number, type: number, sectionId: number): number {
  buf[pos] = type;
  buf.writeUInt32BE(sectionId, pos + 1);
  return pos + 5;
}

export function writeFooter(buf: Buffer, pos: number, sectionId: number): number {
  buf[pos] = QEMU_VM_SECTION_FOOTER;
  buf.writeUInt32BE(sectionId, pos + 1);
  return pos + 5;
}

export { QEMU_VM_SECTION_PART };
