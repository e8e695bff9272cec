#!/usr/bin/env node
// postcopy-inspect: summarise a QEMU-format migration stream (or a captured return path), optionally
// extracting the final content of every RAM block.
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import createDebug from 'debug';
import {
  DEFAULT_TARGET_PAGE_SIZE,
  ProtocolError,
  ReturnPathDecoder,
  StreamDecoder,
  applyRamRecord,
  protocolError,
  xbzrleDecode,
  type DecodedRecord,
  type DecoderOptions,
  type RamBlockInfo,
  type RamRecordSink,
} from '../protocol/index.js';
import {
  StreamSummarizer,
  formatReturnPathSummary,
  formatStreamSummary,
  summarizeReturnPath,
  type ReturnPathSummary,
  type StreamSummary,
} from './stream-summary.js';

const log = createDebug('postcopy:inspect');

const USAGE = `usage: postcopy-inspect [options] FILE
       postcopy-inspect --return-path FILE2 [FILE]

Summarises a QEMU savevm migration stream (sections, RAM blocks, record counts, commands, bytes of
pages vs headers).

  --json                 print the summary as JSON
  --extract DIR          write each RAM block's final content to DIR/<idstr, '/' → '_'>.bin
  --return-path FILE2    also decode FILE2 as a destination→source return-path capture
  --hugetlb-blocks LIST  comma-separated blocks whose MEM_SIZE entry carries a page size
                         (default: detected after POSTCOPY_ADVISE)
  --ignore-shared        MEM_SIZE entries carry a guest address (x-ignore-shared; default:
                         detected from the configuration section's capabilities)
  --max-block-bytes N    refuse to extract a block larger than N bytes (default 16 GiB)
  -h, --help             this text

Exit status: 0 ok, 1 malformed or unreadable input (one line on stderr; DEBUG=1 adds the stack), 2 usage.`;

const READ_CHUNK = 1024 * 1024;
const DEFAULT_MAX_BLOCK = 16 * 1024 ** 3;

/** Feeds a file to `push` in bounded chunks (a stream is never read into memory whole). */
function feedFile(file: string, push: (chunk: Uint8Array) => void): number {
  const fd = openSync(file, 'r');
  let total = 0;
  try {
    for (;;) {
      // A fresh buffer per chunk: decoded records are views of it.
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const n = readSync(fd, buf, 0, READ_CHUNK, null);
      if (n === 0) return total;
      total += n;
      push(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/** File name for a block: its idstr with every '/' replaced by '_' (e.g. _rom@etc_acpi_tables.bin). */
export function extractFileName(idstr: string): string {
  return `${idstr.replace(/\//g, '_')}.bin`;
}

/**
 * Applies decoded RAM records straight to one sparse file per block, so extraction needs memory for one
 * page plus a bit per page, whatever the guest size: pages go to their place with positional writes,
 * XBZRLE deltas are applied to the page read back from the file, and pages never written stay holes
 * (they read as zero).
 */
class BlockFiles implements RamRecordSink {
  private readonly files = new Map<string, { fd: number; path: string; length: number; written: Uint8Array }>();
  private readonly page: Buffer;
  private zeros: Buffer | null = null;

  constructor(
    private readonly dir: string,
    readonly pageSize: number,
    private readonly maxBytes: number,
  ) {
    this.page = Buffer.alloc(pageSize);
  }

  get paths(): string[] {
    return [...this.files.values()].map((f) => f.path);
  }

  apply(r: DecodedRecord): void {
    applyRamRecord(r, this);
  }

  setBlocks(blocks: readonly RamBlockInfo[]): void {
    this.open(blocks);
  }

  fill(block: string, blockOffset: number, value: number, at: number): void {
    const f = this.file(block, blockOffset, at);
    // A zero page over a hole needs no write.
    if (value !== 0 || this.isWritten(f, blockOffset)) this.write(block, blockOffset, this.page.fill(value), at);
  }

  xbzrle(block: string, blockOffset: number, delta: Uint8Array, at: number): void {
    const f = this.file(block, blockOffset, at);
    const cur = this.page.fill(0);
    if (this.isWritten(f, blockOffset)) readSync(f.fd, cur, 0, this.pageSize, blockOffset);
    xbzrleDecode(delta, cur, at);
    this.write(block, blockOffset, cur, at);
  }

  close(): void {
    for (const f of this.files.values()) closeSync(f.fd);
    this.files.clear();
  }

  private open(blocks: readonly RamBlockInfo[]): void {
    // Refuse before creating anything: a MEM_SIZE record may claim any size.
    const names = new Map<string, string>();
    for (const b of blocks) {
      if (b.usedLength > this.maxBytes) throw new Error(`block ${JSON.stringify(b.idstr)} claims ${b.usedLength} bytes, over --max-block-bytes ${this.maxBytes}`);
      const name = extractFileName(b.idstr);
      const other = names.get(name);
      if (other !== undefined) throw new Error(`blocks ${JSON.stringify(other)} and ${JSON.stringify(b.idstr)} would both be extracted to ${name}`);
      names.set(name, b.idstr);
    }
    mkdirSync(this.dir, { recursive: true });
    for (const b of blocks) {
      const old = this.files.get(b.idstr);
      if (old !== undefined && old.length === b.usedLength) continue;
      if (old !== undefined) closeSync(old.fd);
      const out = path.join(this.dir, extractFileName(b.idstr));
      const fd = openSync(out, 'w+');
      this.files.set(b.idstr, { fd, path: out, length: b.usedLength, written: new Uint8Array(Math.ceil(b.usedLength / this.pageSize / 8)) });
      ftruncateSync(fd, b.usedLength);
      log('extracting %s (%d bytes) to %s', b.idstr, b.usedLength, out);
    }
  }

  private file(block: string, blockOffset: number, at: number) {
    const f = this.files.get(block);
    if (f === undefined) throw protocolError('UNKNOWN_BLOCK', `block ${JSON.stringify(block)} before any MEM_SIZE naming it`, at, '--extract', 'a block announced by MEM_SIZE');
    if (blockOffset % this.pageSize !== 0 || blockOffset + this.pageSize > f.length) {
      throw protocolError('BAD_OFFSET', `offset 0x${blockOffset.toString(16)} in block ${JSON.stringify(block)}`, at, '--extract', `a page-aligned offset inside ${f.length} bytes`);
    }
    return f;
  }

  /** Discarded pages read as zero until sent again (only pages written so far need a write). */
  discard(block: string, start: number, length: number, at: number): void {
    if (length === 0) return;
    const f = this.file(block, start, at);
    this.file(block, start + length - this.pageSize, at);
    const end = (start + length) / this.pageSize;
    for (let i = start / this.pageSize; i < end; ) {
      if ((i & 7) === 0 && f.written[i >>> 3] === 0) {
        i += 8; // eight never-written pages at once: huge discards stay cheap
        continue;
      }
      if ((f.written[i >>> 3] & (1 << (i & 7))) !== 0) this.write(block, i * this.pageSize, (this.zeros ??= Buffer.alloc(this.pageSize)), at);
      i++;
    }
    // write() marked the pages as written; they now hold zeros, which is their content.
  }

  private isWritten(f: { written: Uint8Array }, blockOffset: number): boolean {
    const i = blockOffset / this.pageSize;
    return (f.written[i >>> 3] & (1 << (i & 7))) !== 0;
  }

  write(block: string, blockOffset: number, data: Uint8Array, at: number): void {
    const f = this.file(block, blockOffset, at);
    writeSync(f.fd, data, 0, this.pageSize, blockOffset);
    const i = blockOffset / this.pageSize;
    f.written[i >>> 3] |= 1 << (i & 7);
  }
}

function inspectStream(file: string, opts: DecoderOptions, extractDir?: string, maxBlockBytes = DEFAULT_MAX_BLOCK): { summary: StreamSummary; extracted: string[] } {
  const decoder = new StreamDecoder(opts);
  const summarizer = new StreamSummarizer();
  const files = extractDir !== undefined ? new BlockFiles(extractDir, opts.targetPageSize ?? DEFAULT_TARGET_PAGE_SIZE, maxBlockBytes) : undefined;
  try {
    const take = (records: Iterable<DecodedRecord>) => {
      for (const r of records) {
        summarizer.add(r);
        files?.apply(r);
      }
    };
    const bytes = feedFile(file, (chunk) => take(decoder.push(chunk)));
    take(decoder.end());
    return { summary: summarizer.finish(bytes), extracted: files?.paths ?? [] };
  } finally {
    files?.close();
  }
}

function inspectReturnPath(file: string): ReturnPathSummary {
  const decoder = new ReturnPathDecoder();
  const msgs: ReturnType<ReturnPathDecoder['push']> = [];
  const bytes = feedFile(file, (chunk) => msgs.push(...decoder.push(chunk)));
  msgs.push(...decoder.end());
  return summarizeReturnPath(msgs, bytes);
}

class UsageError extends Error {}

export function main(argv: string[]): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        extract: { type: 'string' },
        'return-path': { type: 'string' },
        'hugetlb-blocks': { type: 'string' },
        'ignore-shared': { type: 'boolean', default: false },
        'max-block-bytes': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`postcopy-inspect: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = args;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let current = '';
  try {
    if (positionals.length > 1) throw new UsageError(`one stream file expected, got ${positionals.length}`);
    const file = positionals[0];
    if (file === undefined && values['return-path'] === undefined) throw new UsageError('no input file');
    if (file === undefined && values.extract !== undefined) throw new UsageError('--extract needs a stream FILE');
    const hugetlb = values['hugetlb-blocks']?.split(',').filter(Boolean);
    const opts: DecoderOptions = {
      memSizePageSize: hugetlb ? (idstr: string) => hugetlb.includes(idstr) : 'auto',
      // Unset: the decoder follows the stream's configuration section (x-ignore-shared capability).
      memSizeGuestAddress: values['ignore-shared'] ? true : undefined,
    };
    const result: { stream?: StreamSummary; extracted?: string[]; returnPath?: ReturnPathSummary } = {};
    const text: string[] = [];
    if (file !== undefined) {
      current = file;
      const maxBlock = values['max-block-bytes'] !== undefined ? Number(values['max-block-bytes']) : DEFAULT_MAX_BLOCK;
      if (!Number.isSafeInteger(maxBlock) || maxBlock < 0) throw new UsageError(`--max-block-bytes: not a byte count: ${values['max-block-bytes']}`);
      const { summary, extracted } = inspectStream(file, opts, values.extract, maxBlock);
      result.stream = summary;
      text.push(formatStreamSummary(file, summary));
      if (values.extract !== undefined) {
        result.extracted = extracted;
        text.push('', `Extracted ${extracted.length} block(s) to ${values.extract}: ${extracted.map((f) => path.basename(f)).join(', ')}`);
      }
    }
    if (values['return-path'] !== undefined) {
      current = values['return-path'];
      result.returnPath = inspectReturnPath(current);
      text.push((text.length ? '\n' : '') + formatReturnPathSummary(current, result.returnPath));
    }
    process.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : text.join('\n') + '\n');
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`postcopy-inspect: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    const e = err as Error & { code?: string };
    const what = err instanceof ProtocolError ? `malformed stream [${e.code}]: ` : '';
    process.stderr.write(`postcopy-inspect: ${current ? current + ': ' : ''}${what}${e.message}\n`);
    if (process.env.DEBUG) process.stderr.write(`${e.stack ?? ''}\n`);
    return 1;
  }
}

// Run when executed directly (not when imported by tests).
if (process.argv[1] && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  process.exitCode = main(process.argv.slice(2));
}
