// Incremental decoder of a QEMU savevm stream (file version 3) with "ram" v4 sections, commands
// (PACKAGED blobs decoded in place as nested records), VM description, and the seed's 0x10 section.
//
// Opaque device sections carry no length. Their end is found like this (see README, "Device sections"):
//  1. DecoderOptions.deviceSectionSize(section) gives the payload size (e.g. vmDescriptionSectionSizes()
//     of an earlier pass): the footer must then sit exactly there.
//  2. Otherwise the payload is scanned for the footer, 0x7e + be32 section id of this section, and a
//     candidate is accepted only if what follows is a valid next element: EOF (then end of input or a
//     VM description), START/FULL of an unused section id with a printable 1..255-byte name, PART/END
//     of a started and not ended section, a known command with a valid length, the seed's 0x10
//     section, or the end of the enclosing PACKAGED blob. Any other candidate is device data.
//  A false match needs the device's own bytes to contain 7e + its own section id + such a header; it
//  cannot be excluded in principle (QEMU itself never needs to: it parses the vmstate fields). Without
//  footers (pre-2.4 machines) and without sizes, the end cannot be found: DEVICE_SECTION_END error.
import {
  COMMAND_NAMES,
  MigCommand,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_FILE_VERSION_COMPAT,
  QEMU_VM_POSTCOPY,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMU_VM_SUBSECTION,
  QEMU_VM_VMDESCRIPTION,
  RAM_SECTION_VERSION,
  type CommandName,
} from './constants.js';
import { be16, be32, be64, latin1 } from './bytes.js';
import { protocolError } from './errors.js';
import { IncrementalDecoder, NEED } from './incremental.js';
import { RamChannel } from './ram-channel.js';
import type {
  CommandRecord,
  ConfigurationRecord,
  DecodedRecord,
  DecoderOptions,
  DeviceSectionInfo,
  DiscardRange,
  RamBlockInfo,
  RamRecord,
  SectionType,
} from './types.js';

type State = 'header' | 'top' | 'ram' | 'footer' | 'device' | 'after-eof' | 'done' | 'seed-ram' | 'seed-done';

interface SectionEntry {
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  isRam: boolean;
  /** Opened by START (so PART/END may follow). */
  started: boolean;
  ended: boolean;
}

interface Package {
  end: number;
  seed: boolean;
}

const TYPE_NAMES: Record<number, SectionType> = {
  [QEMU_VM_SECTION_START]: 'start',
  [QEMU_VM_SECTION_PART]: 'part',
  [QEMU_VM_SECTION_END]: 'end',
  [QEMU_VM_SECTION_FULL]: 'full',
};

/** Command lengths QEMU's loader requires exactly (-1: variable). */
const FIXED_LEN: Record<CommandName, number> = {
  OPEN_RETURN_PATH: 0,
  PING: 4,
  POSTCOPY_ADVISE: -1,
  POSTCOPY_LISTEN: 0,
  POSTCOPY_RUN: 0,
  POSTCOPY_RAM_DISCARD: -1,
  PACKAGED: 4,
  ENABLE_COLO: 0,
  POSTCOPY_RESUME: 0,
  RECV_BITMAP: -1,
  SWITCHOVER_START: 0,
};

const MAX_PACKAGE_DEPTH = 4;

export class StreamDecoder extends IncrementalDecoder<DecodedRecord> {
  private readonly channel: RamChannel;
  private readonly footers: boolean;
  private readonly sizeOf: DecoderOptions['deviceSectionSize'];
  private readonly maxDevice: number;
  private readonly maxVmDesc: number;
  private readonly seedAllowed: boolean;
  private readonly ramName: string;
  private state: State;
  private readonly sections = new Map<number, SectionEntry>();
  private cur: SectionEntry | null = null;
  private curType: SectionType = 'full';
  private readonly packages: Package[] = [];
  private scanFrom = 0;
  private hardEnd = false;
  private lastKind = '';
  /** memSizeGuestAddress was given explicitly (else the configuration's capabilities decide it). */
  private readonly guestAddressFixed: boolean;
  private readonly deviceSizes = new Map<string, number>();

  constructor(opts: DecoderOptions & { header?: boolean; sections?: readonly DeviceSectionInfo[] } = {}) {
    super();
    this.channel = new RamChannel(opts);
    this.footers = opts.sectionFooters ?? true;
    this.sizeOf = opts.deviceSectionSize;
    this.maxDevice = opts.maxDeviceSectionBytes ?? 64 * 1024 * 1024;
    this.maxVmDesc = opts.maxVmDescriptionBytes ?? 16 * 1024 * 1024;
    this.seedAllowed = opts.seedPostcopy ?? true;
    this.ramName = opts.ramSectionName ?? 'ram';
    this.guestAddressFixed = opts.memSizeGuestAddress !== undefined;
    this.state = opts.header === false ? 'top' : 'header';
    for (const s of opts.sections ?? []) {
      this.sections.set(s.sectionId, {
        sectionId: s.sectionId,
        idstr: s.idstr,
        instanceId: s.instanceId,
        versionId: s.versionId,
        isRam: s.idstr === this.ramName,
        started: true,
        ended: false,
      });
    }
  }

  /** RAM blocks from the last MEM_SIZE (or DecoderOptions.blocks); null before any. */
  get blocks(): readonly RamBlockInfo[] | null {
    return this.channel.blockList;
  }

  /** Sections seen so far (e.g. to continue a recovered stream with `sections`). */
  get knownSections(): DeviceSectionInfo[] {
    return [...this.sections.values()].map((s) => ({ sectionId: s.sectionId, idstr: s.idstr, instanceId: s.instanceId, versionId: s.versionId, type: s.started ? 'start' : 'full' }));
  }

  /** Payload sizes of the opaque device sections decoded so far, keyed "idstr/instanceId". */
  get deviceSectionSizes(): ReadonlyMap<string, number> {
    return this.deviceSizes;
  }

  /** True once the stream's final element (EOF, VM description, or the seed's final EOS) was decoded. */
  get complete(): boolean {
    return this.state === 'after-eof' || this.state === 'done' || this.state === 'seed-done';
  }

  protected describe(): string {
    switch (this.state) {
      case 'header':
        return 'file header';
      case 'ram':
      case 'seed-ram':
        return `ram record${this.cur ? ` in section ${this.cur.sectionId} "${this.cur.idstr}"` : ''}`;
      case 'device':
      case 'footer':
        return `section ${this.cur?.sectionId} "${this.cur?.idstr}"`;
      default:
        return 'top-level element';
    }
  }

  protected override wantsStepAtEnd(): boolean {
    const top = this.packages[this.packages.length - 1];
    return top !== undefined && top.end === this.pos;
  }

  protected finish(): void {
    if (this.packages.length > 0) {
      const top = this.packages[this.packages.length - 1];
      throw protocolError('TRUNCATED', `input ends ${top.end - this.pos} bytes before the end of a ${top.seed ? 'postcopy section' : 'PACKAGED blob'}`, this.pos, this.describe(), 'the rest of the package');
    }
    if (!this.complete) {
      const what = this.state === 'header' ? 'the file header' : this.state === 'seed-ram' ? 'the final EOS of the postcopy page stream' : 'QEMU_VM_EOF';
      throw protocolError('TRUNCATED', 'input ends before the end of the stream', this.pos, this.describe(), what);
    }
  }

  private needBytes(n: number): number {
    this.need = n;
    return NEED;
  }

  private emit(r: DecodedRecord): void {
    this.out.push(r);
    this.lastKind = r.kind;
  }

  protected step(d: Uint8Array, p: number, end: number): number {
    this.hardEnd = this.atEnd;
    const pkg = this.packages[this.packages.length - 1];
    if (pkg !== undefined) {
      if (this.pos === pkg.end) {
        if (this.state !== 'top') {
          throw protocolError('TRUNCATED', 'package ends inside an element', this.pos, this.describe(), 'the package to end between elements');
        }
        this.packages.pop();
        this.emit({ kind: 'package-end', offset: this.pos });
        if (pkg.seed) this.state = 'seed-ram';
        return p;
      }
      const limit = p + (pkg.end - this.pos);
      if (limit <= end) {
        end = limit;
        this.hardEnd = true;
      }
    }
    const q = this.dispatch(d, p, end);
    if (q === NEED && this.hardEnd && pkg !== undefined && end - p < this.need && this.pos + (end - p) === pkg.end) {
      throw protocolError('TRUNCATED', `element needs ${this.need} bytes but the package has ${end - p} left`, this.pos, this.describe(), 'elements inside the package');
    }
    return q;
  }

  private dispatch(d: Uint8Array, p: number, end: number): number {
    switch (this.state) {
      case 'header':
        return this.parseHeader(d, p, end);
      case 'top':
        return this.parseTop(d, p, end);
      case 'ram':
      case 'seed-ram':
        return this.parseRam(d, p, end);
      case 'footer':
        return this.parseFooter(d, p, end);
      case 'device':
        return this.parseDevice(d, p, end);
      case 'after-eof':
        return this.parseAfterEof(d, p, end);
      case 'done':
      case 'seed-done':
        if (p >= end) return this.needBytes(1);
        throw protocolError('TRAILING_DATA', `byte 0x${d[p].toString(16)} after the end of the stream`, this.pos, 'after end of stream', 'no more data');
    }
  }

  private parseHeader(d: Uint8Array, p: number, end: number): number {
    if (end - p < 8) return this.needBytes(8);
    const magic = be32(d, p);
    if (magic !== QEMU_VM_FILE_MAGIC) {
      throw protocolError('BAD_MAGIC', `magic 0x${magic.toString(16).padStart(8, '0')}`, this.pos, 'file header', 'QEMU_VM_FILE_MAGIC 0x5145564d ("QEVM")');
    }
    const version = be32(d, p + 4);
    if (version !== QEMU_VM_FILE_VERSION) {
      throw protocolError('BAD_VERSION', version === QEMU_VM_FILE_VERSION_COMPAT ? 'obsolete file version 2' : `file version ${version}`, this.pos + 4, 'file header', 'file version 3');
    }
    this.emit({ kind: 'header', offset: this.pos, version });
    this.state = 'top';
    return p + 8;
  }

  private parseTop(d: Uint8Array, p: number, end: number): number {
    if (end - p < 1) return this.needBytes(1);
    const t = d[p];
    switch (t) {
      case QEMU_VM_EOF:
        this.emit({ kind: 'eof', offset: this.pos });
        if (this.packages.length === 0) this.state = 'after-eof';
        return p + 1;
      case QEMU_VM_SECTION_START:
      case QEMU_VM_SECTION_FULL:
        return this.parseSectionStart(d, p, end, t);
      case QEMU_VM_SECTION_PART:
      case QEMU_VM_SECTION_END:
        return this.parseSectionPart(d, p, end, t);
      case QEMU_VM_COMMAND:
        return this.parseCommand(d, p, end);
      case QEMU_VM_CONFIGURATION:
        if (this.lastKind === 'header') return this.parseConfiguration(d, p, end);
        break;
      case QEMU_VM_POSTCOPY:
        if (this.seedAllowed && this.packages.length === 0) return this.parseSeedPostcopy(d, p, end);
        break;
    }
    throw protocolError('UNKNOWN_SECTION_TYPE', `section type 0x${t.toString(16)}`, this.pos, 'top-level element', 'EOF, SECTION_START/PART/END/FULL, COMMAND (CONFIGURATION only after the header)');
  }

  private parseSectionStart(d: Uint8Array, p: number, end: number, t: number): number {
    if (end - p < 6) return this.needBytes(6);
    const sectionId = be32(d, p + 1);
    const n = d[p + 5];
    const ctx = `section ${sectionId} header`;
    if (n === 0) throw protocolError('BAD_IDSTR', 'empty section name', this.pos + 5, ctx, 'a name of 1..255 bytes');
    if (end - p < 6 + n + 8) return this.needBytes(6 + n + 8);
    if (this.sections.has(sectionId)) {
      throw protocolError('DUPLICATE_SECTION_ID', `section id ${sectionId} started twice`, this.pos + 1, ctx, 'a new section id');
    }
    const idstr = latin1(d, p + 6, n);
    const instanceId = be32(d, p + 6 + n);
    const versionId = be32(d, p + 10 + n);
    const isRam = idstr === this.ramName;
    if (isRam && versionId !== RAM_SECTION_VERSION) {
      throw protocolError('BAD_VERSION', `"ram" section version ${versionId}`, this.pos + 10 + n, ctx, 'ram section version 4');
    }
    const type = TYPE_NAMES[t];
    const entry: SectionEntry = { sectionId, idstr, instanceId, versionId, isRam, started: type === 'start', ended: false };
    this.sections.set(sectionId, entry);
    this.enterSection(entry, type);
    this.emit({ kind: 'section', offset: this.pos, type, sectionId, idstr, instanceId, versionId });
    return p + 14 + n;
  }

  private parseSectionPart(d: Uint8Array, p: number, end: number, t: number): number {
    if (end - p < 5) return this.needBytes(5);
    const sectionId = be32(d, p + 1);
    const entry = this.sections.get(sectionId);
    const type = TYPE_NAMES[t];
    if (entry === undefined || !entry.started || entry.ended) {
      throw protocolError('UNKNOWN_SECTION_ID', `section id ${sectionId} ${entry === undefined ? 'was never started' : entry.ended ? 'already ended' : 'was a FULL section'}`, this.pos + 1, `SECTION_${type.toUpperCase()}`, 'the id of a section opened by SECTION_START');
    }
    if (type === 'end') entry.ended = true;
    this.enterSection(entry, type);
    this.emit({ kind: 'section', offset: this.pos, type, sectionId, idstr: entry.idstr, instanceId: entry.instanceId, versionId: entry.versionId });
    return p + 5;
  }

  private enterSection(entry: SectionEntry, type: SectionType): void {
    this.cur = entry;
    this.curType = type;
    this.scanFrom = 0;
    this.state = entry.isRam ? 'ram' : 'device';
  }

  private parseRam(d: Uint8Array, p: number, end: number): number {
    const out = this.out as RamRecord[];
    const before = out.length;
    const q = this.channel.parse(d, p, end, this.pos, out);
    if (q === NEED) return this.needBytes(this.channel.need);
    const rec = out[out.length - 1];
    if (out.length > before) this.lastKind = rec.kind;
    if (rec.kind === 'eos') {
      if (this.state === 'seed-ram') this.state = 'seed-done';
      else this.state = this.footers ? 'footer' : 'top';
    }
    return q;
  }

  private parseFooter(d: Uint8Array, p: number, end: number): number {
    if (end - p < 5) return this.needBytes(5);
    const cur = this.cur!;
    const id = be32(d, p + 1);
    if (d[p] !== QEMU_VM_SECTION_FOOTER || id !== cur.sectionId) {
      throw protocolError('BAD_FOOTER', d[p] !== QEMU_VM_SECTION_FOOTER ? `byte 0x${d[p].toString(16)} instead of the footer` : `footer names section ${id}`, this.pos, `section ${cur.sectionId} "${cur.idstr}" footer`, `0x7e + be32 ${cur.sectionId}`);
    }
    this.emit({ kind: 'footer', offset: this.pos, sectionId: cur.sectionId });
    this.state = 'top';
    return p + 5;
  }

  private parseDevice(d: Uint8Array, p: number, end: number): number {
    const cur = this.cur!;
    const ctx = `section ${cur.sectionId} "${cur.idstr}"`;
    const info: DeviceSectionInfo = { sectionId: cur.sectionId, idstr: cur.idstr, instanceId: cur.instanceId, versionId: cur.versionId, type: this.curType };
    const given = this.sizeOf?.(info);
    if (given !== undefined) {
      if (!Number.isInteger(given) || given < 0 || given > this.maxDevice) {
        throw protocolError('BAD_LENGTH', `device section size ${given}`, this.pos, ctx, `0..${this.maxDevice} bytes`);
      }
      const total = given + (this.footers ? 5 : 0);
      if (end - p < total) return this.needBytes(total);
      if (this.footers) {
        const f = p + given;
        if (d[f] !== QEMU_VM_SECTION_FOOTER || be32(d, f + 1) !== cur.sectionId) {
          throw protocolError('BAD_FOOTER', `no footer after the ${given} bytes given for this section`, this.pos + given, ctx, `0x7e + be32 ${cur.sectionId}`);
        }
      }
      return this.finishDevice(d, p, p + given, 'size-option');
    }
    if (!this.footers) {
      throw protocolError('DEVICE_SECTION_END', 'cannot find the end of an opaque device section without section footers', this.pos, ctx, 'DecoderOptions.deviceSectionSize for this section');
    }
    const id = cur.sectionId;
    let i = p + this.scanFrom;
    for (;;) {
      const c = d.indexOf(QEMU_VM_SECTION_FOOTER, i);
      if (c < 0 || c >= end) {
        this.scanFrom = end - p;
        break;
      }
      if (c - p > this.maxDevice) {
        this.scanFrom = c - p;
        break;
      }
      if (c + 5 > end) {
        this.scanFrom = c - p;
        break;
      }
      if (be32(d, c + 1) === id) {
        const v = this.plausibleNext(d, p, c + 5, end);
        if (v === 1) return this.finishDevice(d, p, c, 'footer-scan');
        if (v === 0) {
          this.scanFrom = c - p;
          break;
        }
      }
      i = c + 1;
    }
    if (this.scanFrom > this.maxDevice) {
      throw protocolError('DEVICE_SECTION_END', `no footer of section ${id} within ${this.maxDevice} bytes`, this.pos, ctx, 'the section footer (DecoderOptions.maxDeviceSectionBytes)');
    }
    this.scanning = true;
    return this.needBytes(end - p + 1);
  }

  private finishDevice(d: Uint8Array, p: number, dataEnd: number, how: 'size-option' | 'footer-scan'): number {
    const cur = this.cur!;
    const key = `${cur.idstr}/${cur.instanceId}`;
    this.deviceSizes.set(key, (this.deviceSizes.get(key) ?? 0) + (dataEnd - p));
    this.emit({ kind: 'device-state', offset: this.pos, sectionId: cur.sectionId, idstr: cur.idstr, instanceId: cur.instanceId, versionId: cur.versionId, data: d.subarray(p, dataEnd), endFoundBy: how });
    this.scanFrom = 0;
    if (this.footers) {
      this.emit({ kind: 'footer', offset: this.pos + (dataEnd - p), sectionId: cur.sectionId });
      this.state = 'top';
      return dataEnd + 5;
    }
    this.state = 'top';
    return dataEnd;
  }

  /**
   * Whether d[q..] (q = just after a candidate footer; p = element start) can be the next element.
   * 1 = yes, -1 = no, 0 = need more bytes.
   */
  private plausibleNext(d: Uint8Array, p: number, q: number, end: number): number {
    const absQ = this.pos + (q - p);
    const pkg = this.packages[this.packages.length - 1];
    if (pkg !== undefined && absQ === pkg.end) return 1;
    const hard = this.hardEnd;
    const avail = end - q;
    const lacking = (): number => (hard ? -1 : 0);
    if (avail < 1) return hard && pkg === undefined ? 1 : lacking();
    const t = d[q];
    switch (t) {
      case QEMU_VM_EOF: {
        if (pkg !== undefined) return 1;
        if (avail < 2) return hard ? 1 : 0;
        if (d[q + 1] !== QEMU_VM_VMDESCRIPTION) return -1;
        if (avail < 6) return lacking();
        return be32(d, q + 2) <= this.maxVmDesc ? 1 : -1;
      }
      case QEMU_VM_SECTION_START:
      case QEMU_VM_SECTION_FULL: {
        if (avail < 6) return lacking();
        if (this.sections.has(be32(d, q + 1)) || be32(d, q + 1) === this.cur!.sectionId) return -1;
        const n = d[q + 5];
        if (n === 0) return -1;
        if (avail < 6 + n + 8) return lacking();
        for (let k = 0; k < n; k++) {
          const ch = d[q + 6 + k];
          if (ch < 0x20 || ch > 0x7e) return -1;
        }
        if (be32(d, q + 6 + n) >= 0x80000000 || be32(d, q + 10 + n) >= 0x80000000) return -1;
        return 1;
      }
      case QEMU_VM_SECTION_PART:
      case QEMU_VM_SECTION_END: {
        if (avail < 5) return lacking();
        const e = this.sections.get(be32(d, q + 1));
        if (e === undefined || !e.started) return -1;
        // The current section is still open when it is an END; a PART of itself cannot follow an END.
        if (e.ended && !(e === this.cur && this.curType === 'end')) return -1;
        if (e === this.cur && this.curType === 'end') return -1;
        return 1;
      }
      case QEMU_VM_COMMAND: {
        if (avail < 5) return lacking();
        const name = COMMAND_NAMES[be16(d, q + 1)];
        if (name === undefined) return -1;
        const len = be16(d, q + 3);
        const fixed = FIXED_LEN[name];
        if (fixed >= 0) return len === fixed ? 1 : -1;
        if (name === 'POSTCOPY_ADVISE') return len === 0 || len === 16 ? 1 : -1;
        if (name === 'RECV_BITMAP') return len >= 2 ? 1 : -1;
        return len >= 3 + 1 + 16 ? 1 : -1;
      }
      case QEMU_VM_POSTCOPY:
        if (!this.seedAllowed || pkg !== undefined) return -1;
        return avail < 5 ? lacking() : 1;
      default:
        return -1;
    }
  }

  private parseAfterEof(d: Uint8Array, p: number, end: number): number {
    if (end - p < 1) return this.needBytes(1);
    if (d[p] !== QEMU_VM_VMDESCRIPTION) {
      throw protocolError('TRAILING_DATA', `byte 0x${d[p].toString(16)} after QEMU_VM_EOF`, this.pos, 'after EOF', 'end of stream or QEMU_VM_VMDESCRIPTION (0x06)');
    }
    if (end - p < 5) return this.needBytes(5);
    const len = be32(d, p + 1);
    if (len > this.maxVmDesc) {
      throw protocolError('BAD_LENGTH', `VM description of ${len} bytes`, this.pos + 1, 'VMDESCRIPTION', `at most ${this.maxVmDesc} bytes (DecoderOptions.maxVmDescriptionBytes)`);
    }
    if (end - p < 5 + len) return this.needBytes(5 + len);
    const json = Buffer.from(d.buffer, d.byteOffset + p + 5, len).toString('utf8');
    this.emit({ kind: 'vmdesc', offset: this.pos, json });
    this.state = 'done';
    return p + 5 + len;
  }

  private parseConfiguration(d: Uint8Array, p: number, end: number): number {
    const ctx = 'configuration section';
    if (end - p < 5) return this.needBytes(5);
    const n = be32(d, p + 1);
    if (n > 255) throw protocolError('BAD_LENGTH', `machine name of ${n} bytes`, this.pos + 1, ctx, 'at most 255 bytes');
    let q = p + 5;
    if (end - q < n) return this.needBytes(5 + n);
    const rec: ConfigurationRecord = { kind: 'configuration', offset: this.pos, machine: latin1(d, q, n) };
    q += n;
    // Subsections have no terminator: peek for 0x05 + a "configuration/" name, as QEMU does.
    for (;;) {
      if (end - q < 1) {
        if (this.hardEnd) break;
        return this.needBytes(q - p + 1);
      }
      if (d[q] !== QEMU_VM_SUBSECTION) break;
      if (end - q < 2) return this.needBytes(q - p + 2);
      const ln = d[q + 1];
      if (end - q < 2 + ln + 4) return this.needBytes(q - p + 2 + ln + 4);
      const name = latin1(d, q + 2, ln);
      if (!name.startsWith('configuration/')) break;
      const at = this.pos + (q - p);
      let r = q + 2 + ln + 4;
      if (name === 'configuration/target-page-bits') {
        if (end - r < 4) return this.needBytes(r - p + 4);
        rec.targetPageBits = be32(d, r);
        r += 4;
      } else if (name === 'configuration/capabilities') {
        if (end - r < 4) return this.needBytes(r - p + 4);
        const count = be32(d, r);
        if (count > 64) throw protocolError('BAD_LENGTH', `${count} capabilities`, at, ctx, 'at most 64 capabilities');
        r += 4;
        const caps: string[] = [];
        for (let k = 0; k < count; k++) {
          if (end - r < 1) return this.needBytes(r - p + 1);
          const cl = d[r];
          if (end - r < 1 + cl) return this.needBytes(r - p + 1 + cl);
          caps.push(latin1(d, r + 1, cl));
          r += 1 + cl;
        }
        rec.capabilities = caps;
      } else if (name === 'configuration/uuid') {
        if (end - r < 16) return this.needBytes(r - p + 16);
        rec.uuid = d.slice(r, r + 16);
        r += 16;
      } else {
        throw protocolError('BAD_SUBSECTION', `unknown subsection ${JSON.stringify(name)}`, at, ctx, 'configuration/target-page-bits, /capabilities or /uuid');
      }
      q = r;
    }
    // x-ignore-shared is a validated capability: when on, the source lists it here (QEMU ≥ 4.0), and
    // every MEM_SIZE block then carries its guest address.
    if (!this.guestAddressFixed) this.channel.guestAddress = rec.capabilities?.includes('x-ignore-shared') ?? false;
    this.emit(rec);
    return q;
  }

  private parseSeedPostcopy(d: Uint8Array, p: number, end: number): number {
    if (end - p < 5) return this.needBytes(5);
    const length = be32(d, p + 1);
    this.emit({ kind: 'seed-postcopy', offset: this.pos, length });
    this.packages.push({ end: this.pos + 5 + length, seed: true });
    return p + 5;
  }

  private parseCommand(d: Uint8Array, p: number, end: number): number {
    if (end - p < 5) return this.needBytes(5);
    const cmd = be16(d, p + 1);
    const len = be16(d, p + 3);
    const command = COMMAND_NAMES[cmd];
    if (command === undefined) {
      throw protocolError('UNKNOWN_COMMAND', `command ${cmd}`, this.pos + 1, 'QEMU_VM_COMMAND', 'a MIG_CMD between 1 and 11');
    }
    const ctx = `command ${command}`;
    const fixed = FIXED_LEN[command];
    const badLen = (want: string): never => {
      throw protocolError('BAD_LENGTH', `length ${len}`, this.pos + 3, ctx, want);
    };
    if (fixed >= 0 && len !== fixed) badLen(`length ${fixed}`);
    if (command === 'POSTCOPY_ADVISE' && len !== 0 && len !== 16) badLen('length 0 or 16');
    if (command === 'RECV_BITMAP' && len < 2) badLen('length 1 + name length');
    if (command === 'POSTCOPY_RAM_DISCARD' && len < 3 + 1 + 16) badLen('at least one range after version, name and NUL');
    if (end - p < 5 + len) return this.needBytes(5 + len);
    const b = p + 5;
    const offset = this.pos;
    let rec: CommandRecord;
    switch (command) {
      case 'PING':
        rec = { kind: 'command', offset, command, value: be32(d, b) };
        break;
      case 'POSTCOPY_ADVISE':
        if (len === 16) {
          const pageSizeSummary = be64(d, b, offset + 5, ctx);
          const targetPageSize = be64(d, b + 8, offset + 13, ctx);
          if (targetPageSize !== this.channel.pageSize) {
            throw protocolError('BAD_COMMAND', `target page size ${targetPageSize}`, offset + 13, ctx, `the decoder's target page size ${this.channel.pageSize}`);
          }
          this.channel.advised = true;
          this.channel.adviseSummary = pageSizeSummary;
          rec = { kind: 'command', offset, command, pageSizeSummary, targetPageSize };
        } else {
          rec = { kind: 'command', offset, command };
        }
        break;
      case 'POSTCOPY_RAM_DISCARD':
        rec = this.parseDiscard(d, b, len, offset);
        break;
      case 'PACKAGED': {
        const length = be32(d, b);
        const pkgEnd = offset + 9 + length;
        const outer = this.packages[this.packages.length - 1];
        if (this.packages.length >= MAX_PACKAGE_DEPTH) {
          throw protocolError('BAD_COMMAND', 'PACKAGED nested too deeply', offset, ctx, `at most ${MAX_PACKAGE_DEPTH} levels`);
        }
        if (outer !== undefined && pkgEnd > outer.end) {
          throw protocolError('BAD_LENGTH', `package of ${length} bytes overruns the enclosing package`, offset + 5, ctx, `at most ${outer.end - offset - 9} bytes`);
        }
        this.packages.push({ end: pkgEnd, seed: false });
        rec = { kind: 'command', offset, command, length };
        break;
      }
      case 'RECV_BITMAP': {
        const n = d[b];
        if (n === 0 || len !== 1 + n) badLen(`1 + name length (${1 + n}), name not empty`);
        rec = { kind: 'command', offset, command, idstr: latin1(d, b + 1, n) };
        break;
      }
      default:
        rec = { kind: 'command', offset, command } as CommandRecord;
    }
    this.emit(rec);
    return p + 5 + len;
  }

  private parseDiscard(d: Uint8Array, b: number, len: number, offset: number): CommandRecord {
    const ctx = 'command POSTCOPY_RAM_DISCARD';
    const version = d[b];
    if (version !== 0) throw protocolError('BAD_COMMAND', `discard version ${version}`, offset + 5, ctx, 'version 0');
    const n = d[b + 1];
    if (n === 0) throw protocolError('BAD_IDSTR', 'empty block name', offset + 6, ctx, 'a block name of 1..255 bytes');
    const rest = len - 3 - n;
    if (rest < 16 || rest % 16 !== 0) {
      throw protocolError('BAD_LENGTH', `length ${len} leaves ${rest} bytes of ranges`, offset + 3, ctx, 'a positive multiple of 16 bytes of (start, length) ranges');
    }
    const idstr = latin1(d, b + 2, n);
    if (d[b + 2 + n] !== 0) throw protocolError('BAD_COMMAND', 'missing NUL after the block name', offset + 7 + n, ctx, 'a 0 byte');
    const block = this.channel.blockMap?.get(idstr);
    if (this.channel.blockMap !== null && block === undefined) {
      throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(idstr)} is not in the block list`, offset + 7, ctx, 'a block announced by MEM_SIZE');
    }
    const ranges: DiscardRange[] = [];
    const ps = this.channel.pageSize;
    for (let r = b + 3 + n; r < b + len; r += 16) {
      const at = offset + 5 + (r - b);
      const start = be64(d, r, at, ctx);
      const length = be64(d, r + 8, at + 8, ctx);
      if (start % ps !== 0 || length % ps !== 0) {
        throw protocolError('BAD_OFFSET', `range (0x${start.toString(16)}, 0x${length.toString(16)}) not page aligned`, at, ctx, `multiples of ${ps}`);
      }
      if (block !== undefined && start + length > block.usedLength) {
        throw protocolError('BAD_OFFSET', `range (0x${start.toString(16)}, 0x${length.toString(16)}) beyond block ${JSON.stringify(idstr)}`, at, ctx, `a range inside the ${block.usedLength}-byte block`);
      }
      ranges.push({ start, length });
    }
    return { kind: 'command', offset, command: 'POSTCOPY_RAM_DISCARD', version, idstr, ranges };
  }
}

export { MigCommand };
