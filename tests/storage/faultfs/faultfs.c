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
#include <sys/types.h>
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
