// The userfaultfd ABI as data: syscall numbers per architecture, ioctl numbers computed from the kernel's
// _IOC() encoding, struct sizes and field offsets, flag and feature bits.
//
// Values follow upstream include/uapi/linux/userfaultfd.h (Linux 6.18). Debian 12's header lacks MOVE, POISON
// and feature bits 13-16, so nothing here is read from the machine's headers; test/uffd/abi-headers.test.ts
// checks the x86_64 values that the installed header does define.

export type Arch = 'x86_64' | 'aarch64';

// ---------------------------------------------------------------------------------------------------------
// ioctl encoding (asm-generic/ioctl.h; x86_64 and aarch64 both use the generic layout)

export const IOC_NRBITS = 8;
export const IOC_TYPEBITS = 8;
export const IOC_SIZEBITS = 14;
export const IOC_NRSHIFT = 0;
export const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
export const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
export const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

/** _IOC(dir, type, nr, size) as an unsigned 32-bit Number. */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  if (size < 0 || size >= 1 << IOC_SIZEBITS) throw new RangeError(`ioctl size ${size} does not fit in ${IOC_SIZEBITS} bits`);
  return ((dir << IOC_DIRSHIFT) | (size << IOC_SIZESHIFT) | (type << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT)) >>> 0;
}
export const _IO = (type: number, nr: number): number => _IOC(IOC_NONE, type, nr, 0);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(IOC_READ, type, nr, size);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(IOC_READ | IOC_WRITE, type, nr, size);

// ---------------------------------------------------------------------------------------------------------
// Struct layouts (all fields __u64/__s64 unless noted; every struct is naturally aligned, no padding)

/** struct uffdio_api { u64 api; u64 features; u64 ioctls; } */
export const UFFDIO_API_SIZE = 24;
export const UFFDIO_API_OFF = { api: 0, features: 8, ioctls: 16 } as const;
/** struct uffdio_range { u64 start; u64 len; } */
export const UFFDIO_RANGE_SIZE = 16;
export const UFFDIO_RANGE_OFF = { start: 0, len: 8 } as const;
/** struct uffdio_register { struct uffdio_range range; u64 mode; u64 ioctls; } */
export const UFFDIO_REGISTER_SIZE = 32;
export const UFFDIO_REGISTER_OFF = { start: 0, len: 8, mode: 16, ioctls: 24 } as const;
/** struct uffdio_copy { u64 dst; u64 src; u64 len; u64 mode; s64 copy; } */
export const UFFDIO_COPY_SIZE = 40;
export const UFFDIO_COPY_OFF = { dst: 0, src: 8, len: 16, mode: 24, copy: 32 } as const;
/** struct uffdio_zeropage { struct uffdio_range range; u64 mode; s64 zeropage; } */
export const UFFDIO_ZEROPAGE_SIZE = 32;
export const UFFDIO_ZEROPAGE_OFF = { start: 0, len: 8, mode: 16, zeropage: 24 } as const;
/** struct uffdio_writeprotect { struct uffdio_range range; u64 mode; } */
export const UFFDIO_WRITEPROTECT_SIZE = 24;
export const UFFDIO_WRITEPROTECT_OFF = { start: 0, len: 8, mode: 16 } as const;
/** struct uffdio_continue { struct uffdio_range range; u64 mode; s64 mapped; } */
export const UFFDIO_CONTINUE_SIZE = 32;
export const UFFDIO_CONTINUE_OFF = { start: 0, len: 8, mode: 16, mapped: 24 } as const;
/** struct uffdio_poison { struct uffdio_range range; u64 mode; s64 updated; } */
export const UFFDIO_POISON_SIZE = 32;
export const UFFDIO_POISON_OFF = { start: 0, len: 8, mode: 16, updated: 24 } as const;
/** struct uffdio_move { u64 dst; u64 src; u64 len; u64 mode; s64 move; } */
export const UFFDIO_MOVE_SIZE = 40;
export const UFFDIO_MOVE_OFF = { dst: 0, src: 8, len: 16, mode: 24, move: 32 } as const;

/**
 * struct uffd_msg (packed, 32 bytes): u8 event; u8 reserved1; u16 reserved2; u32 reserved3; then a union:
 * pagefault { u64 flags; u64 address; union { u32 ptid; } feat; }, fork { u32 ufd; },
 * remap { u64 from; u64 to; u64 len; }, remove/unmap { u64 start; u64 end; }.
 */
export const UFFD_MSG_SIZE = 32;
export const UFFD_MSG_OFF = {
  event: 0,
  pagefaultFlags: 8,
  pagefaultAddress: 16,
  pagefaultPtid: 24,
  forkUfd: 8,
  remapFrom: 8,
  remapTo: 16,
  remapLen: 24,
  removeStart: 8,
  removeEnd: 16,
} as const;

// ---------------------------------------------------------------------------------------------------------
// ioctl numbers

export const UFFDIO = 0xaa;
export const UFFD_API = 0xaa;

/** Bit numbers of the ioctl mask returned by UFFDIO_API / UFFDIO_REGISTER (_UFFDIO_*). */
export const _UFFDIO_REGISTER = 0x00;
export const _UFFDIO_UNREGISTER = 0x01;
export const _UFFDIO_WAKE = 0x02;
export const _UFFDIO_COPY = 0x03;
export const _UFFDIO_ZEROPAGE = 0x04;
export const _UFFDIO_MOVE = 0x05;
export const _UFFDIO_WRITEPROTECT = 0x06;
export const _UFFDIO_CONTINUE = 0x07;
export const _UFFDIO_POISON = 0x08;
export const _UFFDIO_API = 0x3f;

export const UFFDIO_API = _IOWR(UFFDIO, _UFFDIO_API, UFFDIO_API_SIZE);
export const UFFDIO_REGISTER = _IOWR(UFFDIO, _UFFDIO_REGISTER, UFFDIO_REGISTER_SIZE);
export const UFFDIO_UNREGISTER = _IOR(UFFDIO, _UFFDIO_UNREGISTER, UFFDIO_RANGE_SIZE);
export const UFFDIO_WAKE = _IOR(UFFDIO, _UFFDIO_WAKE, UFFDIO_RANGE_SIZE);
export const UFFDIO_COPY = _IOWR(UFFDIO, _UFFDIO_COPY, UFFDIO_COPY_SIZE);
export const UFFDIO_ZEROPAGE = _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, UFFDIO_ZEROPAGE_SIZE);
export const UFFDIO_MOVE = _IOWR(UFFDIO, _UFFDIO_MOVE, UFFDIO_MOVE_SIZE);
export const UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_SIZE);
export const UFFDIO_CONTINUE = _IOWR(UFFDIO, _UFFDIO_CONTINUE, UFFDIO_CONTINUE_SIZE);
export const UFFDIO_POISON = _IOWR(UFFDIO, _UFFDIO_POISON, UFFDIO_POISON_SIZE);
/** ioctl on /dev/userfaultfd creating a new uffd; its argument is the flags value itself. */
export const USERFAULTFD_IOC = 0xaa;
export const USERFAULTFD_IOC_NEW = _IO(USERFAULTFD_IOC, 0x00);

/** Every UFFDIO_* ioctl by name with its mask bit, for decoding ioctl masks. */
export const UFFDIO_IOCTL_BITS = {
  register: _UFFDIO_REGISTER,
  unregister: _UFFDIO_UNREGISTER,
  wake: _UFFDIO_WAKE,
  copy: _UFFDIO_COPY,
  zeropage: _UFFDIO_ZEROPAGE,
  move: _UFFDIO_MOVE,
  writeProtect: _UFFDIO_WRITEPROTECT,
  continue: _UFFDIO_CONTINUE,
  poison: _UFFDIO_POISON,
  api: _UFFDIO_API,
} as const;
export type UffdIoctlName = keyof typeof UFFDIO_IOCTL_BITS;

// ---------------------------------------------------------------------------------------------------------
// Modes and flags

export const UFFDIO_REGISTER_MODE_MISSING = 1 << 0;
export const UFFDIO_REGISTER_MODE_WP = 1 << 1;
export const UFFDIO_REGISTER_MODE_MINOR = 1 << 2;
export const UFFDIO_COPY_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_COPY_MODE_WP = 1 << 1;
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0;
export const UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1 << 1;
export const UFFDIO_CONTINUE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_CONTINUE_MODE_WP = 1 << 1;
export const UFFDIO_POISON_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_MOVE_MODE_DONTWAKE = 1 << 0;
export const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1;

/** Flags of userfaultfd(2) / USERFAULTFD_IOC_NEW. O_CLOEXEC and O_NONBLOCK are the generic values (x86_64 and aarch64). */
export const UFFD_USER_MODE_ONLY = 1;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_RDWR = 2;

export const UFFD_EVENT_PAGEFAULT = 0x12;
export const UFFD_EVENT_FORK = 0x13;
export const UFFD_EVENT_REMAP = 0x14;
export const UFFD_EVENT_REMOVE = 0x15;
export const UFFD_EVENT_UNMAP = 0x16;

export const UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0;
export const UFFD_PAGEFAULT_FLAG_WP = 1 << 1;
export const UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2;

// ---------------------------------------------------------------------------------------------------------
// Feature bits (all 17 of Linux 6.18)

export const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0;
export const UFFD_FEATURE_EVENT_FORK = 1 << 1;
export const UFFD_FEATURE_EVENT_REMAP = 1 << 2;
export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3;
export const UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4;
export const UFFD_FEATURE_MISSING_SHMEM = 1 << 5;
export const UFFD_FEATURE_EVENT_UNMAP = 1 << 6;
export const UFFD_FEATURE_SIGBUS = 1 << 7;
export const UFFD_FEATURE_THREAD_ID = 1 << 8;
export const UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9;
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
export const UFFD_FEATURE_EXACT_ADDRESS = 1 << 11;
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12;
export const UFFD_FEATURE_WP_UNPOPULATED = 1 << 13;
export const UFFD_FEATURE_POISON = 1 << 14;
export const UFFD_FEATURE_WP_ASYNC = 1 << 15;
export const UFFD_FEATURE_MOVE = 1 << 16;

/** Feature bit by name (name = the UFFD_FEATURE_ suffix). */
export const UFFD_FEATURES = {
  PAGEFAULT_FLAG_WP: UFFD_FEATURE_PAGEFAULT_FLAG_WP,
  EVENT_FORK: UFFD_FEATURE_EVENT_FORK,
  EVENT_REMAP: UFFD_FEATURE_EVENT_REMAP,
  EVENT_REMOVE: UFFD_FEATURE_EVENT_REMOVE,
  MISSING_HUGETLBFS: UFFD_FEATURE_MISSING_HUGETLBFS,
  MISSING_SHMEM: UFFD_FEATURE_MISSING_SHMEM,
  EVENT_UNMAP: UFFD_FEATURE_EVENT_UNMAP,
  SIGBUS: UFFD_FEATURE_SIGBUS,
  THREAD_ID: UFFD_FEATURE_THREAD_ID,
  MINOR_HUGETLBFS: UFFD_FEATURE_MINOR_HUGETLBFS,
  MINOR_SHMEM: UFFD_FEATURE_MINOR_SHMEM,
  EXACT_ADDRESS: UFFD_FEATURE_EXACT_ADDRESS,
  WP_HUGETLBFS_SHMEM: UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
  WP_UNPOPULATED: UFFD_FEATURE_WP_UNPOPULATED,
  POISON: UFFD_FEATURE_POISON,
  WP_ASYNC: UFFD_FEATURE_WP_ASYNC,
  MOVE: UFFD_FEATURE_MOVE,
} as const;
export type FeatureName = keyof typeof UFFD_FEATURES;
export const FEATURE_NAMES = Object.keys(UFFD_FEATURES) as FeatureName[];

// ---------------------------------------------------------------------------------------------------------
// Syscall numbers and the other constants the binding uses

export interface SyscallTable {
  userfaultfd: number;
  memfd_create: number;
  pidfd_open: number;
  pidfd_getfd: number;
  pidfd_send_signal: number;
  process_madvise: number;
  process_vm_readv: number;
  process_vm_writev: number;
  mmap: number;
  munmap: number;
  mremap: number;
  madvise: number;
  eventfd2: number;
  gettid: number;
  /** Absent on aarch64 (only clone there). */
  fork: number | null;
  clone: number;
  ioctl: number;
  memfd_secret: number;
}

export const SYSCALLS: Record<Arch, SyscallTable> = {
  x86_64: {
    userfaultfd: 323,
    memfd_create: 319,
    pidfd_open: 434,
    pidfd_getfd: 438,
    pidfd_send_signal: 424,
    process_madvise: 440,
    process_vm_readv: 310,
    process_vm_writev: 311,
    mmap: 9,
    munmap: 11,
    mremap: 25,
    madvise: 28,
    eventfd2: 290,
    gettid: 186,
    fork: 57,
    clone: 56,
    ioctl: 16,
    memfd_secret: 447,
  },
  aarch64: {
    userfaultfd: 282,
    memfd_create: 279,
    pidfd_open: 434,
    pidfd_getfd: 438,
    pidfd_send_signal: 424,
    process_madvise: 440,
    process_vm_readv: 270,
    process_vm_writev: 271,
    mmap: 222,
    munmap: 215,
    mremap: 216,
    madvise: 233,
    eventfd2: 19,
    gettid: 178,
    fork: null,
    clone: 220,
    ioctl: 29,
    memfd_secret: 447,
  },
};

/** The architecture this process runs on (throws on anything but x86_64/aarch64). */
export function currentArch(): Arch {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  throw new Error(`postcopy-uffd supports x86_64 and aarch64 only, not ${process.arch}`);
}

/** Syscall numbers of the running architecture (null off x86_64/aarch64, so importing never throws). */
export const SYS: SyscallTable | null =
  process.arch === 'x64' ? SYSCALLS.x86_64 : process.arch === 'arm64' ? SYSCALLS.aarch64 : null;

// mmap / madvise / memfd / eventfd / poll (generic values, identical on x86_64 and aarch64)
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_HUGETLB = 0x40000;
export const MAP_HUGE_SHIFT = 26;
export const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
export const MREMAP_MAYMOVE = 1;
export const MREMAP_FIXED = 2;
export const MREMAP_DONTUNMAP = 4;
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_POPULATE_READ = 22;
export const MADV_POPULATE_WRITE = 23;
export const MFD_CLOEXEC = 1;
export const MFD_ALLOW_SEALING = 2;
export const MFD_HUGETLB = 4;
export const MFD_HUGE_2MB = 21 << 26;
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_SEMAPHORE = 1;
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
/** struct pollfd { int fd; short events; short revents; } */
export const POLLFD_SIZE = 8;

export const HUGE_PAGE_2M = 2 * 1024 * 1024;
