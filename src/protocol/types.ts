// Decoded record shapes shared by the decoders, encoders and RamImage. Every record carries `offset`:
// the absolute byte offset of its first byte in the decoded stream (nested PACKAGED bytes included).
import type { CommandName, UmemRequestName } from './constants.js';

/** One RAMBlock as announced by a MEM_SIZE record. */
export interface RamBlockInfo {
  idstr: string;
  /** used_length in bytes. */
  usedLength: number;
  /** Per-block page size, present on the wire only with postcopy-ram and a non-host page size (hugetlbfs). */
  pageSize?: number;
  /** block->mr->addr, present on the wire only with x-ignore-shared. */
  guestAddress?: number;
}

// ---- "ram" v4 records (inside a "ram" section, or a bare channel) ----

interface RamRecordBase {
  offset: number;
}
/** Common to page-carrying records: the RAMBlock and the page offset inside it. */
interface RamPageRecordBase extends RamRecordBase {
  /** RAMBlock idstr (resolved through the channel's last block when `continued`). */
  block: string;
  /** Byte offset of the target page inside the block (page aligned). */
  blockOffset: number;
  /** True when the record had RAM_SAVE_FLAG_CONTINUE (idstr omitted on the wire). */
  continued: boolean;
}
export interface MemSizeRecord extends RamRecordBase {
  kind: 'mem-size';
  totalBytes: number;
  blocks: RamBlockInfo[];
}
export interface ZeroPageRecord extends RamPageRecordBase {
  kind: 'zero';
  /** Fill byte (0 from every sender since QEMU 1.5). */
  fill: number;
}
export interface PageRecord extends RamPageRecordBase {
  kind: 'page';
  /** Target-page bytes: a subarray of the pushed chunk when it was not split across chunks. */
  data: Uint8Array;
}
export interface XbzrleRecord extends RamPageRecordBase {
  kind: 'xbzrle';
  /** Encoded delta (zero-run / literal-run pairs), validated against the page size. */
  data: Uint8Array;
}
export interface CompressedPageRecord extends RamPageRecordBase {
  kind: 'compressed-page';
  /** The zlib stream as on the wire. */
  data: Uint8Array;
  /** The inflated page (exactly one target page); absent when DecoderOptions.inflate is false. */
  page?: Uint8Array;
}
export interface EosRecord extends RamRecordBase {
  kind: 'eos';
}
export interface MultifdFlushRecord extends RamRecordBase {
  kind: 'multifd-flush';
}
export type RamPageRecord = ZeroPageRecord | PageRecord | XbzrleRecord | CompressedPageRecord;
export type RamRecord = MemSizeRecord | RamPageRecord | EosRecord | MultifdFlushRecord;

// ---- savevm framing ----

export interface FileHeaderRecord {
  kind: 'header';
  offset: number;
  version: number;
}
export interface ConfigurationRecord {
  kind: 'configuration';
  offset: number;
  machine: string;
  /** "configuration/target-page-bits" subsection, if sent. */
  targetPageBits?: number;
  /** "configuration/capabilities" subsection, if sent. */
  capabilities?: string[];
  /** "configuration/uuid" subsection (16 bytes), if sent. */
  uuid?: Uint8Array;
}
export type SectionType = 'start' | 'part' | 'end' | 'full';
export interface SectionHeaderRecord {
  kind: 'section';
  offset: number;
  type: SectionType;
  sectionId: number;
  /** For PART/END (which carry only the id) these come from the section's START. */
  idstr: string;
  instanceId: number;
  versionId: number;
}
/** How the end of an opaque device section was found (QEMU gives no length). */
export type DeviceEndMethod = 'size-option' | 'footer-scan';
export interface DeviceStateRecord {
  kind: 'device-state';
  offset: number;
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  /** The opaque vmstate bytes, footer excluded. */
  data: Uint8Array;
  endFoundBy: DeviceEndMethod;
}
export interface SectionFooterRecord {
  kind: 'footer';
  offset: number;
  sectionId: number;
}
export interface EofRecord {
  kind: 'eof';
  offset: number;
}
export interface VmDescriptionRecord {
  kind: 'vmdesc';
  offset: number;
  json: string;
}

export interface DiscardRange {
  /** Byte offset inside the block. */
  start: number;
  /** Length in bytes. */
  length: number;
}
interface CommandBase {
  kind: 'command';
  offset: number;
}
export type CommandRecord =
  | (CommandBase & { command: 'OPEN_RETURN_PATH' | 'POSTCOPY_LISTEN' | 'POSTCOPY_RUN' | 'ENABLE_COLO' | 'POSTCOPY_RESUME' | 'SWITCHOVER_START' })
  | (CommandBase & { command: 'PING'; value: number })
  /** len 16 carries both values; len 0 (dirty-bitmap-only postcopy) carries none. */
  | (CommandBase & { command: 'POSTCOPY_ADVISE'; pageSizeSummary?: number; targetPageSize?: number })
  | (CommandBase & { command: 'POSTCOPY_RAM_DISCARD'; version: number; idstr: string; ranges: DiscardRange[] })
  /** Followed by the nested records of the package, then a 'package-end' record. */
  | (CommandBase & { command: 'PACKAGED'; length: number })
  | (CommandBase & { command: 'RECV_BITMAP'; idstr: string });

/** End of a PACKAGED blob or of the seed's private postcopy section (offset = first byte after it). */
export interface PackageEndRecord {
  kind: 'package-end';
  offset: number;
}
/**
 * The June 2012 seed's private section 0x10 (spec-notes §1.8): be32 length + a nested device stream.
 * Followed by the nested records, 'package-end', then bare "ram" records up to a final EOS.
 */
export interface SeedPostcopyRecord {
  kind: 'seed-postcopy';
  offset: number;
  length: number;
}

export type StreamRecord =
  | FileHeaderRecord
  | ConfigurationRecord
  | SectionHeaderRecord
  | DeviceStateRecord
  | SectionFooterRecord
  | EofRecord
  | VmDescriptionRecord
  | CommandRecord
  | PackageEndRecord
  | SeedPostcopyRecord;

/** Everything StreamDecoder.push can return. */
export type DecodedRecord = StreamRecord | RamRecord;

// ---- return path (destination → source) ----

export type ReturnPathMessage =
  | { kind: 'shut'; offset: number; status: number }
  | { kind: 'pong'; offset: number; value: number }
  | {
      kind: 'req-pages';
      offset: number;
      /** Byte offset in the block. */
      start: number;
      /** Length in bytes. */
      length: number;
      /** Name sent on the wire (REQ_PAGES_ID); undefined for REQ_PAGES. */
      idstr?: string;
      /** The block the request refers to (idstr, or the previous REQ_PAGES_ID's block). */
      block: string;
    }
  | {
      kind: 'recv-bitmap';
      offset: number;
      idstr: string;
      /** Received-page bitmap exactly as on the wire: little-endian 64-bit words, bit i = target page i. */
      bitmap: Uint8Array;
    }
  | { kind: 'resume-ack'; offset: number; value: number }
  | { kind: 'switchover-ack'; offset: number };

// ---- the seed's page-request protocol ----

export interface UmemRequest {
  kind: 'umem-request';
  offset: number;
  cmd: UmemRequestName;
  /** Present for ON_DEMAND, BACKGROUND, REMOVE. */
  idstr?: string;
  /** The block the pages belong to (idstr, or the previous named request's block for *_CONT). */
  block?: string;
  /** Target-page indexes inside the block. */
  pages: number[];
}

// ---- options ----

/** Which MEM_SIZE blocks carry the optional be64 page_size (postcopy-ram + hugetlbfs block). */
export type MemSizePageSizeRule =
  /** Present only after POSTCOPY_ADVISE (or DecoderOptions.postcopyAdvised) and only where the bytes can only be a page size: see README. */
  | 'auto'
  | 'never'
  /** Explicit per-block answer (what QEMU does: its own block's page size != host page size). */
  | ((idstr: string) => boolean);

export interface DeviceSectionInfo {
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  type: SectionType;
}

export interface DecoderOptions {
  /** TARGET_PAGE_SIZE (4096 on x86). Power of two, 1 KiB..64 KiB. */
  targetPageSize?: number;
  /** Default 'auto'. */
  memSizePageSize?: MemSizePageSizeRule;
  /**
   * x-ignore-shared negotiated: every MEM_SIZE block carries a be64 guest address. Default: false, except
   * that StreamDecoder turns it on when the configuration section lists the "x-ignore-shared" capability.
   */
  memSizeGuestAddress?: boolean;
  /** Treat the stream as postcopy-advised from the start (e.g. a resumed stream). Default false. */
  postcopyAdvised?: boolean;
  /** Sections end with the 0x7e footer (send-section-footer; on for every 7.2 machine). Default true. */
  sectionFooters?: boolean;
  /** Payload size of an opaque device section when known (e.g. from a VM description); undefined = scan. */
  deviceSectionSize?: (section: DeviceSectionInfo) => number | undefined;
  /** Cap on one opaque device section's payload. Default 64 MiB. */
  maxDeviceSectionBytes?: number;
  /** Cap on the VM description JSON. Default 16 MiB. */
  maxVmDescriptionBytes?: number;
  /** Cap on the number of blocks in one MEM_SIZE record. Default 4096. */
  maxRamBlocks?: number;
  /** Known block list (bare channels; a MEM_SIZE record replaces it). Names/offsets are checked when known. */
  blocks?: readonly RamBlockInfo[];
  /** Inflate COMPRESS_PAGE records (checks they give exactly one page). Default true. */
  inflate?: boolean;
  /** Accept the seed's private 0x10 postcopy section (then bare records until EOS). Default true. */
  seedPostcopy?: boolean;
  /** Name of the RAM section's idstr. Default "ram". */
  ramSectionName?: string;
}

export interface ReturnPathDecoderOptions {
  /** Cap on a RECV_BITMAP body. Default 64 MiB (a 2 TiB block of 4 KiB pages). */
  maxBitmapBytes?: number;
  /** When known, RECV_BITMAP sizes and request names are checked against it. */
  blocks?: readonly RamBlockInfo[];
  targetPageSize?: number;
}

export interface EncoderOptions {
  targetPageSize?: number;
  /** Write the be64 page_size for blocks whose RamBlockInfo.pageSize is set. Default true. */
  memSizePageSize?: boolean;
  /** Write the be64 guest address for every block (x-ignore-shared). Default false. */
  memSizeGuestAddress?: boolean;
  /** Write the section footer. Default true. */
  sectionFooters?: boolean;
  /** zlib level for compressPage(). Default 1 (QEMU's default compress-level). */
  compressLevel?: number;
}

/** A list of buffers to write in order (header views plus page views taken from memory without copying). */
export type IoVec = Uint8Array[];
