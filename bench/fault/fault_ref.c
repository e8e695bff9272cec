// C reference for `npm run bench:fault` (built by bench/fault/run.ts with gcc -O2 -pthread).
//   fault_ref fault -n PAGES     in-process fault round trip: the main thread touches PAGES fresh pages of a
//                                MISSING-registered anonymous region, one handler thread serves them with
//                                poll([uffd, eventfd]) -> read up to 64 msgs -> UFFDIO_COPY (same loop as TS).
//   fault_ref bulk -s MIB        UFFDIO_COPY throughput over a fresh MISSING region in 4K/64K/2M chunks, and
//                                memcpy bandwidth into fresh and into prefaulted memory.
// Prints one JSON object on stdout.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define BATCH 64

static void die(const char *what) { perror(what); exit(1); }

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int uffd_open(void) {
  int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) die("userfaultfd");
  struct uffdio_api api = { .api = UFFD_API, .features = 0 };
  if (ioctl(fd, UFFDIO_API, &api)) die("UFFDIO_API");
  return fd;
}

static void uffd_register(int fd, void *addr, size_t len) {
  struct uffdio_register reg = { .range = { (uintptr_t)addr, len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
  if (ioctl(fd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");
}

static void *map_anon(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

// ---- fault round trip ------------------------------------------------------------------------------

struct handler_args { int uffd, stopfd; long served, reads; };

static void *handler(void *arg) {
  struct handler_args *h = arg;
  static char src[PAGE] __attribute__((aligned(4096)));
  memset(src, 0xab, sizeof src);
  struct uffd_msg msgs[BATCH];
  struct pollfd pfd[2] = { { h->uffd, POLLIN, 0 }, { h->stopfd, POLLIN, 0 } };
  for (;;) {
    if (poll(pfd, 2, -1) < 0) { if (errno == EINTR) continue; die("poll"); }
    ssize_t n = read(h->uffd, msgs, sizeof msgs);
    if (n < 0) {
      if (errno != EAGAIN) die("read(uffd)");
      if (pfd[1].revents & POLLIN) break; // stop only once nothing is pending
      continue;
    }
    h->reads++;
    for (long i = 0; i < n / (long)sizeof(struct uffd_msg); i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      struct uffdio_copy c = { .dst = msgs[i].arg.pagefault.address & ~(PAGE - 1), .src = (uintptr_t)src, .len = PAGE, .mode = 0 };
      if (ioctl(h->uffd, UFFDIO_COPY, &c) && errno == EEXIST) {
        struct uffdio_range r = { c.dst, PAGE };
        ioctl(h->uffd, UFFDIO_WAKE, &r);
      }
      h->served++;
    }
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int run_fault(long pages) {
  size_t len = pages * PAGE;
  char *region = map_anon(len);
  int uffd = uffd_open();
  uffd_register(uffd, region, len);
  int stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct handler_args h = { uffd, stopfd, 0, 0 };
  pthread_t th;
  if (pthread_create(&th, NULL, handler, &h)) die("pthread_create");
  double *lat = malloc(pages * sizeof *lat);
  double t0 = now_ns();
  for (long p = 0; p < pages; p++) {
    double a = now_ns();
    ((volatile char *)region)[p * PAGE] = 1;
    lat[p] = now_ns() - a;
  }
  double total = now_ns() - t0;
  uint64_t one = 1;
  if (write(stopfd, &one, 8) != 8) die("write(eventfd)");
  pthread_join(th, NULL);
  qsort(lat, pages, sizeof *lat, cmp_double);
  printf("{\"impl\":\"c\",\"mode\":\"fault\",\"faults\":%ld,\"served\":%ld,\"reads\":%ld,\"totalMs\":%.3f,"
         "\"meanUs\":%.3f,\"p50Us\":%.3f,\"p99Us\":%.3f,\"faultsPerSec\":%.0f}\n",
         pages, h.served, h.reads, total / 1e6, total / pages / 1e3, lat[pages / 2] / 1e3,
         lat[(long)(pages * 0.99)] / 1e3, pages / (total / 1e9));
  return h.served == pages ? 0 : 1;
}

// ---- bulk UFFDIO_COPY vs memcpy ------------------------------------------------------------------------

static int run_bulk(long mib) {
  size_t len = (size_t)mib << 20;
  size_t chunks[3] = { 4096, 65536, 2 << 20 };
  char *src = map_anon(2 << 20);
  memset(src, 0x5a, 2 << 20);
  printf("{\"impl\":\"c\",\"mode\":\"bulk\",\"bytes\":%zu,\"copy\":{", len);
  for (int k = 0; k < 3; k++) {
    char *dst = map_anon(len);
    int uffd = uffd_open();
    uffd_register(uffd, dst, len);
    double t0 = now_ns();
    for (size_t off = 0; off < len; off += chunks[k]) {
      struct uffdio_copy c = { .dst = (uintptr_t)dst + off, .src = (uintptr_t)src, .len = chunks[k], .mode = 0 };
      if (ioctl(uffd, UFFDIO_COPY, &c)) die("UFFDIO_COPY");
    }
    double s = (now_ns() - t0) / 1e9;
    printf("%s\"%zu\":{\"gbPerSec\":%.3f,\"usPerIoctl\":%.3f}", k ? "," : "", chunks[k], len / s / 1e9, s * 1e6 / (len / chunks[k]));
    close(uffd);
    munmap(dst, len);
  }
  char *dst = map_anon(len);
  double t0 = now_ns();
  for (size_t off = 0; off < len; off += 2 << 20) memcpy(dst + off, src, 2 << 20);
  double fresh = (now_ns() - t0) / 1e9;
  t0 = now_ns();
  for (size_t off = 0; off < len; off += 2 << 20) memcpy(dst + off, src, 2 << 20);
  double warm = (now_ns() - t0) / 1e9;
  printf("},\"memcpyFreshGbPerSec\":%.3f,\"memcpyPrefaultedGbPerSec\":%.3f}\n", len / fresh / 1e9, len / warm / 1e9);
  munmap(dst, len);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: fault_ref fault -n PAGES | bulk -s MIB\n"); return 2; }
  long n = 65536, mib = 1024;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "-s")) mib = atol(argv[i + 1]);
  }
  if (!strcmp(argv[1], "fault")) return run_fault(n);
  if (!strcmp(argv[1], "bulk")) return run_bulk(mib);
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
