# Copy of the project's own tool ../shared/tools/qemu/guest-touch.s (unchanged below this header), kept here
# so bench/qemu can assemble the test guest itself with as/ld, as make-fixtures.sh and postcopy-bench.sh do.
#
# guest-touch.s -- a tiny Multiboot (v1) "kernel" for QEMU's -kernel option.
#
# It gives the migration experiments a *running* guest without any OS:
#   * every pass it reads (sums) all guest RAM from SCAN_BASE up to the top
#     of RAM reported by the Multiboot loader, so on a post-copy destination
#     every not-yet-received page is touched (=> userfaultfd faults); pages
#     are visited sequentially (SCAN_STRIDE=1) or in SCAN_STRIDE interleaved
#     lanes, i.e. jumping SCAN_STRIDE pages at a time (defeats the source's
#     sequential background push, => many more page requests);
#   * after reading each 4 KiB page it stores the running sum into the next
#     of HOT_PAGES pages starting at HOT_BASE (one dword per page, the slot
#     offset moves by 4 bytes per pass), so a small, stable set of pages is
#     re-dirtied continuously with changing content (=> XBZRLE hits);
#   * after every pass it prints one line on the ISA debugcon port 0xe9:
#        "pass PPPPPPPP sum SSSSSSSS cycles CCCCCCCCCCCCCCCC"
#     (hex; sum = 32-bit sum of all dwords scanned, cycles = TSC delta of the
#     pass).  The sum must stay constant across a migration: it is an
#     end-to-end integrity check of the transferred RAM.
#
# Every store is preceded by INVLPG of the stored-to address and the code
# uses no stack.  Reason: QEMU before 9.0 (so Debian's 7.2) loses TCG
# dirty-page tracking for a page whose TLB entry is already writable when the
# migration bitmap is synced (fixed upstream by commit 03bfc2188f "physmem:
# Fix migration dirty bitmap coherency with TCG memory access").  A guest
# running with paging off never flushes its TLB, so without the INVLPGs
# precopy would send stale copies of re-dirtied pages.  With them every
# store takes the TLB-miss path, which re-checks the dirty bitmap.
#
# Build (GNU binutils, no libc):
#   as --32 [--defsym HOT_PAGES=N] [--defsym SCAN_STRIDE=N] -o guest-touch.o guest-touch.s
#   ld -m elf_i386 -N -Ttext=0x100000 -e _start -o guest-touch.elf guest-touch.o
# Run: qemu-system-x86_64 ... -kernel guest-touch.elf -debugcon file:LOG
#
# Protected mode, flat segments, paging off: that is the Multiboot hand-off
# state, so physical addresses are used directly.

        .ifndef HOT_PAGES
        .set HOT_PAGES, 64
        .endif
        .ifndef HOT_BASE
        .set HOT_BASE, 0x00800000       # 8 MiB
        .endif
        .ifndef SCAN_STRIDE
        .set SCAN_STRIDE, 1             # page visiting order, see below
        .endif
        .ifndef SCAN_BASE
        .set SCAN_BASE, 0x01000000      # 16 MiB: where the loader device puts the random data
        .endif
        .set DEBUGCON, 0xe9
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000002       # bit 1: please pass memory information
        .set MB_CHECKSUM, -(MB_MAGIC + MB_FLAGS)

# store a register into a memory variable, making sure the store is tracked
        .macro STORE reg, var
        invlpg \var
        movl \reg, \var
        .endm

# print the NUL-terminated string at label (clobbers eax, esi; dx = port)
        .macro PUTS label
        movl $\label, %esi
.Lputs\@:
        lodsb
        testb %al, %al
        jz .Lputs_end\@
        outb %al, %dx
        jmp .Lputs\@
.Lputs_end\@:
        .endm

# print a 32-bit value as 8 hex digits (clobbers eax, ebx, ecx; dx = port)
        .macro PUTHEX src
        movl \src, %ebx
        movl $8, %ecx
.Lhex\@:
        roll $4, %ebx
        movl %ebx, %eax
        andl $0xf, %eax
        movb hexdigits(%eax), %al
        outb %al, %dx
        decl %ecx
        jnz .Lhex\@
        .endm

        .text
        .code32
        .align 4
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long MB_CHECKSUM

        .globl _start
_start:
        cli
        cld
        movl $0x04000000, %eax          # fallback: 64 MiB
        testl $1, (%ebx)                # mbi.flags bit 0: mem_lower/mem_upper valid
        jz 1f
        movl 8(%ebx), %eax              # mem_upper (KiB above 1 MiB)
        shll $10, %eax
        addl $0x00100000, %eax
1:      STORE %eax, ram_top

        movw $DEBUGCON, %dx
        PUTS msg_boot
        PUTHEX ram_top
        movb $10, %al
        outb %al, %dx

main_loop:
        rdtsc
        STORE %eax, t0_lo
        STORE %edx, t0_hi

        # ---- read pass: 32-bit sum of every dword in [SCAN_BASE, ram_top).
        # Pages are visited in SCAN_STRIDE interleaved lanes (lane k visits
        # pages k, k+STRIDE, k+2*STRIDE, ...; STRIDE 1 = sequential).  After
        # each 4 KiB page read, store the running sum into the next of the
        # HOT_PAGES hot pages (slot offset moves by 4 bytes per pass).
        xorl %edx, %edx
        movl pass, %edi
        shll $2, %edi
        andl $0xffc, %edi
        addl $HOT_BASE, %edi            # slot address in hot page 0
        xorl %ebp, %ebp                 # hot page index
        xorl %ebx, %ebx                 # lane
lane_loop:
        movl %ebx, %esi
        shll $12, %esi
        addl $SCAN_BASE, %esi
2:      cmpl ram_top, %esi
        jae lane_done
        movl $256, %ecx                 # 256 x 16 bytes = one 4 KiB page
21:     addl (%esi), %edx
        addl 4(%esi), %edx
        addl 8(%esi), %edx
        addl 12(%esi), %edx
        addl $16, %esi
        decl %ecx
        jnz 21b
        .if SCAN_STRIDE - 1
        addl $((SCAN_STRIDE - 1) * 4096), %esi
        .endif
        .if HOT_PAGES
        movl %ebp, %eax
        shll $12, %eax
        invlpg (%edi,%eax)
        movl %edx, (%edi,%eax)
        incl %ebp
        cmpl $HOT_PAGES, %ebp
        jb 2b
        xorl %ebp, %ebp
        .endif
        jmp 2b
lane_done:
        incl %ebx
        cmpl $SCAN_STRIDE, %ebx
        jb lane_loop
3:      STORE %edx, sum

        rdtsc
        subl t0_lo, %eax
        sbbl t0_hi, %edx
        STORE %eax, dt_lo
        STORE %edx, dt_hi

        # ---- report
        movw $DEBUGCON, %dx
        PUTS msg_pass
        PUTHEX pass
        PUTS msg_sum
        PUTHEX sum
        PUTS msg_cyc
        PUTHEX dt_hi
        PUTHEX dt_lo
        movb $10, %al
        outb %al, %dx

        movl pass, %eax
        incl %eax
        STORE %eax, pass
        jmp main_loop

        .data
hexdigits: .ascii "0123456789abcdef"
msg_boot:  .asciz "guest-touch: ram_top="
msg_pass:  .asciz "pass "
msg_sum:   .asciz " sum "
msg_cyc:   .asciz " cycles "

        .bss
        .balign 4096                    # keep written variables off the code page
ram_top: .long 0
pass:    .long 0
sum:     .long 0
t0_lo:   .long 0
t0_hi:   .long 0
dt_lo:   .long 0
dt_hi:   .long 0
