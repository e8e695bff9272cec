// Summaries of decoded migration streams for postcopy-inspect: built record by record, so a stream is
// never held in memory as a record list.
import type { DecodedRecord, RamBlockInfo, ReturnPathMessage } from '../protocol/index.js';

export interface SectionSummary {
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  /** How many START / PART / END / FULL headers this section id had. */
  types: Record<string, number>;
  /** Bytes from the section headers to the ends of their footers, summed. */
  bytes: number;
}

export interface CommandSummary {
  offset: number;
  command: string;
  /** Command-specific details (PING value, ADVISE page sizes, DISCARD ranges, PACKAGED length). */
  detail?: Record<string, unknown>;
}

export interface StreamSummary {
  bytes: number;
  fileVersion?: number;
  machine?: string;
  sections: SectionSummary[];
  ramBlocks: RamBlockInfo[];
  /** Record counts by kind over the whole stream (commands as "command:NAME"). */
  records: Record<string, number>;
  /** Page-record counts per RAM block and kind (zero, page, xbzrle, compressed-page). */
  pagesPerBlock: Record<string, Record<string, number>>;
  commands: CommandSummary[];
  /** Bytes of page payload (PAGE data, XBZRLE deltas, zlib streams) vs everything else. */
  byteBreakdown: { pagePayload: number; deviceState: number; vmDescription: number; headers: number };
}

export class StreamSummarizer {
  private readonly s: StreamSummary = {
    bytes: 0,
    sections: [],
    ramBlocks: [],
    records: {},
    pagesPerBlock: {},
    commands: [],
    byteBreakdown: { pagePayload: 0, deviceState: 0, vmDescription: 0, headers: 0 },
  };
  private readonly sections = new Map<number, SectionSummary>();
  private openSection: { summary: SectionSummary; offset: number } | null = null;

  add(r: DecodedRecord): void {
    const key = r.kind === 'command' ? `command:${r.command}` : r.kind;
    this.s.records[key] = (this.s.records[key] ?? 0) + 1;
    const b = this.s.byteBreakdown;
    switch (r.kind) {
      case 'header':
        this.s.fileVersion = r.version;
        break;
      case 'configuration':
        this.s.machine = r.machine;
        break;
      case 'section': {
        let sec = this.sections.get(r.sectionId);
        if (!sec) {
          sec = { sectionId: r.sectionId, idstr: r.idstr, instanceId: r.instanceId, versionId: r.versionId, types: {}, bytes: 0 };
          this.sections.set(r.sectionId, sec);
          this.s.sections.push(sec);
        }
        sec.types[r.type] = (sec.types[r.type] ?? 0) + 1;
        this.openSection = { summary: sec, offset: r.offset };
        break;
      }
      case 'footer':
        if (this.openSection && this.openSection.summary.sectionId === r.sectionId) {
          this.openSection.summary.bytes += r.offset + 5 - this.openSection.offset;
          this.openSection = null;
        }
        break;
      case 'mem-size':
        this.s.ramBlocks = r.blocks.map((x) => ({ ...x }));
        break;
      case 'zero':
      case 'page':
      case 'xbzrle':
      case 'compressed-page': {
        const per = (this.s.pagesPerBlock[r.block] ??= {});
        per[r.kind] = (per[r.kind] ?? 0) + 1;
        if (r.kind !== 'zero') b.pagePayload += r.data.length;
        break;
      }
      case 'device-state':
        b.deviceState += r.data.length;
        break;
      case 'vmdesc':
        b.vmDescription += Buffer.byteLength(r.json, 'utf8');
        break;
      case 'command':
        this.s.commands.push({ offset: r.offset, command: r.command, ...commandDetail(r) });
        break;
      default:
        break;
    }
  }

  /** Final summary; `bytes` is the stream length (everything not payload counts as headers). */
  finish(bytes: number): StreamSummary {
    this.s.bytes = bytes;
    const b = this.s.byteBreakdown;
    b.headers = bytes - b.pagePayload - b.deviceState - b.vmDescription;
    return this.s;
  }
}

function commandDetail(r: Extract<DecodedRecord, { kind: 'command' }>): { detail?: Record<string, unknown> } {
  switch (r.command) {
    case 'PING':
      return { detail: { value: r.value } };
    case 'POSTCOPY_ADVISE':
      return { detail: { pageSizeSummary: r.pageSizeSummary, targetPageSize: r.targetPageSize } };
    case 'POSTCOPY_RAM_DISCARD':
      return { detail: { idstr: r.idstr, ranges: r.ranges.length, bytes: r.ranges.reduce((n, x) => n + x.length, 0) } };
    case 'PACKAGED':
      return { detail: { length: r.length } };
    case 'RECV_BITMAP':
      return { detail: { idstr: r.idstr } };
    default:
      return {};
  }
}

export interface ReturnPathSummary {
  bytes: number;
  messages: Record<string, number>;
  /** Page requests in order: block, byte offset, length. */
  requests: Array<{ block: string; start: number; length: number; named: boolean }>;
  pongs: number[];
  shut?: number;
}

export function summarizeReturnPath(msgs: Iterable<ReturnPathMessage>, bytes: number): ReturnPathSummary {
  const s: ReturnPathSummary = { bytes, messages: {}, requests: [], pongs: [] };
  for (const m of msgs) {
    const name = m.kind === 'req-pages' ? (m.idstr !== undefined ? 'REQ_PAGES_ID' : 'REQ_PAGES') : m.kind.toUpperCase().replace(/-/g, '_');
    s.messages[name] = (s.messages[name] ?? 0) + 1;
    if (m.kind === 'req-pages') s.requests.push({ block: m.block, start: m.start, length: m.length, named: m.idstr !== undefined });
    else if (m.kind === 'pong') s.pongs.push(m.value);
    else if (m.kind === 'shut') s.shut = m.status;
  }
  return s;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const size = (n: number) => (n >= 1048576 && n % 1048576 === 0 ? `${n / 1048576} MiB` : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);

/** Human-readable rendering of a stream summary. */
export function formatStreamSummary(file: string, s: StreamSummary): string {
  const lines: string[] = [];
  lines.push(`${file}: ${s.bytes} bytes, savevm version ${s.fileVersion ?? '?'}, machine ${s.machine ?? '(no configuration)'}`);
  lines.push('', `RAM blocks (${s.ramBlocks.length}):`);
  for (const b of s.ramBlocks) {
    const extra = [b.pageSize !== undefined ? `page size ${size(b.pageSize)}` : '', b.guestAddress !== undefined ? `at ${hex(b.guestAddress)}` : ''].filter(Boolean).join(', ');
    const pages = Object.entries(s.pagesPerBlock[b.idstr] ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'no pages';
    lines.push(`  ${b.idstr.padEnd(24)} ${size(b.usedLength).padStart(9)}${extra ? ` (${extra})` : ''}: ${pages}`);
  }
  lines.push('', `Sections (${s.sections.length}):`);
  for (const x of s.sections) {
    const types = Object.entries(x.types).map(([k, v]) => (v > 1 ? `${k}×${v}` : k)).join(' ');
    lines.push(`  #${String(x.sectionId).padEnd(3)} ${x.idstr.padEnd(28)} inst ${x.instanceId} v${x.versionId}  ${types.padEnd(22)} ${x.bytes} B`);
  }
  lines.push('', `Commands (${s.commands.length}):`);
  for (const c of s.commands) lines.push(`  @${c.offset} ${c.command}${c.detail ? ' ' + JSON.stringify(c.detail) : ''}`);
  lines.push('', 'Records:');
  for (const [k, v] of Object.entries(s.records)) lines.push(`  ${k.padEnd(32)} ${v}`);
  const b = s.byteBreakdown;
  lines.push('', `Bytes: page payload ${b.pagePayload}, device state ${b.deviceState}, VM description ${b.vmDescription}, headers/framing ${b.headers}`);
  return lines.join('\n');
}

export function formatReturnPathSummary(file: string, s: ReturnPathSummary): string {
  const lines = [`${file}: ${s.bytes} bytes of return path`];
  lines.push(`  messages: ${Object.entries(s.messages).map(([k, v]) => `${k}×${v}`).join(', ') || 'none'}`);
  lines.push(`  PONG values: ${s.pongs.join(', ') || 'none'}`);
  lines.push(`  SHUT: ${s.shut ?? 'not sent'}`);
  lines.push(`  page requests (${s.requests.length}):`);
  for (const r of s.requests.slice(0, 50)) lines.push(`    ${r.block} ${hex(r.start)} +${r.length}${r.named ? ' (named)' : ''}`);
  if (s.requests.length > 50) lines.push(`    … ${s.requests.length - 50} more (use --json)`);
  return lines.join('\n');
}
