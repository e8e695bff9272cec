// Helpers over decoded record lists shared by the protocol tests.
import { createHash } from 'node:crypto';
import { StreamDecoder, type DecodedRecord, type DecoderOptions } from '../../src/protocol/index.js';

/** Decode a whole stream given as chunks; returns every record (push and end). */
export function decodeChunks(chunks: Iterable<Uint8Array>, opts?: DecoderOptions): DecodedRecord[] {
  const d = new StreamDecoder(opts);
  const out: DecodedRecord[] = [];
  for (const c of chunks) for (const r of d.push(c)) out.push(r);
  for (const r of d.end()) out.push(r);
  return out;
}

/** A comparable string per record: every field, byte payloads replaced by their SHA-1. */
export function fingerprint(r: DecodedRecord): string {
  return JSON.stringify(plain(r));
}

// Buffer has toJSON (which runs before a JSON.stringify replacer), so bytes are replaced up front;
// this also makes a Buffer view and a Uint8Array copy of the same bytes compare equal.
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `sha1:${createHash('sha1').update(v).digest('hex')}:${v.length}`;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Record-kind counts, commands by name (e.g. "command:PING"). */
export function kindCounts(records: readonly DecodedRecord[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) {
    const k = r.kind === 'command' ? `command:${r.command}` : r.kind;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Page-record counts of one block, keyed like the fixture README (ZERO, PAGE, XBZRLE, COMPRESS_PAGE). */
export function pageCounts(records: readonly DecodedRecord[], block: string): Record<string, number> {
  const names: Record<string, string> = { zero: 'ZERO', page: 'PAGE', xbzrle: 'XBZRLE', 'compressed-page': 'COMPRESS_PAGE' };
  const out: Record<string, number> = {};
  for (const r of records) {
    if ((r.kind === 'zero' || r.kind === 'page' || r.kind === 'xbzrle' || r.kind === 'compressed-page') && r.block === block) {
      out[names[r.kind]] = (out[names[r.kind]] ?? 0) + 1;
    }
  }
  return out;
}
