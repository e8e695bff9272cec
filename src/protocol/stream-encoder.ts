// Encoder for the savevm framing. Each method returns the bytes of one element; encode(record)
// re-encodes any StreamDecoder record so decode → encode → decode round-trips.
import {
  MigCommand,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_POSTCOPY,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_SUBSECTION,
  QEMU_VM_VMDESCRIPTION,
} from './constants.js';
import { ByteWriter, latin1Bytes } from './bytes.js';
import { protocolError } from './errors.js';
import { RamRecordEncoder } from './ram-encoder.js';
import type { CommandRecord, DecodedRecord, DiscardRange, EncoderOptions, IoVec, SectionType } from './types.js';

export interface ConfigurationOptions {
  targetPageBits?: number;
  capabilities?: string[];
  uuid?: Uint8Array;
}

/** A command to encode: the CommandRecord shape without kind/offset. */
export type CommandSpec = CommandRecord extends infer C ? (C extends CommandRecord ? Omit<C, 'kind' | 'offset'> : never) : never;

const SECTION_TYPE_BYTE: Record<SectionType, number> = {
  start: QEMU_VM_SECTION_START,
  part: QEMU_VM_SECTION_PART,
  end: QEMU_VM_SECTION_END,
  full: QEMU_VM_SECTION_FULL,
};

function total(v: IoVec): number {
  let n = 0;
  for (const b of v) n += b.length;
  return n;
}

export class StreamEncoder {
  /** The main channel's ram record encoder (its CONTINUE state spans sections, as in QEMU). */
  readonly ram: RamRecordEncoder;
  readonly footers: boolean;

  constructor(opts: EncoderOptions = {}) {
    this.ram = new RamRecordEncoder(opts);
    this.footers = opts.sectionFooters ?? true;
  }

  header(version = QEMU_VM_FILE_VERSION): Uint8Array {
    return new ByteWriter(8).u32(QEMU_VM_FILE_MAGIC).u32(version).done();
  }

  configuration(machine: string, opts: ConfigurationOptions = {}): Uint8Array {
    const name = latin1Bytes(machine, 'configuration');
    if (name.length > 255) throw protocolError('ENCODE', `machine name of ${name.length} bytes`, -1, 'configuration', 'at most 255 bytes');
    const w = new ByteWriter(32).u8(QEMU_VM_CONFIGURATION).u32(name.length).bytes(name);
    const sub = (n: string): ByteWriter => w.u8(QEMU_VM_SUBSECTION).counted(`configuration/${n}`, 'configuration').u32(1);
    if (opts.targetPageBits !== undefined) sub('target-page-bits').u32(opts.targetPageBits);
    if (opts.capabilities !== undefined) {
      sub('capabilities').u32(opts.capabilities.length);
      for (const c of opts.capabilities) w.counted(c, 'configuration/capabilities');
    }
    if (opts.uuid !== undefined) {
      if (opts.uuid.length !== 16) throw protocolError('ENCODE', `uuid of ${opts.uuid.length} bytes`, -1, 'configuration/uuid', '16 bytes');
      sub('uuid').bytes(opts.uuid);
    }
    return w.done();
  }

  /** START / FULL header (name, instance, version) or PART / END header (id only). */
  section(type: SectionType, sectionId: number, idstr?: string, instanceId = 0, versionId = 0): Uint8Array {
    const w = new ByteWriter(32).u8(SECTION_TYPE_BYTE[type]).u32(sectionId);
    if (type === 'start' || type === 'full') {
      if (idstr === undefined) throw protocolError('ENCODE', 'section name missing', -1, `SECTION_${type.toUpperCase()}`, 'an idstr');
      w.counted(idstr, 'section header').u32(instanceId).u32(versionId);
    }
    return w.done();
  }

  footer(sectionId: number): Uint8Array {
    if (!this.footers) return new Uint8Array(0);
    return new ByteWriter(5).u8(QEMU_VM_SECTION_FOOTER).u32(sectionId).done();
  }

  command(c: CommandSpec): Uint8Array {
    const w = new ByteWriter(32);
    const body = new ByteWriter(16);
    switch (c.command) {
      case 'PING':
        body.u32(c.value);
        break;
      case 'POSTCOPY_ADVISE':
        if (c.pageSizeSummary !== undefined || c.targetPageSize !== undefined) {
          body.u64(c.pageSizeSummary ?? this.ram.pageSize).u64(c.targetPageSize ?? this.ram.pageSize);
        }
        break;
      case 'POSTCOPY_RAM_DISCARD':
        body.u8(c.version ?? 0).counted(c.idstr, 'POSTCOPY_RAM_DISCARD').u8(0);
        if (c.ranges.length === 0) throw protocolError('ENCODE', 'no ranges', -1, 'POSTCOPY_RAM_DISCARD', 'at least one range');
        for (const r of c.ranges) body.u64(r.start).u64(r.length);
        break;
      case 'PACKAGED':
        body.u32(c.length);
        break;
      case 'RECV_BITMAP':
        body.counted(c.idstr, 'RECV_BITMAP');
        break;
    }
    const b = body.done();
    if (b.length > 0xffff) throw protocolError('ENCODE', `command body of ${b.length} bytes`, -1, c.command, 'at most 65535 bytes');
    return w.u8(QEMU_VM_COMMAND).u16(MigCommand[c.command]).u16(b.length).bytes(b).done();
  }

  /**
   * POSTCOPY_RAM_DISCARD commands for a block, split like QEMU (≤ 12 ranges per command).
   */
  discard(idstr: string, ranges: readonly DiscardRange[], perCommand = 12): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < ranges.length; i += perCommand) {
      out.push(this.command({ command: 'POSTCOPY_RAM_DISCARD', version: 0, idstr, ranges: ranges.slice(i, i + perCommand) }));
    }
    return out;
  }

  /** PACKAGED command followed by the nested stream bytes. */
  packaged(nested: IoVec): IoVec {
    return [this.command({ command: 'PACKAGED', length: total(nested) }), ...nested];
  }

  /** The seed's private 0x10 section: be32 length + nested device stream (which should end with EOF). */
  seedPostcopy(nested: IoVec): IoVec {
    return [new ByteWriter(5).u8(QEMU_VM_POSTCOPY).u32(total(nested)).done(), ...nested];
  }

  eof(): Uint8Array {
    return Uint8Array.of(QEMU_VM_EOF);
  }

  vmDescription(json: string): Uint8Array {
    const body = Buffer.from(json, 'utf8');
    return new ByteWriter(5 + body.length).u8(QEMU_VM_VMDESCRIPTION).u32(body.length).bytes(body).done();
  }

  /**
   * Re-encodes one decoded record. PACKAGED / seed-postcopy use the record's length, so the nested
   * records must be re-encoded to the same size (they are, by a round trip); package-end writes nothing.
   */
  encode(r: DecodedRecord): IoVec {
    switch (r.kind) {
      case 'header':
        return [this.header(r.version)];
      case 'configuration':
        return [this.configuration(r.machine, { targetPageBits: r.targetPageBits, capabilities: r.capabilities, uuid: r.uuid })];
      case 'section':
        return [this.section(r.type, r.sectionId, r.idstr, r.instanceId, r.versionId)];
      case 'device-state':
        return [r.data];
      case 'footer':
        return [new ByteWriter(5).u8(QEMU_VM_SECTION_FOOTER).u32(r.sectionId).done()];
      case 'eof':
        return [this.eof()];
      case 'vmdesc':
        return [this.vmDescription(r.json)];
      case 'command':
        return [this.command(r)];
      case 'package-end':
        return [];
      case 'seed-postcopy':
        return [new ByteWriter(5).u8(QEMU_VM_POSTCOPY).u32(r.length).done()];
      default:
        return this.ram.encode(r);
    }
  }

  /** Encodes a whole record list into one buffer (tests, files). */
  encodeAll(records: Iterable<DecodedRecord>): Buffer {
    const parts: Uint8Array[] = [];
    for (const r of records) for (const b of this.encode(r)) parts.push(b);
    return Buffer.concat(parts);
  }
}
