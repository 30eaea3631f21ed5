/* The child process of the crashfs shim's tests (crashfs_test.cc): runs a script of file
 * operations given as arguments, in order, on one current file, then exits 0:
 *
 *   open:PATH      opens PATH (created if missing) as the current file
 *   dsync:PATH     the same, with O_DSYNC
 *   pwrite:OFF:TEXT  writes TEXT at offset OFF
 *   write:TEXT     writes TEXT at the current offset
 *   sync           fdatasync
 *
 * Exits 2 on a bad argument, 3 when a call fails. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int fd = -1;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (strncmp(a, "open:", 5) == 0 || strncmp(a, "dsync:", 6) == 0) {
      const int dsync = a[0] == 'd';
      if (fd >= 0) close(fd);
      fd = open(a + (dsync ? 6 : 5), O_RDWR | O_CREAT | O_CLOEXEC | (dsync ? O_DSYNC : 0), 0644);
      if (fd < 0) return 3;
    } else if (strncmp(a, "pwrite:", 7) == 0) {
      char* text = NULL;
      const long off = strtol(a + 7, &text, 10);
      if (*text != ':') return 2;
      ++text;
      if (pwrite(fd, text, strlen(text), off) != (ssize_t)strlen(text)) return 3;
    } else if (strncmp(a, "write:", 6) == 0) {
      if (write(fd, a + 6, strlen(a + 6)) != (ssize_t)strlen(a + 6)) return 3;
    } else if (strcmp(a, "sync") == 0) {
      if (fdatasync(fd) != 0) return 3;
    } else {
      fprintf(stderr, "crashfs_child: unknown step %s\n", a);
      return 2;
    }
  }
  return 0;
}
