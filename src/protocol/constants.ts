// Wire constants of QEMU's savevm stream, "ram" v4 records, commands and return path (QEMU 7.2 numbering),
// plus the 2012 seed's page-request codes. Values from ../shared/reference/spec-notes.md §1.7, §2.1, §3.

export const QEMU_VM_FILE_MAGIC = 0x5145564d;
export const QEMU_VM_FILE_VERSION_COMPAT = 2;
export const QEMU_VM_FILE_VERSION = 3;

export const QEMU_VM_EOF = 0x00;
export const QEMU_VM_SECTION_START = 0x01;
export const QEMU_VM_SECTION_PART = 0x02;
export const QEMU_VM_SECTION_END = 0x03;
export const QEMU_VM_SECTION_FULL = 0x04;
export const QEMU_VM_SUBSECTION = 0x05;
export const QEMU_VM_VMDESCRIPTION = 0x06;
export const QEMU_VM_CONFIGURATION = 0x07;
export const QEMU_VM_COMMAND = 0x08;
/** Private section of the June 2012 postcopy series: be32 length + a nested device stream. */
export const QEMU_VM_POSTCOPY = 0x10;
export const QEMU_VM_SECTION_FOOTER = 0x7e;

export const RAM_SAVE_FLAG_FULL = 0x001;
export const RAM_SAVE_FLAG_ZERO = 0x002;
export const RAM_SAVE_FLAG_MEM_SIZE = 0x004;
export const RAM_SAVE_FLAG_PAGE = 0x008;
export const RAM_SAVE_FLAG_EOS = 0x010;
export const RAM_SAVE_FLAG_CONTINUE = 0x020;
export const RAM_SAVE_FLAG_XBZRLE = 0x040;
export const RAM_SAVE_FLAG_HOOK = 0x080;
export const RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
export const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

export const ENCODING_FLAG_XBZRLE = 0x01;
export const RAM_SECTION_VERSION = 4;
export const DEFAULT_TARGET_PAGE_SIZE = 4096;

/** MIG_CMD_* numbers as of QEMU 3.1..9.x (7.2 sends 1..10). */
export const MigCommand = {
  OPEN_RETURN_PATH: 1,
  PING: 2,
  POSTCOPY_ADVISE: 3,
  POSTCOPY_LISTEN: 4,
  POSTCOPY_RUN: 5,
  POSTCOPY_RAM_DISCARD: 6,
  PACKAGED: 7,
  ENABLE_COLO: 8,
  POSTCOPY_RESUME: 9,
  RECV_BITMAP: 10,
  SWITCHOVER_START: 11,
} as const;
export type CommandName = keyof typeof MigCommand;
export const COMMAND_NAMES: readonly (CommandName | undefined)[] = (() => {
  const names: (CommandName | undefined)[] = [];
  for (const [name, value] of Object.entries(MigCommand)) names[value] = name as CommandName;
  return names;
})();

/** MIG_RP_MSG_* numbers (7.2 sends 1..6; SWITCHOVER_ACK is 8.1+). */
export const RpMessage = {
  SHUT: 1,
  PONG: 2,
  REQ_PAGES_ID: 3,
  REQ_PAGES: 4,
  RECV_BITMAP: 5,
  RESUME_ACK: 6,
  SWITCHOVER_ACK: 7,
} as const;
export type RpMessageName = keyof typeof RpMessage;
/** The source accepts return-path messages up to this length. */
export const RP_MAX_LEN = 512;
/** End mark after a received-page bitmap on the return path. */
export const RECV_BITMAP_ENDING = 0x0123456789abcdefn;

/** QEMU_UMEM_REQ_* codes of the June 2012 series (§1.7). */
export const UmemReq = {
  INIT: 0x00,
  ON_DEMAND: 0x01,
  ON_DEMAND_CONT: 0x02,
  BACKGROUND: 0x03,
  BACKGROUND_CONT: 0x04,
  REMOVE: 0x05,
  EOC: 0x06,
} as const;
export type UmemRequestName = keyof typeof UmemReq;
/** At most this many page offsets per request message: (32768 − 1 − 1 − 256 − 2) / 8. */
export const UMEM_MAX_PAGE_NR = 4063;
