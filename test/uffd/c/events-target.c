/* Target process for test/uffd/events.test.ts: a process with a uffd (EVENT_FORK|REMAP|REMOVE|UNMAP) whose
 * monitor is a separate Node process. Node cannot fork() safely (other threads, V8 state), so the process
 * that forks, mremaps, madvises and munmaps is this small C program, built with gcc at test time.
 * The monitor takes our uffd with pidfd_getfd after we print READY, then writes one byte to stdin.
 * Protocol on stdout: "READY <uffd> <addr> <pages> <pagesize>" then "CHECK <name> <got> <want>" lines, then "DONE".
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef UFFD_FEATURE_EVENT_FORK
#error "linux/userfaultfd.h too old"
#endif

static int failures;
static void check(const char *name, unsigned got, unsigned want) {
  printf("CHECK %s %u %u\n", name, got, want);
  fflush(stdout);
  if (got != want) failures++;
}

int main(void) {
  long ps = sysconf(_SC_PAGESIZE);
  int pages = 8;
  int uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
  if (uffd < 0) { perror("userfaultfd"); return 2; }
  struct uffdio_api api = { .api = UFFD_API,
    .features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP };
  if (ioctl(uffd, UFFDIO_API, &api)) { perror("UFFDIO_API"); return 3; }
  char *area = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) { perror("mmap"); return 4; }
  struct uffdio_register reg = { .range = { (unsigned long)area, pages * ps }, .mode = UFFDIO_REGISTER_MODE_MISSING };
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("UFFDIO_REGISTER"); return 5; }
  printf("READY %d %lu %d %ld\n", uffd, (unsigned long)area, pages, ps);
  fflush(stdout);
  char go;
  if (read(0, &go, 1) != 1) return 6;

  /* 1. plain missing faults: the monitor copies value page+1 */
  check("fault-page0", *(volatile unsigned *)(area + 0 * ps), 1);
  check("fault-page1", *(volatile unsigned *)(area + 1 * ps), 2);

  /* 2. fork: the child's fault goes to the uffd delivered by the FORK event. Pages 0-1 are copied into the
   * child's mm by fork; page 2 is missing there. */
  pid_t pid = fork();
  if (pid == 0) {
    unsigned v0 = *(volatile unsigned *)(area + 0 * ps);
    unsigned v2 = *(volatile unsigned *)(area + 2 * ps);
    _exit(v0 == 1 && v2 == 3 ? 0 : 10);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  check("fork-child-exit", WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st), 0);

  /* 3. mremap to a new address (REMAP), then fault page 3 at the new place */
  char *dest = mmap(NULL, pages * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *moved = mremap(area, pages * ps, pages * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
  if (moved == MAP_FAILED) { perror("mremap"); return 7; }
  check("remap-page3", *(volatile unsigned *)(moved + 3 * ps), 4);
  check("remap-page0-kept", *(volatile unsigned *)(moved + 0 * ps), 1);

  /* 4. MADV_DONTNEED on pages 0-1 (REMOVE): the monitor resolves later faults there with zero pages */
  if (madvise(moved, 2 * ps, MADV_DONTNEED)) { perror("madvise"); return 8; }
  check("remove-page0-zero", *(volatile unsigned *)(moved + 0 * ps), 0);

  /* 5. munmap (UNMAP) */
  if (munmap(moved, pages * ps)) { perror("munmap"); return 9; }
  printf("DONE %d\n", failures);
  fflush(stdout);
  return failures ? 1 : 0;
}
