#include "kvc/storage/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "kvc/common/check.h"

namespace kvc::storage {
namespace {

thread_local FileSystem* t_file_system = nullptr;

int posix_open(const std::string& path, int flags, int mode, int& fd) {
  int r;
  do {
    r = ::open(path.c_str(), flags, mode);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno;
  fd = r;
  return 0;
}

std::int64_t posix_result(ssize_t n) { return n < 0 ? -static_cast<std::int64_t>(errno) : n; }

int posix_fstat(int fd, FileInfo& info) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  info = FileInfo{.size = static_cast<std::uint64_t>(st.st_size),
                  .regular = S_ISREG(st.st_mode),
                  .directory = S_ISDIR(st.st_mode)};
  return 0;
}

int posix_stat(const std::string& path, FileInfo& info) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno;
  info = FileInfo{.size = static_cast<std::uint64_t>(st.st_size),
                  .regular = S_ISREG(st.st_mode),
                  .directory = S_ISDIR(st.st_mode)};
  return 0;
}

int posix_list(const std::string& dir, std::vector<std::string>& names) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int err = errno;
  ::closedir(d);
  return err;
}

int ok_or_errno(int r) { return r == 0 ? 0 : errno; }

class PosixFileSystem final : public FileSystem {
 public:
  int open(const std::string& path, int flags, int mode, int& fd) override {
    return posix_open(path, flags, mode, fd);
  }
  int close(int fd) override { return ok_or_errno(::close(fd)); }
  std::int64_t pwrite(int fd, const char* data, std::size_t n, std::uint64_t offset) override {
    return posix_result(::pwrite(fd, data, n, static_cast<off_t>(offset)));
  }
  std::int64_t write(int fd, const char* data, std::size_t n) override {
    return posix_result(::write(fd, data, n));
  }
  std::int64_t pread(int fd, char* out, std::size_t n, std::uint64_t offset) override {
    return posix_result(::pread(fd, out, n, static_cast<off_t>(offset)));
  }
  std::int64_t read(int fd, char* out, std::size_t n) override {
    return posix_result(::read(fd, out, n));
  }
  int fdatasync(int fd) override { return ok_or_errno(::fdatasync(fd)); }
  int fsync(int fd) override { return ok_or_errno(::fsync(fd)); }
  int ftruncate(int fd, std::uint64_t size) override {
    return ok_or_errno(::ftruncate(fd, static_cast<off_t>(size)));
  }
  int fallocate(int fd, std::uint64_t offset, std::uint64_t len) override {
    return ok_or_errno(::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(len)));
  }
  int fstat(int fd, FileInfo& info) override { return posix_fstat(fd, info); }
  int lock(int fd) override { return ok_or_errno(::flock(fd, LOCK_EX | LOCK_NB)); }
  int stat(const std::string& path, FileInfo& info) override { return posix_stat(path, info); }
  int rename(const std::string& from, const std::string& to) override {
    return ok_or_errno(::rename(from.c_str(), to.c_str()));
  }
  int unlink(const std::string& path) override { return ok_or_errno(::unlink(path.c_str())); }
  int mkdir(const std::string& path, int mode) override {
    return ok_or_errno(::mkdir(path.c_str(), static_cast<mode_t>(mode)));
  }
  int list(const std::string& dir, std::vector<std::string>& names) override {
    return posix_list(dir, names);
  }
};

PosixFileSystem g_posix;

// Every helper below calls on_fs(op): `op` on the installed file system, else on POSIX. The
// POSIX branch sees the final class, so it compiles to the plain system call.
template <typename Op>
auto on_fs(Op&& op) {
  if (FileSystem* f = t_file_system; f != nullptr) return op(*f);
  return op(g_posix);
}

}  // namespace

FileSystem& posix_file_system() { return g_posix; }

FileSystem* current_file_system() { return t_file_system; }

ScopedFileSystem::ScopedFileSystem(FileSystem* fs) : previous_(t_file_system) {
  t_file_system = fs;
}

ScopedFileSystem::~ScopedFileSystem() { t_file_system = previous_; }

Status errno_status(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  switch (err) {
    case ENOSPC:
      return Status::resource_exhausted(m + "no space left on device");
    case EDQUOT:
      return Status::resource_exhausted(m + "disk quota exceeded");
    default: {
      std::string reason = std::strerror(err);
      if (!reason.empty() && reason[0] >= 'A' && reason[0] <= 'Z') {
        reason[0] = static_cast<char>(reason[0] - 'A' + 'a');
      }
      return Status::io_error(m + reason);
    }
  }
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    if (FileSystem* f = t_file_system; f != nullptr) {
      (void)f->close(fd_);
    } else {
      KVC_CHECK(fd_ < kFirstSimulatedFd,
                "a simulated fd is closed on a thread with no file system installed");
      (void)g_posix.close(fd_);
    }
  }
  fd_ = fd;
}

Result<UniqueFd> open_file(const std::string& path, int flags, int mode) {
  int fd = -1;
  const int err = on_fs([&](auto& f) { return f.open(path, flags | O_CLOEXEC, mode, fd); });
  if (err != 0) {
    if (err == ENOENT) return Status::not_found("open " + path + ": no such file or directory");
    return errno_status("open " + path, err);
  }
  return UniqueFd(fd);
}

Status pwrite_all(int fd, std::string_view data, std::uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    const std::int64_t n =
        on_fs([&](auto& f) { return f.pwrite(fd, data.data(), data.size(), offset); });
    if (n < 0) {
      if (n == -EINTR) continue;
      return errno_status("write " + path + " at offset " + std::to_string(offset),
                          static_cast<int>(-n));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return Status();
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const std::int64_t n = on_fs([&](auto& f) { return f.write(fd, data.data(), data.size()); });
    if (n < 0) {
      if (n == -EINTR) continue;
      return errno_status("write " + path, static_cast<int>(-n));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status();
}

Result<std::string> pread_up_to(int fd, std::size_t n, std::uint64_t offset,
                                const std::string& path) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const std::int64_t r =
        on_fs([&](auto& f) { return f.pread(fd, out.data() + got, n - got, offset + got); });
    if (r < 0) {
      if (r == -EINTR) continue;
      return errno_status("read " + path + " at offset " + std::to_string(offset + got),
                          static_cast<int>(-r));
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

Status fdatasync_fd(int fd, const std::string& path) {
  if (const int err = on_fs([&](auto& f) { return f.fdatasync(fd); }); err != 0)
    return errno_status("fdatasync " + path, err);
  return Status();
}

Status fsync_fd(int fd, const std::string& path) {
  if (const int err = on_fs([&](auto& f) { return f.fsync(fd); }); err != 0)
    return errno_status("fsync " + path, err);
  return Status();
}

Status close_fd(int fd, const std::string& path) {
  if (const int err = on_fs([&](auto& f) { return f.close(fd); }); err != 0)
    return errno_status("close " + path, err);
  return Status();
}

Status truncate_file(int fd, std::uint64_t size, const std::string& path, std::string_view what) {
  if (const int err = on_fs([&](auto& f) { return f.ftruncate(fd, size); }); err != 0) {
    return errno_status(what.empty() ? "truncate " + path : std::string(what), err);
  }
  return Status();
}

int preallocate(int fd, std::uint64_t offset, std::uint64_t len) {
  return on_fs([&](auto& f) { return f.fallocate(fd, offset, len); });
}

Result<FileInfo> fd_info(int fd, const std::string& path) {
  FileInfo info;
  if (const int err = on_fs([&](auto& f) { return f.fstat(fd, info); }); err != 0)
    return errno_status("stat " + path, err);
  return info;
}

int lock_fd(int fd) {
  return on_fs([&](auto& f) { return f.lock(fd); });
}

Status remove_file(const std::string& path, std::string_view what) {
  if (const int err = on_fs([&](auto& f) { return f.unlink(path); }); err != 0 && err != ENOENT) {
    return errno_status(what.empty() ? "remove " + path : std::string(what), err);
  }
  return Status();
}

Status rename_file(const std::string& from, const std::string& to) {
  if (const int err = on_fs([&](auto& f) { return f.rename(from, to); }); err != 0) {
    return errno_status("rename " + from + " to " + to, err);
  }
  return Status();
}

Status fsync_dir(const std::string& dir) {
  Result<UniqueFd> fd = open_file(dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return fd.status();
  return fsync_fd(fd->get(), dir);
}

Result<std::string> read_file(const std::string& path) {
  Result<UniqueFd> fd = open_file(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  std::string out;
  char buf[65536];
  for (;;) {
    const std::int64_t n = on_fs([&](auto& f) { return f.read(fd->get(), buf, sizeof buf); });
    if (n < 0) {
      if (n == -EINTR) continue;
      return errno_status("read " + path, static_cast<int>(-n));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

Status write_file_atomic(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  {
    Result<UniqueFd> fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd.ok()) return fd.status();
    KVC_RETURN_IF_ERROR(write_all(fd->get(), data, tmp));
    KVC_RETURN_IF_ERROR(fsync_fd(fd->get(), tmp));
  }
  KVC_RETURN_IF_ERROR(rename_file(tmp, path));
  const std::size_t slash = path.find_last_of('/');
  return fsync_dir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (const int err = on_fs([&](auto& f) { return f.list(dir, names); }); err != 0) {
    if (err == ENOENT) return Status::not_found("list " + dir + ": no such directory");
    return errno_status("list " + dir, err);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status make_dirs(const std::string& dir, int mode) {
  if (dir.empty()) return Status();
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (const int err = on_fs([&](auto& f) { return f.mkdir(partial, mode); });
        err != 0 && err != EEXIST) {
      return errno_status("mkdir " + partial, err);
    }
  }
  FileInfo info;
  if (on_fs([&](auto& f) { return f.stat(dir, info); }) != 0 || !info.directory) {
    return Status::io_error("mkdir " + dir + ": exists and is not a directory");
  }
  return Status();
}

bool path_exists(const std::string& path) {
  FileInfo info;
  return on_fs([&](auto& f) { return f.stat(path, info); }) == 0;
}

Result<std::uint64_t> file_size(const std::string& path) {
  FileInfo info;
  if (const int err = on_fs([&](auto& f) { return f.stat(path, info); }); err != 0)
    return errno_status("stat " + path, err);
  return info.size;
}

}  // namespace kvc::storage
