#!/usr/bin/env node
// postcopy-inspect: summarise a QEMU-format migration stream (or a captured return path), optionally
// extracting the final content of every RAM block.
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import createDebug from 'debug';
import { ProtocolError, RamImage, ReturnPathDecoder, StreamDecoder, type DecoderOptions } from '../protocol/index.js';
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
  --ignore-shared        MEM_SIZE entries carry a guest address (x-ignore-shared)
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
 * Writes a block's final content page by page into a sparse file: memory stays bounded whatever
 * length a MEM_SIZE record claims, and pages never received stay holes (they read as zero).
 */
function writeBlockFile(image: RamImage, idstr: string, length: number, out: string, maxBytes: number): void {
  if (length > maxBytes) {
    throw new Error(`block ${JSON.stringify(idstr)} claims ${length} bytes, over --max-block-bytes ${maxBytes}`);
  }
  const fd = openSync(out, 'w');
  try {
    ftruncateSync(fd, length);
    for (let off = 0; off < length; off += image.pageSize) {
      if (image.isReceived(idstr, off)) writeSync(fd, image.readPage(idstr, off), 0, image.pageSize, off);
    }
  } finally {
    closeSync(fd);
  }
}

function inspectStream(file: string, opts: DecoderOptions, extractDir?: string, maxBlockBytes = DEFAULT_MAX_BLOCK): { summary: StreamSummary; extracted: string[] } {
  const decoder = new StreamDecoder(opts);
  const summarizer = new StreamSummarizer();
  const image = extractDir !== undefined ? new RamImage({ targetPageSize: opts.targetPageSize }) : undefined;
  const take = (records: Iterable<Parameters<StreamSummarizer['add']>[0]>) => {
    for (const r of records) {
      summarizer.add(r);
      image?.apply(r);
    }
  };
  const bytes = feedFile(file, (chunk) => take(decoder.push(chunk)));
  take(decoder.end());
  const extracted: string[] = [];
  if (image && extractDir !== undefined) {
    mkdirSync(extractDir, { recursive: true });
    for (const b of image.blocks) {
      const out = path.join(extractDir, extractFileName(b.idstr));
      writeBlockFile(image, b.idstr, b.usedLength, out, maxBlockBytes);
      extracted.push(out);
      log('extracted %s (%d bytes) to %s', b.idstr, b.usedLength, out);
    }
  }
  return { summary: summarizer.finish(bytes), extracted };
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
      memSizeGuestAddress: values['ignore-shared'],
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
