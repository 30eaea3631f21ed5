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
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum kind { K_WRITE = 1, K_PWRITE = 2, K_FDATASYNC = 3, K_FSYNC = 4, K_MSYNC = 5 };

/* The configuration, read once (the first call that needs it). -1: not read yet. */
static atomic_int armed_kind = -1; /* 0: disarmed */
static long crash_after = 1;
static int torn = 0;
static const char* file_filter = NULL;
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
  if (len > 0) {
    ssize_t (*real_write)(int, const void*, size_t) =
        (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
    (void)real_write(2, line, (size_t)len);
  }
}

static void die(void) {
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
  if (fd >= 0 && fd < FD_CACHE) atomic_store(&fd_match[fd], 0);
  const int rc = real(fd);
  if (fd >= 0 && fd < FD_CACHE) atomic_store(&fd_match[fd], 0);
  return rc;
}

ssize_t write(int fd, const void* buf, size_t n) {
  ssize_t (*real)(int, const void*, size_t) =
      (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (fd > 2 && is_crash_point(K_WRITE, fd)) {
    if (torn && n > 0) {
      const ssize_t w = real(fd, buf, torn_length(n));
      say("write", crash_after, fd, w > 0 ? (size_t)w : 0, n, 1);
    } else {
      say("write", crash_after, fd, 0, n, 0);
    }
    die();
  }
  return real(fd, buf, n);
}

static ssize_t do_pwrite(const char* name, int fd, const void* buf, size_t n, off_t off) {
  ssize_t (*real)(int, const void*, size_t, off_t) =
      (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, name);
  if (is_crash_point(K_PWRITE, fd)) {
    if (torn && n > 0) {
      const ssize_t w = real(fd, buf, torn_length(n), off);
      say(name, crash_after, fd, w > 0 ? (size_t)w : 0, n, 1);
    } else {
      say(name, crash_after, fd, 0, n, 0);
    }
    die();
  }
  return real(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite("pwrite", fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite("pwrite64", fd, buf, n, off);
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

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  ssize_t (*real)(int, const struct iovec*, int) =
      (ssize_t(*)(int, const struct iovec*, int))dlsym(RTLD_NEXT, "writev");
  if (fd > 2 && cnt > 0 && is_crash_point(K_WRITE, fd)) {
    const size_t total = iov_total(iov, cnt);
    if (torn && total > 0) {
      struct iovec part[cnt];
      const ssize_t w = real(fd, part, iov_prefix(iov, cnt, torn_length(total), part));
      say("writev", crash_after, fd, w > 0 ? (size_t)w : 0, total, 1);
    } else {
      say("writev", crash_after, fd, 0, total, 0);
    }
    die();
  }
  return real(fd, iov, cnt);
}

static ssize_t do_pwritev(const char* name, int fd, const struct iovec* iov, int cnt, off_t off) {
  ssize_t (*real)(int, const struct iovec*, int, off_t) =
      (ssize_t(*)(int, const struct iovec*, int, off_t))dlsym(RTLD_NEXT, name);
  if (cnt > 0 && is_crash_point(K_PWRITE, fd)) {
    const size_t total = iov_total(iov, cnt);
    if (torn && total > 0) {
      struct iovec part[cnt];
      const ssize_t w = real(fd, part, iov_prefix(iov, cnt, torn_length(total), part), off);
      say(name, crash_after, fd, w > 0 ? (size_t)w : 0, total, 1);
    } else {
      say(name, crash_after, fd, 0, total, 0);
    }
    die();
  }
  return real(fd, iov, cnt, off);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev("pwritev", fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev("pwritev64", fd, iov, cnt, off);
}

int fdatasync(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (is_crash_point(K_FDATASYNC, fd)) {
    say("fdatasync", crash_after, fd, 0, 0, 0);
    die();
  }
  return real(fd);
}

int fsync(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (is_crash_point(K_FSYNC, fd)) {
    say("fsync", crash_after, fd, 0, 0, 0);
    die();
  }
  return real(fd);
}

int msync(void* addr, size_t length, int flags) {
  int (*real)(void*, size_t, int) = (int (*)(void*, size_t, int))dlsym(RTLD_NEXT, "msync");
  if ((flags & MS_SYNC) && is_crash_point(K_MSYNC, -1)) {
    say("msync", crash_after, -1, 0, 0, 0);
    die();
  }
  return real(addr, length, flags);
}
