// Thin POSIX file helpers for the storage layer: an owning file descriptor, whole-buffer reads
// and writes that retry EINTR and short writes, fdatasync/fsync of files and directories, and
// atomic whole-file replacement (write temp, sync, rename, sync directory). Every failure is a
// Status naming the path and the call. Thread-safe.
//
// The file-system seam: every file call of the WAL, the snapshot files, the repair file and the
// data directory's small files goes through these functions, and each dispatches to the
// FileSystem installed for the calling thread (ScopedFileSystem), or straight to POSIX when none
// is (production threads never install one). The simulator and tests install a SimFileSystem
// (sim_fs.h) that models a disk losing unsynced writes on a crash. The LMDB state (state.cc)
// does not use the seam: it stays on a real file system.
//
// Durability rule (docs/storage.md): a failed fsync/fdatasync is never retried as if nothing
// happened; the caller treats it as fatal for the data written (the kernel may have dropped the
// dirty pages), and kvc-node stops.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::storage {

// The Status for a failed system call on a file: "<what>: <reason>", the reason in lowercase.
// A full disk (ENOSPC) says "no space left on device" and an exhausted quota (EDQUOT) "disk
// quota exceeded", both kResourceExhausted; everything else is kIOError. Every storage error
// from errno goes through here, so the operator reads the same words whichever file it was.
Status errno_status(std::string_view what, int err);

// Size and kind of an open file or a path.
struct FileInfo {
  std::uint64_t size = 0;
  bool regular = false;
  bool directory = false;
};

// The operations the storage layer performs on files. Each returns 0 or an errno value (reads
// and writes: the byte count, or -errno), so the helpers below build the same messages whichever
// file system served the call. Retrying EINTR and short transfers is the helpers' job.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // open(2); flags as for open(2) (O_CLOEXEC is added by the caller). Sets `fd` on success.
  virtual int open(const std::string& path, int flags, int mode, int& fd) = 0;
  virtual int close(int fd) = 0;
  virtual std::int64_t pwrite(int fd, const char* data, std::size_t n, std::uint64_t offset) = 0;
  virtual std::int64_t write(int fd, const char* data, std::size_t n) = 0;
  virtual std::int64_t pread(int fd, char* out, std::size_t n, std::uint64_t offset) = 0;
  virtual std::int64_t read(int fd, char* out, std::size_t n) = 0;
  virtual int fdatasync(int fd) = 0;
  // On a directory's fd: makes its entries durable.
  virtual int fsync(int fd) = 0;
  virtual int ftruncate(int fd, std::uint64_t size) = 0;
  // fallocate(2) mode 0: the file is at least offset + len bytes afterwards.
  virtual int fallocate(int fd, std::uint64_t offset, std::uint64_t len) = 0;
  virtual int fstat(int fd, FileInfo& info) = 0;
  // flock(fd, LOCK_EX | LOCK_NB).
  virtual int lock(int fd) = 0;
  virtual int stat(const std::string& path, FileInfo& info) = 0;
  virtual int rename(const std::string& from, const std::string& to) = 0;
  virtual int unlink(const std::string& path) = 0;
  virtual int mkdir(const std::string& path, int mode) = 0;
  // Names in `dir` without "." and "..", in any order.
  virtual int list(const std::string& dir, std::vector<std::string>& names) = 0;
};

// Simulated file systems number their fds from here up: above any real fd (Linux caps
// RLIMIT_NOFILE below 2^30), so one can never be closed as a real one by mistake.
inline constexpr int kFirstSimulatedFd = 1 << 30;

// The real file system (what the helpers call when no FileSystem is installed).
FileSystem& posix_file_system();
// The file system the calling thread's storage calls go to; null means POSIX.
FileSystem* current_file_system();

// Installs `fs` for the calling thread for the guard's lifetime (nesting restores the previous
// one). Every fd opened under it must be closed under it too (closing a simulated fd with no
// file system installed is a failed KVC_CHECK).
class ScopedFileSystem {
 public:
  explicit ScopedFileSystem(FileSystem* fs);
  ~ScopedFileSystem();
  ScopedFileSystem(const ScopedFileSystem&) = delete;
  ScopedFileSystem& operator=(const ScopedFileSystem&) = delete;

 private:
  FileSystem* previous_;
};

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the fd (through the installed file system) and takes `fd`.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC added.
Result<UniqueFd> open_file(const std::string& path, int flags, int mode = 0644);

// Writes all of `data` at `offset` (pwrite), retrying EINTR and short writes.
Status pwrite_all(int fd, std::string_view data, std::uint64_t offset, const std::string& path);
// Writes all of `data` at the current position.
Status write_all(int fd, std::string_view data, const std::string& path);
// Reads exactly `n` bytes at `offset` unless the file ends first; returns what was read.
Result<std::string> pread_up_to(int fd, std::size_t n, std::uint64_t offset,
                                const std::string& path);

Status fdatasync_fd(int fd, const std::string& path);
// close(2) of a released fd, reporting a failure ("close <path>: ...").
Status close_fd(int fd, const std::string& path);
// Sets the size of an open file. `what` starts the error message ("truncate <path>" if empty).
Status truncate_file(int fd, std::uint64_t size, const std::string& path,
                     std::string_view what = {});
// fallocate(fd, 0, offset, len): 0 or the errno (callers decide what EOPNOTSUPP means).
int preallocate(int fd, std::uint64_t offset, std::uint64_t len);
// The size and kind of an open file ("stat <path>: ..." on failure).
Result<FileInfo> fd_info(int fd, const std::string& path);
// flock(LOCK_EX | LOCK_NB): 0 or the errno (EWOULDBLOCK: another process holds it).
int lock_fd(int fd);
// Removes a file; a missing one is fine. `what` starts the error message ("remove <path>" if
// empty).
Status remove_file(const std::string& path, std::string_view what = {});
// rename(2) ("rename <from> to <to>: ..." on failure).
Status rename_file(const std::string& from, const std::string& to);
Status fsync_fd(int fd, const std::string& path);
// Makes a directory's entries (created, renamed, removed files) durable.
Status fsync_dir(const std::string& dir);

Result<std::string> read_file(const std::string& path);
// Replaces `path` with `data` atomically and durably: writes path.tmp, syncs it, renames it
// over path, syncs the directory.
Status write_file_atomic(const std::string& path, std::string_view data);

// Names (not paths) of the entries in `dir`, sorted, without "." and "..".
Result<std::vector<std::string>> list_dir(const std::string& dir);
// mkdir -p; an existing directory is fine.
Status make_dirs(const std::string& dir, int mode = 0755);
bool path_exists(const std::string& path);
Result<std::uint64_t> file_size(const std::string& path);

}  // namespace kvc::storage
