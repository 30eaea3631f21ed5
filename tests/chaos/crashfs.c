/* crashfs: an LD_PRELOAD shim that kills its process with SIGKILL at a chosen point of its file
 * I/O, for the crash test (tests/process/crash_test.cc, docs/chaos.md "The crash test"): a crash
 * in the middle of a state flush or of a WAL write, under load. Configured by the environment:
 *
 *   KVC_CRASHFS_OP=write|pwrite|fdatasync|fsync|msync   the kind of call to crash in ("write"
 *                          is every write call: write, pwrite, writev, pwritev; "pwrite" only
 *                          the positioned ones, which is how LMDB and the WAL write)
 *   KVC_CRASHFS_FILE=TEXT  only calls on a file whose path contains TEXT count (e.g. "data.mdb",
 *                          ".wal"); the path is read from /proc/self/fd/N once per descriptor
 *                          (cached until the descriptor is closed). Unset: every regular file
 *                          path. msync is matched on its call alone (it has no descriptor).
 *   KVC_CRASHFS_AFTER=N    crash in the N-th matching call (1-based; default 1)
 *   KVC_CRASHFS_TORN=1     for a write: first write a prefix of it (half its bytes, at least 1),
 *                          then crash; the page cache then holds a torn write, as a process
 *                          crash in the middle of a write leaves it. Otherwise the process dies
 *                          before the call (none of it is written, nothing of it synced).
 *   KVC_CRASHFS_LOSE=TEXT[,TEXT...]  a power loss rather than a process crash: writes to files
 *                          whose path contains one of the TEXTs that no fsync or fdatasync of
 *                          the file has covered yet are undone (their old bytes written back,
 *                          a file they extended cut back) before the kill, as a machine that
 *                          lost power would lose them from its page cache. Writes through an
 *                          O_SYNC or O_DSYNC descriptor are durable at once and never undone.
 *                          Not modelled: writes through a memory map, fallocate, and the
 *                          directory entries of new or renamed files (kept, as if synced), so
 *                          the loss is never larger than a real one could be. While it is set,
 *                          such writes are serialized (one lock), so that none lands after the
 *                          undo.
 *
 * Without KVC_CRASHFS_OP the shim does nothing. At the crash it prints one line
 * "crashfs: SIGKILL in <call> #<N> of <path>[ after <k> of <n> bytes]" to stderr (the member's
 * log), so the test can tell a crash where it was meant from any other death. Thread-safe (the
 * call count is atomic, so exactly one call is the N-th). Under AddressSanitizer the shim loads
 * after ASan's runtime; the harness sets ASAN_OPTIONS=verify_asan_link_order=0 for that (the
 * shim defines no allocation functions). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum kind { K_WRITE = 1, K_PWRITE = 2, K_FDATASYNC = 3, K_FSYNC = 4, K_MSYNC = 5 };

/* The configuration, read once (the first call that needs it). -1: not read yet. */
static atomic_int armed_kind = -1; /* 0: disarmed */
static long crash_after = 1;
static int torn = 0;
static const char* file_filter = NULL;
static const char* lose_filter = NULL; /* KVC_CRASHFS_LOSE */
static atomic_long calls = 0;

static int config(void) {
  int k = atomic_load(&armed_kind);
  if (k >= 0) return k;
  const char* op = getenv("KVC_CRASHFS_OP");
  k = 0;
  if (op != NULL) {
    if (strcmp(op, "write") == 0) k = K_WRITE;
    if (strcmp(op, "pwrite") == 0) k = K_PWRITE;
    if (strcmp(op, "fdatasync") == 0) k = K_FDATASYNC;
    if (strcmp(op, "fsync") == 0) k = K_FSYNC;
    if (strcmp(op, "msync") == 0) k = K_MSYNC;
  }
  const char* after = getenv("KVC_CRASHFS_AFTER");
  if (after != NULL && strtol(after, NULL, 10) > 0) crash_after = strtol(after, NULL, 10);
  const char* t = getenv("KVC_CRASHFS_TORN");
  torn = t != NULL && strcmp(t, "1") == 0;
  const char* f = getenv("KVC_CRASHFS_FILE");
  file_filter = f != NULL && f[0] != '\0' ? f : NULL;
  const char* lose = getenv("KVC_CRASHFS_LOSE");
  lose_filter = k != 0 && lose != NULL && lose[0] != '\0' ? lose : NULL;
  /* Every thread computes the same values, so a race here only repeats the work. */
  atomic_store(&armed_kind, k);
  return k;
}

/* Per descriptor: 0 unknown, 1 its path matches, 2 it does not. Descriptors past the table are
 * looked up on every call. */
#define FD_CACHE 4096
static atomic_uchar fd_match[FD_CACHE];

static int path_of(int fd, char* buf, size_t n) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const int saved = errno;
  const ssize_t len = readlink(link, buf, n - 1);
  errno = saved;
  if (len < 0) return 0;
  buf[len] = '\0';
  return 1;
}

static int fd_matches(int fd) {
  if (fd < 0) return 0;
  if (fd < FD_CACHE) {
    const unsigned char m = atomic_load(&fd_match[fd]);
    if (m != 0) return m == 1;
  }
  char path[512];
  int m = path_of(fd, path, sizeof path) && path[0] == '/' &&
          (file_filter == NULL || strstr(path, file_filter) != NULL);
  if (fd < FD_CACHE) atomic_store(&fd_match[fd], (unsigned char)(m ? 1 : 2));
  return m;
}

static void emit(const char* line, int len) {
  if (len <= 0) return;
  ssize_t (*real_write)(int, const void*, size_t) =
      (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  (void)real_write(2, line, (size_t)len);
}

static void say(const char* call, long n, int fd, size_t done, size_t total, int partial) {
  char path[512] = "?";
  if (fd >= 0) path_of(fd, path, sizeof path);
  char line[800];
  int len;
  if (partial)
    len = snprintf(line, sizeof line, "crashfs: SIGKILL in %s #%ld of %s after %zu of %zu bytes\n",
                   call, n, path, done, total);
  else
    len = snprintf(line, sizeof line, "crashfs: SIGKILL in %s #%ld of %s\n", call, n, path);
  emit(line, len);
}

/* ---- The power loss (KVC_CRASHFS_LOSE): unsynced writes, and their undo at the crash ---- */

/* What one write overwrote: `len` old bytes at `off` (the rest of it lay past the end of the
 * file, whose size was `old_size`). `seq` orders writes and syncs. */
struct undo_rec {
  unsigned long seq;
  off_t off;
  size_t len;
  char* old;
  off_t old_size;
  struct undo_rec* next; /* older */
};

/* A file with unsynced writes, and a descriptor of our own to read and undo them by (a file
 * renamed since is still reached). */
struct tracked {
  dev_t dev;
  ino_t ino;
  int fd;
  struct undo_rec* recs; /* newest first */
  struct tracked* next;
};

static pthread_mutex_t lose_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tracked* tracked_files; /* guarded by lose_mu, as are the two below */
static unsigned long lose_seq;
static int crashing;
static atomic_uchar fd_lose[FD_CACHE]; /* as fd_match, for KVC_CRASHFS_LOSE */

static void real_close(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "close");
  (void)real(fd);
}

/* Whether writes to `fd` count for the power loss: a regular file (by path) matching one of
 * KVC_CRASHFS_LOSE's items, not opened O_SYNC or O_DSYNC. */
static int lose_matches(int fd) {
  if (config() == 0 || lose_filter == NULL || fd < 0) return 0;
  if (fd < FD_CACHE) {
    const unsigned char m = atomic_load(&fd_lose[fd]);
    if (m != 0) return m == 1;
  }
  char path[512];
  int m = 0;
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_DSYNC) && path_of(fd, path, sizeof path) && path[0] == '/') {
    const char* item = lose_filter;
    while (*item != '\0' && !m) {
      const char* end = strchr(item, ',');
      const size_t n = end != NULL ? (size_t)(end - item) : strlen(item);
      char want[256];
      if (n > 0 && n < sizeof want) {
        memcpy(want, item, n);
        want[n] = '\0';
        m = strstr(path, want) != NULL;
      }
      item += n;
      if (*item == ',') ++item;
    }
  }
  if (fd < FD_CACHE) atomic_store(&fd_lose[fd], (unsigned char)(m ? 1 : 2));
  return m;
}

/* Before a write of `n` bytes at `off` (-1: at the descriptor's offset) to `fd`: keeps what it
 * will overwrite. Called with lose_mu held. */
static void record_write(int fd, off_t off, size_t n) {
  const int saved = errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) goto out;
  if (off < 0) {
    const int flags = fcntl(fd, F_GETFL);
    off = flags >= 0 && (flags & O_APPEND) ? st.st_size : lseek(fd, 0, SEEK_CUR);
    if (off < 0) goto out;
  }
  struct tracked* t = tracked_files;
  while (t != NULL && !(t->dev == st.st_dev && t->ino == st.st_ino)) t = t->next;
  if (t == NULL) {
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    const int own = open(self, O_RDWR | O_CLOEXEC);
    if (own < 0) goto out;
    t = calloc(1, sizeof *t);
    if (t == NULL) {
      real_close(own);
      goto out;
    }
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->fd = own;
    t->next = tracked_files;
    tracked_files = t;
  }
  struct undo_rec* r = calloc(1, sizeof *r);
  if (r == NULL) goto out;
  r->seq = ++lose_seq;
  r->off = off;
  r->old_size = st.st_size;
  if (off < st.st_size) {
    const size_t want = (size_t)(st.st_size - off) < n ? (size_t)(st.st_size - off) : n;
    r->old = malloc(want > 0 ? want : 1);
    const ssize_t got = r->old != NULL ? pread(t->fd, r->old, want, off) : -1;
    r->len = got > 0 ? (size_t)got : 0;
  }
  r->next = t->recs;
  t->recs = r;
out:
  errno = saved;
}

static void free_recs(struct undo_rec* r) {
  while (r != NULL) {
    struct undo_rec* older = r->next;
    free(r->old);
    free(r);
    r = older;
  }
}

/* After fsync/fdatasync of `fd` returned 0: the writes made before it started (seq <= `upto`)
 * are durable. Called with lose_mu held. */
static void note_synced(int fd, unsigned long upto) {
  struct stat st;
  if (fstat(fd, &st) != 0) return;
  for (struct tracked** p = &tracked_files; *p != NULL; p = &(*p)->next) {
    struct tracked* t = *p;
    if (t->dev != st.st_dev || t->ino != st.st_ino) continue;
    struct undo_rec** q = &t->recs;
    while (*q != NULL && (*q)->seq > upto) q = &(*q)->next;
    free_recs(*q);
    *q = NULL;
    if (t->recs == NULL) {
      *p = t->next;
      real_close(t->fd);
      free(t);
    }
    return;
  }
}

/* The power loss: undoes every unsynced write, newest first, and cuts back what they extended.
 * Called with lose_mu held; leaves `crashing` set so that no write or sync goes on. */
static void lose_unsynced(void) {
  crashing = 1;
  /* Our own pwrite would take lose_mu again. */
  ssize_t (*real_pwrite)(int, const void*, size_t, off_t) =
      (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  unsigned long writes = 0, bytes = 0, files = 0;
  for (struct tracked* t = tracked_files; t != NULL; t = t->next) {
    off_t size = -1;
    for (struct undo_rec* r = t->recs; r != NULL; r = r->next) {
      if (r->len > 0) (void)real_pwrite(t->fd, r->old, r->len, r->off);
      size = r->old_size; /* the oldest write's ends up here */
      ++writes;
      bytes += r->len;
    }
    struct stat st;
    if (size >= 0 && fstat(t->fd, &st) == 0 && st.st_size > size) (void)ftruncate(t->fd, size);
    ++files;
  }
  char line[200];
  emit(line, snprintf(line, sizeof line,
                      "crashfs: power loss: undid %lu unsynced writes (%lu bytes) to %lu files\n",
                      writes, bytes, files));
}

/* Blocks a write or sync that comes after the power loss began (the SIGKILL is on its way). */
static void stop_if_crashing(void) {
  if (crashing) {
    pthread_mutex_unlock(&lose_mu);
    for (;;) pause();
  }
}

static void die(void) {
  if (lose_filter != NULL) {
    pthread_mutex_lock(&lose_mu);
    if (!crashing) lose_unsynced();
  }
  kill(getpid(), SIGKILL);
  for (;;) pause(); /* SIGKILL cannot be caught: never returns */
}

/* Whether this call (of kind `k` on `fd`) is the one to crash in. */
static int is_crash_point(int k, int fd) {
  const int armed = config();
  if (armed == 0) return 0;
  if (armed != k && !(armed == K_WRITE && k == K_PWRITE)) return 0;
  if (k != K_MSYNC && !fd_matches(fd)) return 0;
  return atomic_fetch_add(&calls, 1) + 1 == crash_after;
}

/* The torn part of an n-byte write: half of it, at least 1 byte. */
static size_t torn_length(size_t n) { return n / 2 > 0 ? n / 2 : 1; }

int close(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "close");
  /* Forget the descriptor's path before and after: a new file may get the same number. */
  if (fd >= 0 && fd < FD_CACHE) {
    atomic_store(&fd_match[fd], 0);
    atomic_store(&fd_lose[fd], 0);
  }
  const int rc = real(fd);
  if (fd >= 0 && fd < FD_CACHE) {
    atomic_store(&fd_match[fd], 0);
    atomic_store(&fd_lose[fd], 0);
  }
  return rc;
}

/* Every write goes through here: `off` -1 for the descriptor's offset, `n` its byte count. For
 * the power loss, the write is recorded and made under lose_mu. `do_write(n)` makes the call
 * with the first n bytes. */
struct write_call {
  const char* name;
  int fd;
  size_t n;
  off_t off;
  ssize_t (*fn)(const struct write_call*, size_t n);
  const void* buf;
  const struct iovec* iov;
  int cnt;
  void* real;
};

static ssize_t tracked(const struct write_call* w, size_t n) {
  const int lose = lose_matches(w->fd);
  if (lose) {
    pthread_mutex_lock(&lose_mu);
    stop_if_crashing();
    record_write(w->fd, w->off, n);
  }
  const ssize_t rc = w->fn(w, n);
  if (lose) {
    const int saved = errno;
    pthread_mutex_unlock(&lose_mu);
    errno = saved;
  }
  return rc;
}

static ssize_t write_call(const struct write_call* w, int kind) {
  if (w->n > 0 && is_crash_point(kind, w->fd)) {
    if (torn) {
      const ssize_t done = tracked(w, torn_length(w->n));
      say(w->name, crash_after, w->fd, done > 0 ? (size_t)done : 0, w->n, 1);
    } else {
      say(w->name, crash_after, w->fd, 0, w->n, 0);
    }
    die();
  }
  return tracked(w, w->n);
}

static ssize_t call_write(const struct write_call* w, size_t n) {
  return ((ssize_t(*)(int, const void*, size_t))w->real)(w->fd, w->buf, n);
}
static ssize_t call_pwrite(const struct write_call* w, size_t n) {
  return ((ssize_t(*)(int, const void*, size_t, off_t))w->real)(w->fd, w->buf, n, w->off);
}

/* The first `keep` bytes of `iov` as a new vector in `out` (at most `cnt` entries); returns its
 * length. */
static int iov_prefix(const struct iovec* iov, int cnt, size_t keep, struct iovec* out) {
  int n = 0;
  for (int i = 0; i < cnt && keep > 0; ++i) {
    out[n] = iov[i];
    if (out[n].iov_len > keep) out[n].iov_len = keep;
    keep -= out[n].iov_len;
    ++n;
  }
  return n;
}

static size_t iov_total(const struct iovec* iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; ++i) n += iov[i].iov_len;
  return n;
}

static ssize_t call_writev(const struct write_call* w, size_t n) {
  if (n == w->n) return ((ssize_t(*)(int, const struct iovec*, int))w->real)(w->fd, w->iov, w->cnt);
  struct iovec part[w->cnt];
  return ((ssize_t(*)(int, const struct iovec*, int))w->real)(w->fd, part,
                                                              iov_prefix(w->iov, w->cnt, n, part));
}
static ssize_t call_pwritev(const struct write_call* w, size_t n) {
  typedef ssize_t (*fn)(int, const struct iovec*, int, off_t);
  if (n == w->n) return ((fn)w->real)(w->fd, w->iov, w->cnt, w->off);
  struct iovec part[w->cnt];
  return ((fn)w->real)(w->fd, part, iov_prefix(w->iov, w->cnt, n, part), w->off);
}

ssize_t write(int fd, const void* buf, size_t n) {
  const struct write_call w = {.name = "write",
                               .fd = fd,
                               .n = n,
                               .off = -1,
                               .fn = call_write,
                               .buf = buf,
                               .real = dlsym(RTLD_NEXT, "write")};
  if (fd <= 2) return call_write(&w, n);
  return write_call(&w, K_WRITE);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  const struct write_call w = {.name = "pwrite",
                               .fd = fd,
                               .n = n,
                               .off = off,
                               .fn = call_pwrite,
                               .buf = buf,
                               .real = dlsym(RTLD_NEXT, "pwrite")};
  return write_call(&w, K_PWRITE);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  const struct write_call w = {.name = "pwrite64",
                               .fd = fd,
                               .n = n,
                               .off = off,
                               .fn = call_pwrite,
                               .buf = buf,
                               .real = dlsym(RTLD_NEXT, "pwrite64")};
  return write_call(&w, K_PWRITE);
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  const struct write_call w = {.name = "writev",
                               .fd = fd,
                               .n = cnt > 0 ? iov_total(iov, cnt) : 0,
                               .off = -1,
                               .fn = call_writev,
                               .iov = iov,
                               .cnt = cnt,
                               .real = dlsym(RTLD_NEXT, "writev")};
  if (fd <= 2 || cnt <= 0) return call_writev(&w, w.n);
  return write_call(&w, K_WRITE);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  const struct write_call w = {.name = "pwritev",
                               .fd = fd,
                               .n = cnt > 0 ? iov_total(iov, cnt) : 0,
                               .off = off,
                               .fn = call_pwritev,
                               .iov = iov,
                               .cnt = cnt,
                               .real = dlsym(RTLD_NEXT, "pwritev")};
  if (cnt <= 0) return call_pwritev(&w, w.n);
  return write_call(&w, K_PWRITE);
}
ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off_t off) {
  const struct write_call w = {.name = "pwritev64",
                               .fd = fd,
                               .n = cnt > 0 ? iov_total(iov, cnt) : 0,
                               .off = off,
                               .fn = call_pwritev,
                               .iov = iov,
                               .cnt = cnt,
                               .real = dlsym(RTLD_NEXT, "pwritev64")};
  if (cnt <= 0) return call_pwritev(&w, w.n);
  return write_call(&w, K_PWRITE);
}

/* fsync and fdatasync: the crash point, then the call; for the power loss, the writes made
 * before it started are durable once it succeeded. */
static int sync_call(const char* name, int kind, int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
  if (is_crash_point(kind, fd)) {
    say(name, crash_after, fd, 0, 0, 0);
    die();
  }
  if (config() == 0 || lose_filter == NULL) return real(fd);
  pthread_mutex_lock(&lose_mu);
  stop_if_crashing();
  const unsigned long upto = lose_seq;
  pthread_mutex_unlock(&lose_mu);
  const int rc = real(fd);
  const int saved = errno;
  pthread_mutex_lock(&lose_mu);
  stop_if_crashing();
  if (rc == 0) note_synced(fd, upto);
  pthread_mutex_unlock(&lose_mu);
  errno = saved;
  return rc;
}

int fdatasync(int fd) { return sync_call("fdatasync", K_FDATASYNC, fd); }
int fsync(int fd) { return sync_call("fsync", K_FSYNC, fd); }

int msync(void* addr, size_t length, int flags) {
  int (*real)(void*, size_t, int) = (int (*)(void*, size_t, int))dlsym(RTLD_NEXT, "msync");
  if ((flags & MS_SYNC) && is_crash_point(K_MSYNC, -1)) {
    say("msync", crash_after, -1, 0, 0, 0);
    die();
  }
  return real(addr, length, flags);
}
