#include "kvc/storage/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvc::storage {

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
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> open_file(const std::string& path, int flags, int mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::not_found("open " + path + ": no such file or directory");
    return errno_status("open " + path, err);
  }
  return UniqueFd(fd);
}

Status pwrite_all(int fd, std::string_view data, std::uint64_t offset, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("write " + path + " at offset " + std::to_string(offset), errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return Status();
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("write " + path, errno);
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
    const ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_status("read " + path + " at offset " + std::to_string(offset + got), errno);
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

Status fdatasync_fd(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return errno_status("fdatasync " + path, errno);
  return Status();
}

Status fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return errno_status("fsync " + path, errno);
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
    const ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("read " + path, errno);
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
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return errno_status("rename " + tmp + " to " + path, errno);
  }
  const std::size_t slash = path.find_last_of('/');
  return fsync_dir(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    if (err == ENOENT) return Status::not_found("list " + dir + ": no such directory");
    return errno_status("list " + dir, err);
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return errno_status("list " + dir, err);
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
    if (::mkdir(partial.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return errno_status("mkdir " + partial, errno);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::io_error("mkdir " + dir + ": exists and is not a directory");
  }
  return Status();
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Result<std::uint64_t> file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_status("stat " + path, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace kvc::storage
