/*
 * The toy process in C: the same deterministic workload as examples/toy/workload.ts (bit for bit), and the
 * destination side of the postcopy-daemon control-socket handshake (team MIGRATION.md), to show the daemon
 * serves a process that is not Node.
 *
 *   toy reference --size 64M --pattern hotset --seed 1 --steps K [--print-state]
 *       never migrated: init, K steps, print "digest=<32 hex> steps=K" (and "state=<hex>" of the 48-byte blob)
 *   toy dest --control PATH --size 64M --steps K [--mode missing|minor]
 *       memfd + MAP_SHARED + userfaultfd + register, hand [uffd, memfd] + JSON to the daemon (SCM_RIGHTS),
 *       wait for the state blob, run until step K, hash all memory (pulls every page), print the digest,
 *       then wait for the daemon's "complete" line.
 *
 * Build: gcc -O2 -Wall -o toy toy.c      (test/examples and the demo build it on the fly)
 * Keep the arithmetic in sync with workload.ts: u32 everywhere, wrapping multiplies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
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

#define PAGE_SIZE 4096u
#define WORDS_PER_PAGE 1024u
#define STATE_MAGIC 0x57594f54u
#define STATE_VERSION 1u
#define STATE_SIZE 48
#define MIN_SIZE (16ull * PAGE_SIZE)
#define MAX_SIZE (8ull << 30)

enum { PAT_SEQUENTIAL = 0, PAT_UNIFORM = 1, PAT_HOTSET = 2 };
static const char *pattern_names[] = { "sequential", "uniform", "hotset" };

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "c-toy: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/* ---------------------------------------------------------------- workload (mirror of workload.ts) */

struct workload {
  uint32_t *mem; /* whole region (C has no 4 GiB view limit) */
  uint64_t size;
  uint32_t pages, pattern, seed, hot_base, hot_pages;
  uint64_t steps;
  uint32_t rng, cursor, h1, h2;
};

static uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static int is_initially_zero_page(uint32_t seed, uint32_t page) {
  if (((page >> 8) & 15u) == 15u) return 1;
  return (fmix32(seed ^ (page * 0x9e3779b1u)) & 7u) == 0;
}

static void workload_setup(struct workload *w, uint64_t size, uint32_t pattern, uint32_t seed) {
  memset(w, 0, sizeof *w);
  w->size = size;
  w->pattern = pattern;
  w->seed = seed;
  w->pages = (uint32_t)(size / PAGE_SIZE);
  uint32_t hp = w->pages >> 8;
  if (hp < 16) hp = 16;
  if (hp > w->pages) hp = w->pages;
  w->hot_pages = hp;
  w->hot_base = fmix32(seed ^ 0x5bd1e995u) % w->pages;
  w->rng = fmix32(seed + 0x6d2b79f5u);
  w->h1 = fmix32(seed ^ 0x01234567u);
  w->h2 = fmix32(seed ^ 0x89abcdefu);
}

static void workload_init(struct workload *w) {
  for (uint32_t page = 0; page < w->pages; page++) {
    if (is_initially_zero_page(w->seed, page)) continue;
    uint32_t x = fmix32(w->seed ^ ((page + 1u) * 0x9e3779b1u)) | 1u;
    uint32_t *p = w->mem + (uint64_t)page * WORDS_PER_PAGE;
    for (uint32_t i = 0; i < WORDS_PER_PAGE; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      p[i] = x;
    }
  }
}

static inline uint32_t mulberry32(uint32_t *a) {
  uint32_t t = (*a += 0x6d2b79f5u);
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

static void workload_step(struct workload *w, uint64_t n) {
  uint32_t a = w->rng, cursor = w->cursor, h1 = w->h1, h2 = w->h2;
  const uint32_t pages = w->pages, hot_base = w->hot_base, hot_pages = w->hot_pages;
  uint32_t *mem = w->mem;
  for (uint64_t s = 0; s < n; s++) {
    uint32_t r = mulberry32(&a), page;
    if (w->pattern == PAT_SEQUENTIAL) {
      page = cursor;
      if (++cursor == pages) cursor = 0;
    } else if (w->pattern == PAT_UNIFORM) {
      page = r % pages;
    } else if ((r & 15u) != 0) {
      page = hot_base + ((r >> 4) % hot_pages);
      if (page >= pages) page -= pages;
    } else {
      page = (r >> 4) % pages;
    }
    uint32_t r2 = mulberry32(&a);
    uint64_t idx = (uint64_t)page * WORDS_PER_PAGE + (r2 & 1023u);
    uint32_t v = mem[idx];
    uint32_t k = (v ^ r2) * 0xcc9e2d51u;
    k = (k << 15) | (k >> 17);
    k *= 0x1b873593u;
    h1 ^= k;
    h1 = (h1 << 13) | (h1 >> 19);
    h1 = h1 * 5u + 0xe6546b64u;
    h2 = (h2 ^ page) * 0x9e3779b1u + (h1 ^ (h1 >> 16));
    mem[idx] = h1 ^ (h2 >> 3) ^ v;
  }
  w->rng = a;
  w->cursor = cursor;
  w->h1 = h1;
  w->h2 = h2;
  w->steps += n;
}

static void put32(uint8_t *b, uint32_t v) { memcpy(b, &v, 4); } /* little-endian hosts (x86_64, aarch64) */
static uint32_t get32(const uint8_t *b) { uint32_t v; memcpy(&v, b, 4); return v; }

static void workload_snapshot(const struct workload *w, uint8_t out[STATE_SIZE]) {
  memset(out, 0, STATE_SIZE);
  put32(out + 0, STATE_MAGIC);
  put32(out + 4, STATE_VERSION);
  put32(out + 8, w->pattern);
  put32(out + 12, w->seed);
  put32(out + 16, w->pages);
  put32(out + 20, (uint32_t)w->steps);
  put32(out + 24, (uint32_t)(w->steps >> 32));
  put32(out + 28, w->rng);
  put32(out + 32, w->cursor);
  put32(out + 36, w->h1);
  put32(out + 40, w->h2);
}

/* Adopt a state blob; the region size must match. Returns an error message or NULL. */
static const char *workload_restore(struct workload *w, const uint8_t *b, size_t len) {
  static char msg[160];
  if (len != STATE_SIZE) { snprintf(msg, sizeof msg, "state blob is %zu bytes, expected %d", len, STATE_SIZE); return msg; }
  if (get32(b) != STATE_MAGIC || get32(b + 4) != STATE_VERSION) return "state blob is not a TOYW v1 blob";
  uint32_t pattern = get32(b + 8), seed = get32(b + 12), pages = get32(b + 16);
  if (pattern > PAT_HOTSET) return "state blob has an unknown pattern";
  if (pages != w->pages) { snprintf(msg, sizeof msg, "state blob is for %u pages, region has %u", pages, w->pages); return msg; }
  uint32_t cursor = get32(b + 32);
  if (cursor >= pages) return "state blob cursor out of range";
  uint32_t *mem = w->mem;
  workload_setup(w, w->size, pattern, seed);
  w->mem = mem;
  w->steps = (uint64_t)get32(b + 20) | ((uint64_t)get32(b + 24) << 32);
  w->rng = get32(b + 28);
  w->cursor = cursor;
  w->h1 = get32(b + 36);
  w->h2 = get32(b + 40);
  return NULL;
}

/* 64-bit memory hash, same two lanes as Workload.memoryHash(). Reads every word. */
static void workload_memory_hash(const struct workload *w, uint32_t *ha, uint32_t *hb) {
  uint32_t a = 0x811c9dc5u, b = w->seed;
  const uint32_t *p = w->mem;
  uint64_t n = w->size / 4;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t x = p[i];
    a = (a ^ x) * 0x01000193u;
    b = (((b << 5) | (b >> 27)) ^ x) * 0x9e3779b1u;
  }
  *ha = a;
  *hb = b;
}

static void print_digest(const struct workload *w) {
  uint32_t a, b;
  workload_memory_hash(w, &a, &b);
  printf("digest=%08x%08x%08x%08x steps=%llu\n", w->h1, w->h2, a, b, (unsigned long long)w->steps);
  fflush(stdout);
}

/* ---------------------------------------------------------------- command line */

struct opts {
  const char *mode, *control, *region_mode;
  uint64_t size, steps;
  uint32_t pattern, seed;
  int print_state;
  int timeout_s;
};

static uint64_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  uint64_t mult = 1;
  switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    default: break;
  }
  if (*end == 'i') end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end || v < 0) die("cannot parse size \"%s\"", s);
  return (uint64_t)(v * (double)mult + 0.5);
}

static uint32_t parse_pattern(const char *s) {
  if (!strcmp(s, "sequential") || !strcmp(s, "seq")) return PAT_SEQUENTIAL;
  if (!strcmp(s, "uniform") || !strcmp(s, "random")) return PAT_UNIFORM;
  if (!strcmp(s, "hotset") || !strcmp(s, "hot")) return PAT_HOTSET;
  die("unknown pattern \"%s\" (sequential | uniform | hotset)", s);
}

static void usage(void) {
  fprintf(stderr,
          "usage: toy reference [--size 64M] [--pattern sequential|uniform|hotset] [--seed N] [--steps K] [--print-state]\n"
          "       toy dest --control PATH [--size 64M] [--steps K] [--mode missing|minor] [--timeout SEC]\n");
  exit(2);
}

static struct opts parse_args(int argc, char **argv) {
  struct opts o = { .size = 64ull << 20, .steps = 1000000, .pattern = PAT_HOTSET, .seed = 1, .region_mode = "missing", .timeout_s = 120 };
  if (argc < 2) usage();
  o.mode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() do { if (!v) die("%s needs a value", a); i++; } while (0)
    if (!strcmp(a, "--size")) { NEED(); o.size = parse_size(v); }
    else if (!strcmp(a, "--steps")) { NEED(); o.steps = strtoull(v, NULL, 10); }
    else if (!strcmp(a, "--pattern")) { NEED(); o.pattern = parse_pattern(v); }
    else if (!strcmp(a, "--seed")) { NEED(); o.seed = (uint32_t)strtoul(v, NULL, 0); }
    else if (!strcmp(a, "--control")) { NEED(); o.control = v; }
    else if (!strcmp(a, "--mode")) { NEED(); o.region_mode = v; }
    else if (!strcmp(a, "--timeout")) { NEED(); o.timeout_s = atoi(v); }
    else if (!strcmp(a, "--print-state")) o.print_state = 1;
    else die("unknown option %s", a);
#undef NEED
  }
  if (o.size < MIN_SIZE || o.size > MAX_SIZE || o.size % PAGE_SIZE) die("size %llu must be a multiple of 4096 between %llu and %llu", (unsigned long long)o.size, MIN_SIZE, MAX_SIZE);
  if (strcmp(o.region_mode, "missing") && strcmp(o.region_mode, "minor")) die("--mode must be missing or minor");
  return o;
}

/* ---------------------------------------------------------------- reference mode */

static int run_reference(const struct opts *o) {
  struct workload w;
  workload_setup(&w, o->size, o->pattern, o->seed);
  w.mem = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (w.mem == MAP_FAILED) die("mmap %llu bytes: %s", (unsigned long long)o->size, strerror(errno));
  workload_init(&w);
  workload_step(&w, o->steps);
  if (o->print_state) {
    uint8_t st[STATE_SIZE];
    workload_snapshot(&w, st);
    printf("state=");
    for (int i = 0; i < STATE_SIZE; i++) printf("%02x", st[i]);
    printf("\n");
  }
  print_digest(&w);
  return 0;
}

/* ---------------------------------------------------------------- destination mode */

/* Line-buffered reader over the control socket, with a deadline. */
struct reader {
  int fd;
  char buf[4096];
  size_t len;
  time_t deadline;
};

static int reader_fill(struct reader *r) {
  for (;;) {
    int left = (int)(r->deadline - time(NULL));
    if (left <= 0) die("timed out waiting for the daemon on the control socket");
    struct pollfd p = { .fd = r->fd, .events = POLLIN };
    int n = poll(&p, 1, left * 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("poll: %s", strerror(errno));
    if (n == 0) continue;
    ssize_t got = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) die("recv on the control socket: %s", strerror(errno));
    if (got == 0) return 0;
    r->len += (size_t)got;
    return 1;
  }
}

/* Next '\n'-terminated line (without the '\n') into out; 0 at EOF. */
static int reader_line(struct reader *r, char *out, size_t cap) {
  for (;;) {
    char *nl = memchr(r->buf, '\n', r->len);
    if (nl) {
      size_t n = (size_t)(nl - r->buf);
      if (n >= cap) die("control line too long (%zu bytes)", n);
      memcpy(out, r->buf, n);
      out[n] = 0;
      r->len -= n + 1;
      memmove(r->buf, nl + 1, r->len);
      return 1;
    }
    if (r->len == sizeof r->buf) die("control line longer than %zu bytes", sizeof r->buf);
    if (!reader_fill(r)) return 0;
  }
}

static void reader_bytes(struct reader *r, uint8_t *out, size_t want) {
  size_t done = 0;
  while (done < want) {
    if (r->len == 0 && !reader_fill(r)) die("control socket closed after %zu of %zu state bytes", done, want);
    size_t n = r->len < want - done ? r->len : want - done;
    memcpy(out + done, r->buf, n);
    done += n;
    r->len -= n;
    memmove(r->buf, r->buf + n, r->len);
  }
}

/* The value of "key" in a flat JSON line (string or number), or NULL. Enough for the daemon's own lines. */
static const char *json_field(const char *line, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  if (!p) return NULL;
  p += strlen(pat);
  while (*p == ' ') p++;
  size_t n = 0;
  if (*p == '"') {
    p++;
    while (*p && *p != '"' && n + 1 < cap) { if (*p == '\\' && p[1]) p++; out[n++] = *p++; }
  } else {
    while (*p && *p != ',' && *p != '}' && n + 1 < cap) out[n++] = *p++;
  }
  out[n] = 0;
  return out;
}

static int run_dest(const struct opts *o) {
  if (!o->control) die("dest mode needs --control PATH");
  int minor = !strcmp(o->region_mode, "minor");

  /* 1. The region: a memfd (the daemon maps it too in minor mode) mapped shared. */
  int memfd = memfd_create("toy.ram", MFD_CLOEXEC);
  if (memfd < 0) die("memfd_create: %s", strerror(errno));
  if (ftruncate(memfd, (off_t)o->size) < 0) die("ftruncate: %s", strerror(errno));
  void *addr = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (addr == MAP_FAILED) die("mmap: %s", strerror(errno));

  /* 2. userfaultfd: handshake, register. Non-blocking: the daemon polls it; this process never reads it. */
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) {
    int err = errno;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) { uffd = ioctl(dev, _IO(0xAA, 0x00), O_CLOEXEC | O_NONBLOCK); close(dev); }
    if (uffd < 0) die("userfaultfd: %s (try root or vm.unprivileged_userfaultfd=1)", strerror(err));
  }
  struct uffdio_api api = { .api = UFFD_API, .features = minor ? UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MISSING_SHMEM : UFFD_FEATURE_MISSING_SHMEM };
  if (ioctl(uffd, UFFDIO_API, &api) < 0) die("UFFDIO_API (features 0x%llx): %s", (unsigned long long)api.features, strerror(errno));
  /* minor mode registers MISSING too: a never-written memfd page would otherwise read as zeros silently. */
  struct uffdio_register reg = { .range = { .start = (uintptr_t)addr, .len = o->size },
                                 .mode = UFFDIO_REGISTER_MODE_MISSING | (minor ? UFFDIO_REGISTER_MODE_MINOR : 0) };
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER: %s", strerror(errno));

  /* 3. Control socket: one sendmsg with SCM_RIGHTS [uffd, memfd] and the JSON line. */
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket: %s", strerror(errno));
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(o->control) >= sizeof sa.sun_path) die("control path too long");
  strcpy(sa.sun_path, o->control);
  if (connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect %s: %s", o->control, strerror(errno));

  char json[512];
  int jl = snprintf(json, sizeof json,
                    "{\"version\":1,\"pid\":%d,\"mode\":\"%s\",\"regions\":[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
                    "\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096,\"name\":\"toy.ram\"}]}\n",
                    (int)getpid(), o->region_mode, (unsigned long long)(uintptr_t)addr, (unsigned long long)o->size);
  int fds[2] = { uffd, memfd };
  union { struct cmsghdr h; char b[CMSG_SPACE(sizeof fds)]; } cbuf;
  memset(&cbuf, 0, sizeof cbuf);
  struct iovec iov = { .iov_base = json, .iov_len = (size_t)jl };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  memcpy(CMSG_DATA(c), fds, sizeof fds);
  ssize_t sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  if (sent != jl) die("sendmsg to the daemon: %s", sent < 0 ? strerror(errno) : "short write");
  fprintf(stderr, "c-toy: attached to %s (%s mode, %llu bytes at %p), waiting for the state\n", o->control, o->region_mode,
          (unsigned long long)o->size, addr);

  /* 4. Wait for the state blob, then run at once. */
  struct reader r = { .fd = sock, .deadline = time(NULL) + o->timeout_s };
  char line[4096], val[256];
  if (!reader_line(&r, line, sizeof line)) die("daemon closed the control socket before sending the state");
  if (!json_field(line, "type", val, sizeof val)) die("unexpected control line: %s", line);
  if (!strcmp(val, "error")) die("daemon error: %s", json_field(line, "message", val, sizeof val) ? val : line);
  if (strcmp(val, "state")) die("expected a state message, got: %s", line);
  if (!json_field(line, "length", val, sizeof val)) die("state message without length: %s", line);
  size_t blen = strtoul(val, NULL, 10);
  if (blen > 1 << 20) die("state blob of %zu bytes is too large for this toy", blen);
  uint8_t *blob = malloc(blen ? blen : 1);
  reader_bytes(&r, blob, blen);

  struct workload w;
  workload_setup(&w, o->size, PAT_HOTSET, 0);
  w.mem = addr;
  const char *err = workload_restore(&w, blob, blen);
  if (err) die("%s", err);
  free(blob);
  fprintf(stderr, "c-toy: state received at step %llu (%s, seed %u); running to step %llu\n", (unsigned long long)w.steps,
          pattern_names[w.pattern], w.seed, (unsigned long long)o->steps);
  if (o->steps < w.steps) die("--steps %llu is before the migration point %llu", (unsigned long long)o->steps, (unsigned long long)w.steps);
  workload_step(&w, o->steps - w.steps);
  print_digest(&w); /* reads every page: the rest of memory is pulled in if still missing */

  /* 5. Wait for the daemon's verdict so the migration is reported complete (or failed) before exit. */
  r.deadline = time(NULL) + o->timeout_s;
  while (reader_line(&r, line, sizeof line)) {
    if (!json_field(line, "type", val, sizeof val)) continue;
    if (!strcmp(val, "complete")) { printf("complete %s\n", line); return 0; }
    if (!strcmp(val, "error")) { fprintf(stderr, "c-toy: daemon error: %s\n", line); return 1; }
  }
  fprintf(stderr, "c-toy: daemon closed the control socket without a completion message\n");
  return 1;
}

int main(int argc, char **argv) {
  struct opts o = parse_args(argc, argv);
  if (!strcmp(o.mode, "reference")) return run_reference(&o);
  if (!strcmp(o.mode, "dest")) return run_dest(&o);
  usage();
}
