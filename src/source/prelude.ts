// The fixed parts of the forward stream (docs/migration-protocol.md), written with src/protocol's StreamEncoder:
// everything before the first page, and the state section + RUN.
import { StreamEncoder } from '../protocol/index.js';
import { RAM_SECTION_VERSION } from '../protocol/constants.js';
import type { PageMap } from './page-map.js';

/** Section ids of our stream (any unique values; QEMU's ram happened to be 2). */
export const RAM_SECTION_ID = 2;
export const STATE_SECTION_ID = 3;
export const STATE_SECTION_NAME = 'postcopy-uffd/state';
export const STATE_SECTION_VERSION = 1;
export const DEFAULT_MACHINE = 'postcopy-uffd';

function concat(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/** Header, CONFIGURATION, OPEN_RETURN_PATH, POSTCOPY_ADVISE, "ram" SECTION_START (MEM_SIZE, EOS, footer). */
export function encodePrelude(map: PageMap, opts: { machine?: string } = {}): Buffer {
  const enc = new StreamEncoder({ targetPageSize: map.pageSize });
  return concat([
    enc.header(),
    enc.configuration(opts.machine ?? DEFAULT_MACHINE),
    enc.command({ command: 'OPEN_RETURN_PATH' }),
    enc.command({ command: 'POSTCOPY_ADVISE', pageSizeSummary: map.pageSize, targetPageSize: map.pageSize }),
    enc.section('start', RAM_SECTION_ID, 'ram', 0, RAM_SECTION_VERSION),
    enc.ram.memSize(map.blocks.map((b) => ({ idstr: b.name, usedLength: b.size }))),
    enc.ram.eos(),
    enc.footer(RAM_SECTION_ID),
  ]);
}

/**
 * CMD PING: sent right after the prelude; the workload is stopped only once the destination's PONG comes back
 * (postcopy-daemon answers once its session runs: destination process attached, stream worker decoding, so
 * the state is forwarded the moment it arrives). QEMU's destination answers PINGs the same way.
 */
export const READY_PING_VALUE = 0x52454459; // "REDY"
/**
 * CMD PING right after state + RUN: background pages start on its PONG. postcopy-daemon's stream worker
 * answers once it has decoded the state (already on its way to the process), so the first megabytes of
 * pages do not compete with the state's last hop for the CPUs; page requests are served meanwhile.
 */
export const RUN_PING_VALUE = 0x52554e21; // "RUN!"

export function encodePing(value: number = READY_PING_VALUE): Buffer {
  return Buffer.from(new StreamEncoder().command({ command: 'PING', value }));
}

/** SECTION_FULL "postcopy-uffd/state" (be32 length + blob, footer), then CMD POSTCOPY_RUN. */
export function encodeStateAndRun(state: Uint8Array): Buffer {
  const enc = new StreamEncoder();
  const len = Buffer.alloc(4);
  len.writeUInt32BE(state.length, 0);
  return concat([
    enc.section('full', STATE_SECTION_ID, STATE_SECTION_NAME, 0, STATE_SECTION_VERSION),
    len,
    state,
    enc.footer(STATE_SECTION_ID),
    enc.command({ command: 'POSTCOPY_RUN' }),
  ]);
}
