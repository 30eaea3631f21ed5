/* slowfs: an LD_PRELOAD shim that makes a member's disk slow on demand, for the chaos tests.
 * Every fsync, fdatasync and msync first sleeps for the number of milliseconds written in the
 * file named by KVC_SLOWFS_CONTROL (re-read on each call, so the harness turns the slowness on
 * and off while the member runs; a missing or empty file means no delay). The call itself then
 * runs normally: data is as durable as without the shim, only later. Without
 * KVC_SLOWFS_CONTROL the shim does nothing. Under AddressSanitizer the shim loads after ASan's
 * runtime; the harness sets ASAN_OPTIONS=verify_asan_link_order=0 for that (the shim defines no
 * allocation functions). Thread-safe (no state besides the environment). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long control_delay_ms(void) {
  const char* path = getenv("KVC_SLOWFS_CONTROL");
  if (path == NULL || path[0] == '\0') return 0;
  const int saved = errno;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  long ms = 0;
  if (fd >= 0) {
    char buf[32];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = '\0';
      ms = strtol(buf, NULL, 10);
    }
    close(fd);
  }
  errno = saved;
  if (ms < 0) ms = 0;
  if (ms > 60000) ms = 60000;
  return ms;
}

static void slow_down(void) {
  const long ms = control_delay_ms();
  if (ms <= 0) return;
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  const int saved = errno;
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
  errno = saved;
}

int fdatasync(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  slow_down();
  return real(fd);
}

int fsync(int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  slow_down();
  return real(fd);
}

int msync(void* addr, size_t length, int flags) {
  int (*real)(void*, size_t, int) = (int (*)(void*, size_t, int))dlsym(RTLD_NEXT, "msync");
  if (flags & MS_SYNC) slow_down();
  return real(addr, length, flags);
}
