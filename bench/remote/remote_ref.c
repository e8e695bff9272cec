/*
 * remote_ref.c -- the C reference for the remote benchmarks (bench/remote, bench/migration), written for
 * this project. The bench builds it with gcc (bench/build/remote_ref). One binary, five roles:
 *
 *   remote_ref src    -p PORT -s BYTES          serve 4 KiB pages of a memory image over TCP: request = be64
 *                                               byte offset, reply = the 4096 bytes. Prints "listening PORT".
 *   remote_ref dst    -p PORT -s BYTES [-n PAGES] [-o seq|rand]
 *                                               C destination: memfd region (MAP_SHARED, like the daemon's
 *                                               destination processes) registered MISSING, a handler
 *                                               thread (blocking read of the uffd, request, recv, UFFDIO_COPY)
 *                                               and a toucher (main thread) timing every first touch.
 *   remote_ref attach --control PATH -s BYTES [-n PAGES] [-o seq|rand|none] [--memory memfd|anon]
 *                                               the same toucher, but the memory is served by postcopy-daemon:
 *                                               memfd + MAP_SHARED + uffd handed over the control socket
 *                                               (--memory anon: private anonymous memory, the uffd alone)
 *                                               (team MIGRATION.md handshake), touching starts when the state
 *                                               blob arrives; waits for "complete", verifies every page.
 *   remote_ref tcp-recv -p PORT -s BYTES [--place]
 *                                               raw loopback TCP ceiling: receive BYTES (4 MiB recv buffer);
 *                                               --place: the same bytes received 1 MiB at a time, each MiB
 *                                               placed with one UFFDIO_COPY into fresh anonymous memory
 *                                               (the least a post-copy receiver does).
 *   remote_ref tcp-send -p PORT -s BYTES        send BYTES from a prefilled image in 1 MiB writes.
 *
 * Each measuring role prints one JSON line on stdout. Times are CLOCK_MONOTONIC, which Node's
 * process.hrtime.bigint() also reads, so the bench can subtract a source's stop time from the state
 * arrival time printed here (downtime across processes).
 *
 * Page content (shared with bench/migration/source.ts): the first u32 of page p is page_word(p), the rest is
 * zero; so every page is non-zero (a real 4 KiB PAGE record, never ZERO) and cheap to fill and to verify.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ull
#define HIST_US 2048 /* 1 µs buckets up to 2 ms, the last bucket takes the rest */

static void die(const char *what) {
  fprintf(stderr, "remote_ref: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint32_t page_word(uint64_t p) { return ((uint32_t)p * 0x9E3779B1u + 0x7F4A7C15u) | 1u; }

static void fill_image(uint8_t *mem, uint64_t size) {
  for (uint64_t p = 0; p < size / PAGE; p++) *(uint32_t *)(mem + p * PAGE) = page_word(p);
}

/* ---- latency recorder: exact percentiles from a sorted copy, 1 µs histogram for the plot */
struct lat {
  double *v;
  uint64_t n, cap;
  uint64_t hist[HIST_US];
};

static void lat_init(struct lat *l, uint64_t cap) {
  memset(l, 0, sizeof *l);
  l->cap = cap ? cap : 1;
  l->v = malloc(l->cap * sizeof(double));
  if (!l->v) die("malloc");
}

static void lat_add(struct lat *l, double us) {
  if (l->n < l->cap) l->v[l->n++] = us;
  uint64_t b = us < 0 ? 0 : (uint64_t)us;
  l->hist[b >= HIST_US ? HIST_US - 1 : b]++;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void lat_json(struct lat *l, const char *name, int with_hist) {
  qsort(l->v, l->n, sizeof(double), cmp_double);
  double sum = 0;
  for (uint64_t i = 0; i < l->n; i++) sum += l->v[i];
#define PCT(p) (l->n ? l->v[(uint64_t)((p) / 100.0 * (double)(l->n - 1) + 0.5)] : 0)
  printf("\"%s\":{\"count\":%llu,\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"mean\":%.2f", name, (unsigned long long)l->n,
         PCT(50), PCT(99), l->n ? l->v[l->n - 1] : 0, l->n ? sum / (double)l->n : 0);
  if (with_hist) {
    uint64_t last = 0;
    for (uint64_t b = 0; b < HIST_US; b++) if (l->hist[b]) last = b;
    printf(",\"hist1us\":[");
    for (uint64_t b = 0; b <= last; b++) printf("%s%llu", b ? "," : "", (unsigned long long)l->hist[b]);
    printf("]");
  }
  printf("}");
}

/* ---- sockets */
static void tune(int s) {
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_tcp(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(s, 4) < 0) die("listen");
  socklen_t al = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &al);
  printf("listening %d\n", ntohs(a.sin_port));
  fflush(stdout);
  return s;
}

static int connect_tcp(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  for (int i = 0; connect(s, (struct sockaddr *)&a, sizeof a) < 0; i++) {
    if (i > 200) die("connect");
    usleep(10000);
  }
  tune(s);
  return s;
}

static void send_all(int s, const void *p, size_t n) {
  while (n) {
    ssize_t k = send(s, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("send");
    p = (const uint8_t *)p + k;
    n -= (size_t)k;
  }
}

static int recv_all(int s, void *p, size_t n) {
  while (n) {
    ssize_t k = recv(s, p, n, MSG_WAITALL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p = (uint8_t *)p + k;
    n -= (size_t)k;
  }
  return 0;
}

/* ---- options */
struct opts {
  int port;
  uint64_t size, pages;
  const char *order, *control;
  int timeout_s, sample_ms;
  int anon; /* attach: anonymous private memory (only the uffd is handed over) instead of a shared memfd */
  int place; /* tcp-recv: place every MiB received with UFFDIO_COPY into fresh anonymous memory */
};

static uint64_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (*end == 'K' || *end == 'k') v *= 1024;
  else if (*end == 'M' || *end == 'm') v *= 1048576;
  else if (*end == 'G' || *end == 'g') v *= 1073741824;
  return (uint64_t)v / PAGE * PAGE;
}

static struct opts parse(int argc, char **argv) {
  struct opts o = { .port = 0, .size = 64ull << 20, .pages = 0, .order = "seq", .control = NULL, .timeout_s = 300 };
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "-p")) o.port = atoi(v), i++;
    else if (!strcmp(a, "-s")) o.size = parse_size(v), i++;
    else if (!strcmp(a, "-n")) o.pages = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "-o")) o.order = v, i++;
    else if (!strcmp(a, "--control")) o.control = v, i++;
    else if (!strcmp(a, "--timeout")) o.timeout_s = atoi(v), i++;
    else if (!strcmp(a, "--sample-ms")) o.sample_ms = atoi(v), i++;
    else if (!strcmp(a, "--place")) o.place = 1;
    else if (!strcmp(a, "--memory")) {
      if (strcmp(v, "anon") && strcmp(v, "memfd")) { fprintf(stderr, "remote_ref: --memory anon|memfd\n"); exit(2); }
      o.anon = !strcmp(v, "anon"), i++;
    }
    else { fprintf(stderr, "remote_ref: unknown option %s\n", a); exit(2); }
  }
  if (o.size < PAGE) { fprintf(stderr, "remote_ref: -s too small\n"); exit(2); }
  uint64_t total = o.size / PAGE;
  if (o.pages == 0 || o.pages > total) o.pages = total;
  return o;
}

/* page visiting order: sequential, or a random permutation of all pages, first `n` of it */
static uint64_t *visit_order(const struct opts *o) {
  uint64_t total = o->size / PAGE;
  uint64_t *ord = malloc(total * sizeof *ord);
  if (!ord) die("malloc");
  for (uint64_t i = 0; i < total; i++) ord[i] = i;
  if (!strcmp(o->order, "rand")) {
    uint64_t x = 0x243F6A8885A308D3ull;
    for (uint64_t i = total - 1; i > 0; i--) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint64_t j = x % (i + 1), t = ord[i];
      ord[i] = ord[j], ord[j] = t;
    }
  }
  return ord;
}

/* Touch pages in order, timing each first touch; returns the number of content mismatches. */
static uint64_t touch_pages(uint8_t *mem, const uint64_t *ord, uint64_t n, struct lat *l) {
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t p = ord[i];
    uint64_t t0 = now_ns();
    uint32_t w = *(volatile uint32_t *)(mem + p * PAGE);
    uint64_t t1 = now_ns();
    lat_add(l, (double)(t1 - t0) / 1000.0);
    if (w != page_word(p)) bad++;
  }
  return bad;
}

static int open_uffd(uint64_t features, int nonblock) {
  int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
  if (u < 0) die("userfaultfd");
  struct uffdio_api api = { .api = UFFD_API, .features = features };
  if (ioctl(u, UFFDIO_API, &api) < 0) die("UFFDIO_API");
  return u;
}

static void register_missing(int u, void *addr, uint64_t len) {
  struct uffdio_register r = { .range = { .start = (uintptr_t)addr, .len = len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
  if (ioctl(u, UFFDIO_REGISTER, &r) < 0) die("UFFDIO_REGISTER");
}

/* ---------------------------------------------------------------- src */
static int run_src(const struct opts *o) {
  uint8_t *img = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (img == MAP_FAILED) die("mmap");
  fill_image(img, o->size);
  int ls = listen_tcp(o->port);
  int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0) die("accept");
  tune(s);
  uint64_t off_be;
  while (recv_all(s, &off_be, 8) == 0) {
    uint64_t off = be64toh(off_be);
    if (off % PAGE || off >= o->size) { fprintf(stderr, "remote_ref: bad offset %llu\n", (unsigned long long)off); return 1; }
    send_all(s, img + off, PAGE);
  }
  return 0;
}

/* ---------------------------------------------------------------- dst (C handler) */
struct handler {
  int uffd, sock;
  uint8_t *base;
  struct lat lat;
};

static void *handler_main(void *arg) {
  struct handler *h = arg;
  struct uffd_msg msgs[64];
  uint8_t *page = aligned_alloc(PAGE, PAGE);
  for (;;) {
    ssize_t k = read(h->uffd, msgs, sizeof msgs);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("read uffd");
    for (ssize_t i = 0; i < k / (ssize_t)sizeof msgs[0]; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      uint64_t t0 = now_ns();
      uint64_t addr = msgs[i].arg.pagefault.address & ~(PAGE - 1);
      uint64_t off_be = htobe64(addr - (uintptr_t)h->base);
      send_all(h->sock, &off_be, 8);
      if (recv_all(h->sock, page, PAGE) < 0) die("source closed");
      struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)page, .len = PAGE };
      if (ioctl(h->uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST) die("UFFDIO_COPY");
      lat_add(&h->lat, (double)(now_ns() - t0) / 1000.0);
    }
  }
  return NULL;
}

static int run_dst(const struct opts *o) {
  /* the same memory as the daemon's destination processes: a memfd mapped shared, MISSING on shmem */
  int memfd = memfd_create("bench.ram", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, (off_t)o->size) < 0) die("memfd");
  uint8_t *mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mem == MAP_FAILED) die("mmap");
  struct handler *h = calloc(1, sizeof *h);
  h->uffd = open_uffd(UFFD_FEATURE_MISSING_SHMEM, 0);
  register_missing(h->uffd, mem, o->size);
  h->base = mem;
  h->sock = connect_tcp(o->port);
  lat_init(&h->lat, o->pages + 64);
  uint64_t *ord = visit_order(o);
  struct lat touch;
  lat_init(&touch, o->pages);
  pthread_t th;
  if (pthread_create(&th, NULL, handler_main, h)) die("pthread_create");
  uint64_t t0 = now_ns();
  uint64_t bad = touch_pages(mem, ord, o->pages, &touch);
  uint64_t t1 = now_ns();
  printf("{\"impl\":\"C\",\"role\":\"dst\",\"pages\":%llu,\"order\":\"%s\",\"totalMs\":%.3f,\"mismatches\":%llu,",
         (unsigned long long)o->pages, o->order, (double)(t1 - t0) / 1e6, (unsigned long long)bad);
  lat_json(&touch, "touchUs", 1);
  printf(",");
  lat_json(&h->lat, "serviceUs", 0);
  printf("}\n");
  fflush(stdout);
  _exit(bad ? 1 : 0); /* the handler thread is blocked in read(): just leave */
}

/* ---------------------------------------------------------------- attach (postcopy-daemon serves the memory) */
struct reader {
  int fd;
  char buf[65536];
  size_t len;
};

static int reader_fill(struct reader *r, uint64_t deadline_ns) {
  for (;;) {
    int64_t left = (int64_t)(deadline_ns - now_ns()) / 1000000;
    if (left <= 0) { errno = ETIMEDOUT; die("waiting for the daemon"); }
    struct pollfd p = { .fd = r->fd, .events = POLLIN };
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0;
    r->len += (size_t)got;
    return 1;
  }
}

static int reader_line(struct reader *r, char *out, size_t cap, uint64_t deadline_ns) {
  for (;;) {
    char *nl = memchr(r->buf, '\n', r->len);
    if (nl) {
      size_t n = (size_t)(nl - r->buf);
      size_t c = n < cap - 1 ? n : cap - 1;
      memcpy(out, r->buf, c);
      out[c] = 0;
      r->len -= n + 1;
      memmove(r->buf, nl + 1, r->len);
      return 1;
    }
    if (r->len == sizeof r->buf) { errno = EMSGSIZE; die("control line too long"); }
    if (!reader_fill(r, deadline_ns)) return 0;
  }
}

static void reader_skip(struct reader *r, size_t want, uint64_t deadline_ns) {
  while (want) {
    if (r->len == 0 && !reader_fill(r, deadline_ns)) { errno = EPIPE; die("state blob cut short"); }
    size_t n = r->len < want ? r->len : want;
    r->len -= n;
    want -= n;
    memmove(r->buf, r->buf + n, r->len);
  }
}

/* Optional sampler for the plots: pages resident in the destination mapping over time (mincore on the
   shared memfd mapping sees pages placed by UFFDIO_COPY), until all are present. */
struct sampler {
  uint8_t *mem;
  uint64_t size;
  int interval_ms;
  volatile int stop;
  uint64_t n, cap;
  uint64_t *t_ns, *present;
};

static void *sampler_main(void *arg) {
  struct sampler *s = arg;
  uint64_t pages = s->size / PAGE;
  unsigned char *vec = malloc(pages);
  while (!s->stop && s->n < s->cap) {
    uint64_t cnt = 0;
    if (mincore(s->mem, s->size, vec) == 0) for (uint64_t i = 0; i < pages; i++) cnt += vec[i] & 1;
    s->t_ns[s->n] = now_ns(), s->present[s->n] = cnt, s->n++;
    if (cnt == pages) break;
    usleep((useconds_t)s->interval_ms * 1000);
  }
  free(vec);
  return NULL;
}

static int run_attach(const struct opts *o) {
  if (!o->control) { fprintf(stderr, "remote_ref: attach needs --control PATH\n"); return 2; }
  int memfd = -1;
  uint8_t *mem;
  if (o->anon) {
    mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  } else {
    memfd = memfd_create("bench.ram", MFD_CLOEXEC);
    if (memfd < 0) die("memfd_create");
    if (ftruncate(memfd, (off_t)o->size) < 0) die("ftruncate");
    mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  }
  if (mem == MAP_FAILED) die("mmap");
  int uffd = open_uffd(o->anon ? 0 : UFFD_FEATURE_MISSING_SHMEM, 1);
  register_missing(uffd, mem, o->size);
  uint64_t *ord = visit_order(o);
  struct lat touch;
  lat_init(&touch, strcmp(o->order, "none") ? o->pages : 1);

  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", o->control);
  for (int i = 0; connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0; i++) {
    if (i > 500) die("connect to the daemon's control socket");
    usleep(10000);
  }
  char json[512];
  int jl = snprintf(json, sizeof json,
                    "{\"version\":1,\"pid\":%d,\"mode\":\"missing\",\"regions\":[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
                    "\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096,\"name\":\"bench.ram\"}]}\n",
                    (int)getpid(), (unsigned long long)(uintptr_t)mem, (unsigned long long)o->size);
  int fds[2] = { uffd, memfd };
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof fds)]; } cbuf;
  memset(&cbuf, 0, sizeof cbuf);
  struct iovec iov = { .iov_base = json, .iov_len = (size_t)jl };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  size_t nfds = o->anon ? 1 : 2; /* anonymous memory: the uffd alone */
  msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
  c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) != jl) die("sendmsg to the daemon");
  fprintf(stderr, "remote_ref: attached (%llu bytes), waiting for the state\n", (unsigned long long)o->size);

  static struct reader r;
  r.fd = sock;
  char line[65536];
  uint64_t deadline = now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
  if (!reader_line(&r, line, sizeof line, deadline)) { errno = EPIPE; die("daemon closed before the state"); }
  if (!strstr(line, "\"state\"")) { fprintf(stderr, "remote_ref: expected state, got %s\n", line); return 1; }
  const char *lp = strstr(line, "\"length\":");
  size_t blen = lp ? strtoull(lp + 9, NULL, 10) : 0;
  reader_skip(&r, blen, deadline);
  uint64_t t_state = now_ns(); /* the process runs from here */
  static struct sampler smp;
  pthread_t sth;
  if (o->sample_ms > 0) {
    smp = (struct sampler){ .mem = mem, .size = o->size, .interval_ms = o->sample_ms, .cap = 100000 };
    smp.t_ns = calloc(smp.cap, 8), smp.present = calloc(smp.cap, 8);
    if (pthread_create(&sth, NULL, sampler_main, &smp)) die("pthread_create");
  }

  uint64_t bad = 0, touched = 0;
  uint64_t t0 = now_ns();
  if (strcmp(o->order, "none")) bad = touch_pages(mem, ord, o->pages, &touch), touched = o->pages;
  uint64_t t_touched = now_ns();

  int complete = 0;
  while (reader_line(&r, line, sizeof line, deadline)) {
    if (strstr(line, "\"type\":\"complete\"")) { complete = 1; break; }
    if (strstr(line, "\"type\":\"error\"")) { fprintf(stderr, "remote_ref: daemon error: %s\n", line); break; }
  }
  uint64_t t_complete = now_ns();
  if (o->sample_ms > 0) smp.stop = 1, pthread_join(sth, NULL);
  /* after completion the range is unregistered: verify every page (no faults any more) */
  uint64_t wrong = 0;
  if (complete) for (uint64_t p = 0; p < o->size / PAGE; p++) wrong += *(uint32_t *)(mem + p * PAGE) != page_word(p);
  printf("{\"impl\":\"ours\",\"role\":\"attach\",\"pages\":%llu,\"order\":\"%s\",\"complete\":%s,\"stateAtNs\":%llu,"
         "\"totalMs\":%.3f,\"touchedToCompleteMs\":%.3f,\"stateToCompleteMs\":%.3f,\"mismatches\":%llu,\"wrongPages\":%llu,",
         (unsigned long long)touched, o->order, complete ? "true" : "false", (unsigned long long)t_state,
         (double)(t_touched - t0) / 1e6, (double)(t_complete - t_touched) / 1e6, (double)(t_complete - t_state) / 1e6,
         (unsigned long long)bad, (unsigned long long)wrong);
  lat_json(&touch, "touchUs", 1);
  if (o->sample_ms > 0) {
    printf(",\"presentTimeline\":[");
    for (uint64_t i = 0; i < smp.n; i++) printf("%s[%llu,%llu]", i ? "," : "", (unsigned long long)smp.t_ns[i], (unsigned long long)smp.present[i]);
    printf("]");
  }
  printf("}\n");
  fflush(stdout);
  return complete && !bad && !wrong ? 0 : 1;
}

/* ---------------------------------------------------------------- raw TCP ceiling */
static int run_tcp_recv(const struct opts *o) {
  int ls = listen_tcp(o->port);
  int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0) die("accept");
  uint64_t t0 = now_ns();
  size_t cap = 4 << 20;
  uint8_t *buf = malloc(cap);
  uint64_t got = 0;
  if (o->place) {
    /* The least any post-copy receiver must do: receive 1 MiB, place it with one UFFDIO_COPY into fresh
       anonymous memory registered MISSING (no record headers, no protocol, no page requests). */
    uint8_t *mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    int u = open_uffd(0, 0);
    register_missing(u, mem, o->size);
    const size_t chunk = 1 << 20;
    while (got < o->size) {
      size_t want = o->size - got < chunk ? o->size - got : chunk;
      if (recv_all(s, buf, want) < 0) die("recv");
      struct uffdio_copy c = { .dst = (uintptr_t)mem + got, .src = (uintptr_t)buf, .len = want };
      if (ioctl(u, UFFDIO_COPY, &c) < 0) die("UFFDIO_COPY");
      got += want;
    }
  }
  while (got < o->size) {
    ssize_t k = recv(s, buf, cap, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) die("recv");
    got += (uint64_t)k;
  }
  uint64_t t1 = now_ns();
  printf("{\"impl\":\"%s\",\"bytes\":%llu,\"ms\":%.3f,\"GBps\":%.3f}\n", o->place ? "tcp-recv-copy" : "raw-tcp",
         (unsigned long long)got, (double)(t1 - t0) / 1e6, (double)got / (double)(t1 - t0));
  return 0;
}

static int run_tcp_send(const struct opts *o) {
  uint8_t *img = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (img == MAP_FAILED) die("mmap");
  fill_image(img, o->size);
  int s = connect_tcp(o->port);
  for (uint64_t off = 0; off < o->size; off += 1 << 20) {
    uint64_t n = o->size - off < (1 << 20) ? o->size - off : (1 << 20);
    send_all(s, img + off, n);
  }
  shutdown(s, SHUT_WR);
  char b;
  (void)!recv(s, &b, 1, 0); /* until the receiver closes */
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOFBF, 1 << 20);
  if (argc < 2) { fprintf(stderr, "usage: remote_ref src|dst|attach|tcp-recv|tcp-send [options] (see the source)\n"); return 2; }
  struct opts o = parse(argc, argv);
  if (!strcmp(argv[1], "src")) return run_src(&o);
  if (!strcmp(argv[1], "dst")) return run_dst(&o);
  if (!strcmp(argv[1], "attach")) return run_attach(&o);
  if (!strcmp(argv[1], "tcp-recv")) return run_tcp_recv(&o);
  if (!strcmp(argv[1], "tcp-send")) return run_tcp_send(&o);
  fprintf(stderr, "remote_ref: unknown role %s\n", argv[1]);
  return 2;
}
