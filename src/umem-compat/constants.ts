// The seed's umem device constants, exported for reference and for code that speaks the old ABI.
// Generations (spec-notes §1.1): B (spring 2012), C (June 2012, the one we emulate: read()/write() of u64
// page offsets), D (Oct 2012 "uvmem", byte-identical to C). Generation A (Dec 2011) never published its
// header: the GET_PAGE_REQUEST / MARK_PAGE_CACHED numbers below are postcopy-uffd-defined (spec-notes §1.3),
// NOT binary compatible with the 2011 driver.
import { _IO, _IOW, _IOWR } from '../uffd/abi.js';

/** ioctl magic of /dev/umem and /dev/uvmem. */
export const UMEMIO = 0x1e;

/** Gen C/D `struct umem_init { u64 size; s32 shmem_fd; s32 padding; }` (16 bytes). */
export const UMEM_INIT_SIZE = 16;
export const UMEM_INIT_OFF = { size: 0, shmemFd: 8, padding: 12 } as const;

/** Gen C/D: `_IOWR(0x1E, 0x00, struct umem_init)` = 0xC0101E00. */
export const UMEM_INIT = _IOWR(UMEMIO, 0x00, UMEM_INIT_SIZE);
/** Gen B/C/D: `_IO(0x1E, 0x01)` = 0x00001E01 (the 2012 driver always returned ENOSYS). */
export const UMEM_MAKE_VMA_ANONYMOUS = _IO(UMEMIO, 0x01);
/** Gen D names (same numbers). */
export const UVMEM_INIT = UMEM_INIT;
export const UVMEM_MAKE_VMA_ANONYMOUS = UMEM_MAKE_VMA_ANONYMOUS;

/** Gen B: `struct umem_init { u64 size; u32 async_req_max; u32 sync_req_max; s32 shmem_fd; s32 padding; }`. */
export const UMEM_INIT_GEN_B_SIZE = 24;
/** Gen B: `_IOWR(0x1E, 0x00, 24 bytes)` = 0xC0181E00. */
export const UMEM_INIT_GEN_B = _IOWR(UMEMIO, 0x00, UMEM_INIT_GEN_B_SIZE);
/** Gen B: `_IOW(0x1E, 0x02, struct umem_pages)` = 0x40081E02 (header `{ u64 nr; u64 pgoffs[]; }`). */
export const UMEM_MAKE_PAGE_PRESENT = _IOW(UMEMIO, 0x02, 8);

/**
 * postcopy-uffd-defined gen-A descriptor `{ u64 pgoffs_ptr; u32 nr; u32 padding; }` (16 bytes) and its
 * numbers, kept in magic 0x1E away from the gen B/C numbers 0x00..0x02 (spec-notes §1.3, [INFERRED]).
 */
export const UMEM_GEN_A_PAGES_SIZE = 16;
export const UMEM_GET_PAGE_REQUEST = _IOWR(UMEMIO, 0x10, UMEM_GEN_A_PAGES_SIZE);
export const UMEM_MARK_PAGE_CACHED = _IOW(UMEMIO, 0x11, UMEM_GEN_A_PAGES_SIZE);

/** Device node names of the historical drivers. */
export const UMEM_DEVICE_PATH = '/dev/umem';
export const UVMEM_DEVICE_PATH = '/dev/uvmem';

/** Bytes per page offset in read()/write() buffers (u64, host endian). */
export const UMEM_OFFSET_BYTES = 8;

/** QEMU's batch limit for page lists on the daemon<->qemu pipe (MAX_FAULTED_PAGES, spec-notes §1.6). */
export const UMEM_MAX_PAGES_PER_MESSAGE = 256;
