/* faultfs: an LD_PRELOAD shim that makes chosen file system calls fail, so tests can check how
 * the real kvc code (the WAL library in a child process, the kvc-wal binary) handles I/O errors
 * and a full disk. Only calls on file descriptors whose path contains KVC_FAULT_PATH (default:
 * every path) are counted. Controlled by environment variables, each a 1-based call number:
 *
 *   KVC_FAULT_FDATASYNC_EIO=N   the Nth fdatasync fails with EIO (and only that one)
 *   KVC_FAULT_FDATASYNC_HANG=N  the Nth fdatasync never returns (a disk that stopped answering)
 *   KVC_FAULT_FSYNC_EIO=N       the Nth fsync fails with EIO
 *   KVC_FAULT_WRITE_ENOSPC=N    the Nth write/pwrite fails with ENOSPC; with KVC_FAULT_PARTIAL=1
 *                               it first writes half of its bytes and returns that (a short
 *                               write), and the call after it fails
 *   KVC_FAULT_ENOSPC_STICKY=1   once a write failed with ENOSPC, every later write does too
 *   KVC_FAULT_FALLOCATE_ENOSPC=N  the Nth fallocate/posix_fallocate fails with ENOSPC
 *
 * Writes are write, pwrite and (as LMDB writes several pages at once) writev and pwritev; a short
 * writev writes a prefix of its buffers. Once a write or fallocate was failed (or cut short) with
 * ENOSPC the file system counts as full: statvfs and fstatvfs report no free block, as a real
 * full disk does.
 *
 * Each injected failure prints one line "faultfs: <call> <path> -> <errno name>" to stderr.
 * Under AddressSanitizer the shim loads after ASan's runtime; tests set
 * ASAN_OPTIONS=verify_asan_link_order=0 for that (the shim defines no allocation functions). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long env_long(const char* name) {
  const char* v = getenv(name);
  return v == NULL ? 0 : strtol(v, NULL, 10);
}

static int fd_path(int fd, char* buf, size_t n) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t len = readlink(link, buf, n - 1);
  if (len < 0) return 0;
  buf[len] = '\0';
  return 1;
}

static int matches(int fd, char* path, size_t n) {
  if (!fd_path(fd, path, n)) return 0;
  const char* filter = getenv("KVC_FAULT_PATH");
  if (filter == NULL || filter[0] == '\0') return strncmp(path, "/", 1) == 0;
  return strstr(path, filter) != NULL;
}

static void report(const char* call, const char* path, const char* err) {
  char line[600];
  const int len = snprintf(line, sizeof line, "faultfs: %s %s -> %s\n", call, path, err);
  if (len > 0) {
    ssize_t (*real_write)(int, const void*, size_t) = dlsym(RTLD_NEXT, "write");
    (void)real_write(2, line, (size_t)len);
  }
}

static long fdatasync_calls, fsync_calls, write_calls, fallocate_calls;
static int write_failing;   /* ENOSPC is sticky now */
static int disk_full;       /* an ENOSPC was injected: statvfs says so */
static int fail_next_write; /* the partial write happened; the next one fails */

int fdatasync(int fd) {
  int (*real)(int) = dlsym(RTLD_NEXT, "fdatasync");
  char path[512];
  if (matches(fd, path, sizeof path)) {
    ++fdatasync_calls;
    if (fdatasync_calls == env_long("KVC_FAULT_FDATASYNC_EIO")) {
      report("fdatasync", path, "EIO");
      errno = EIO;
      return -1;
    }
    if (fdatasync_calls == env_long("KVC_FAULT_FDATASYNC_HANG")) {
      report("fdatasync", path, "hang");
      for (;;) pause();
    }
  }
  return real(fd);
}

int fsync(int fd) {
  int (*real)(int) = dlsym(RTLD_NEXT, "fsync");
  char path[512];
  if (matches(fd, path, sizeof path) && ++fsync_calls == env_long("KVC_FAULT_FSYNC_EIO")) {
    report("fsync", path, "EIO");
    errno = EIO;
    return -1;
  }
  return real(fd);
}

/* Returns -1 (ENOSPC) to fail the call, 0 to pass it through, or a short length to write. */
static ssize_t write_fault(int fd, size_t n, const char* call) {
  char path[512];
  if (!matches(fd, path, sizeof path)) return 0;
  if (write_failing || fail_next_write) {
    fail_next_write = 0;
    report(call, path, "ENOSPC");
    errno = ENOSPC;
    return -1;
  }
  if (++write_calls != env_long("KVC_FAULT_WRITE_ENOSPC")) return 0;
  disk_full = 1;
  if (env_long("KVC_FAULT_ENOSPC_STICKY")) write_failing = 1;
  if (env_long("KVC_FAULT_PARTIAL") && n > 1) {
    fail_next_write = 1;
    report(call, path, "short write");
    return (ssize_t)(n / 2);
  }
  report(call, path, "ENOSPC");
  errno = ENOSPC;
  return -1;
}

ssize_t write(int fd, const void* buf, size_t n) {
  ssize_t (*real)(int, const void*, size_t) = dlsym(RTLD_NEXT, "write");
  const ssize_t f = fd > 2 ? write_fault(fd, n, "write") : 0;
  if (f < 0) return -1;
  return real(fd, buf, f > 0 ? (size_t)f : n);
}

static ssize_t do_pwrite(const char* name, int fd, const void* buf, size_t n, off_t off) {
  ssize_t (*real)(int, const void*, size_t, off_t) = dlsym(RTLD_NEXT, name);
  const ssize_t f = write_fault(fd, n, name);
  if (f < 0) return -1;
  return real(fd, buf, f > 0 ? (size_t)f : n, off);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite("pwrite", fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return do_pwrite("pwrite64", fd, buf, n, off);
}

static int fallocate_fault(int fd) {
  char path[512];
  if (matches(fd, path, sizeof path) &&
      ++fallocate_calls == env_long("KVC_FAULT_FALLOCATE_ENOSPC")) {
    report("fallocate", path, "ENOSPC");
    disk_full = 1;
    return 1;
  }
  return 0;
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  int (*real)(int, int, off_t, off_t) = dlsym(RTLD_NEXT, "fallocate");
  if (fallocate_fault(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) {
  int (*real)(int, int, off_t, off_t) = dlsym(RTLD_NEXT, "fallocate64");
  if (fallocate_fault(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, mode, off, len);
}
int posix_fallocate(int fd, off_t off, off_t len) {
  int (*real)(int, off_t, off_t) = dlsym(RTLD_NEXT, "posix_fallocate");
  if (fallocate_fault(fd)) return ENOSPC;
  return real(fd, off, len);
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
  ssize_t (*real)(int, const struct iovec*, int) = dlsym(RTLD_NEXT, "writev");
  const ssize_t f = fd > 2 && cnt > 0 ? write_fault(fd, iov_total(iov, cnt), "writev") : 0;
  if (f < 0) return -1;
  if (f == 0) return real(fd, iov, cnt);
  struct iovec part[cnt];
  return real(fd, part, iov_prefix(iov, cnt, (size_t)f, part));
}

static ssize_t do_pwritev(const char* name, int fd, const struct iovec* iov, int cnt, off_t off) {
  ssize_t (*real)(int, const struct iovec*, int, off_t) = dlsym(RTLD_NEXT, name);
  const ssize_t f = cnt > 0 ? write_fault(fd, iov_total(iov, cnt), name) : 0;
  if (f < 0) return -1;
  if (f == 0) return real(fd, iov, cnt, off);
  struct iovec part[cnt];
  return real(fd, part, iov_prefix(iov, cnt, (size_t)f, part), off);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev("pwritev", fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off_t off) {
  return do_pwritev("pwritev64", fd, iov, cnt, off);
}

/* A full disk has no free block. */
static void full(struct statvfs* st) {
  if (disk_full) {
    st->f_bfree = 0;
    st->f_bavail = 0;
  }
}

int statvfs(const char* path, struct statvfs* st) {
  int (*real)(const char*, struct statvfs*) = dlsym(RTLD_NEXT, "statvfs");
  const int rc = real(path, st);
  if (rc == 0) full(st);
  return rc;
}
int statvfs64(const char* path, struct statvfs64* st) {
  int (*real)(const char*, struct statvfs64*) = dlsym(RTLD_NEXT, "statvfs64");
  const int rc = real(path, st);
  if (rc == 0 && disk_full) {
    st->f_bfree = 0;
    st->f_bavail = 0;
  }
  return rc;
}
int fstatvfs(int fd, struct statvfs* st) {
  int (*real)(int, struct statvfs*) = dlsym(RTLD_NEXT, "fstatvfs");
  const int rc = real(fd, st);
  if (rc == 0) full(st);
  return rc;
}
