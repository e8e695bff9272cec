// Hot-path writing of "ram" v4 page records straight into a send buffer, through the protocol's
// allocation-free RamRecordEncoder.recordInto (one memcpy per page, nothing allocated per page). Each
// channel has its own encoder: QEMU keeps the CONTINUE state per channel (spec-notes §2.2).
// Section framing around the records (part/end headers, EOS, footer) is written here by hand, also
// allocation free; the rest of the stream uses src/protocol's StreamEncoder.
import { RAM_SAVE_FLAG_EOS, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_ZERO, QEMU_VM_SECTION_FOOTER, QEMU_VM_SECTION_PART } from '../protocol/constants.js';
import { RamRecordEncoder } from '../protocol/index.js';
import type { BlockInfo, PageMap } from './page-map.js';
import type { PageReader } from './page-reader.js';
import type { SlotWriter } from './batch-sender.js';

/** Per-channel record state (CONTINUE): one encoder per channel. */
export class ChannelState {
  readonly encoder: RamRecordEncoder;
  constructor(pageSize = 4096) {
    this.encoder = new RamRecordEncoder({ targetPageSize: pageSize });
  }
}

export interface RecordCounters {
  pages: number;
  zero: number;
  bytes: number;
}

/** Bytes one page record can take at most (header + idstr + payload). */
export function maxRecordBytes(pageSize: number): number {
  return RamRecordEncoder.maxRecordSize(pageSize);
}

/**
 * Append the record for global page `page` of `block` at `pos`; returns the new position. Zero pages go as
 * ZERO (1-byte payload), others as PAGE with the bytes copied from the region. Caller checks capacity
 * (maxRecordBytes) and marks the page sent.
 */
export function writePageRecord(
  buf: Buffer, pos: number, chan: ChannelState, map: PageMap, reader: PageReader, block: BlockInfo, page: number, counters: RecordCounters,
): number {
  const byteOff = (page - block.firstPage) * map.pageSize;
  counters.pages++;
  if (reader.isZero(block, page)) {
    counters.zero++;
    return chan.encoder.recordInto(buf, pos, block.name, byteOff, null);
  }
  reader.locate(block, page);
  return chan.encoder.recordInto(buf, pos, block.name, byteOff, reader.win.bytes, reader.off);
}

/**
 * writePageRecord for a scatter-gather batch: the record header (or a whole ZERO record) goes into the slot's
 * small bytes at `pos`, a PAGE's payload becomes an iovec pointing into the region. Returns the new small
 * position. Caller checks slot.room ≥ 2 and maxRecordBytes of small room.
 */
export function writePageRecordIov(
  slot: SlotWriter, pos: number, chan: ChannelState, map: PageMap, reader: PageReader, block: BlockInfo, page: number, counters: RecordCounters,
): number {
  const byteOff = (page - block.firstPage) * map.pageSize;
  counters.pages++;
  if (reader.isZero(block, page)) {
    counters.zero++;
    return chan.encoder.recordInto(slot.small, pos, block.name, byteOff, null);
  }
  // The encoder's ZERO record has exactly the PAGE header in front of its fill byte (same CONTINUE / idstr
  // rules): turn the flag into PAGE (the flags are the low byte of the page-aligned offset) and drop the fill.
  const end = chan.encoder.recordInto(slot.small, pos, block.name, byteOff, null) - 1;
  slot.small[pos + 7] = (slot.small[pos + 7] & ~RAM_SAVE_FLAG_ZERO) | RAM_SAVE_FLAG_PAGE;
  reader.locate(block, page);
  slot.addPointer(end, reader.win.addr + reader.off, map.pageSize);
  return end;
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
