// Thin POSIX file helpers for the storage layer: an owning file descriptor, whole-buffer reads
// and writes that retry EINTR and short writes, fdatasync/fsync of files and directories, and
// atomic whole-file replacement (write temp, sync, rename, sync directory). Every failure is a
// Status naming the path and the call. No global state; thread-safe.
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
