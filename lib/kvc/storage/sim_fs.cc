#include "kvc/storage/sim_fs.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

#include "kvc/common/check.h"

namespace kvc::storage {

// One unsynced change of a file: a write of `data` at `offset`, or a new size.
struct SimFileSystem::FileChange {
  bool resize = false;
  std::uint64_t offset = 0;  // write: where; resize: the new size
  std::string data;
};

struct SimFileSystem::File {
  std::string durable;  // what a crash leaves
  std::string current;  // what reads see
  // Invariant: applying `pending` in order to `durable` gives `current`, except for writes a
  // failed sync dropped (they stay in `current`, never reach `durable`).
  std::vector<FileChange> pending;
};

// One unsynced change of a directory. kMove renames within the directory, atomically.
struct SimFileSystem::DirChange {
  enum Kind : std::uint8_t { kSet, kRemove, kMove } kind = kSet;
  std::string name;
  std::string from;  // kMove
  Node node;         // kSet, kMove
};

struct SimFileSystem::Dir {
  std::map<std::string, Node> durable;
  std::map<std::string, Node> current;
  // Invariant: applying `pending` in order to `durable` gives `current`.
  std::vector<DirChange> pending;
};

struct SimFileSystem::OpenFile {
  std::string path;
  std::shared_ptr<File> file;  // null for a directory
  std::shared_ptr<Dir> dir;
  bool readable = false;
  bool writable = false;
  std::uint64_t pos = 0;
};

namespace {

bool under(const std::string& path, const std::string& prefix) {
  if (prefix == "/") return !path.empty() && path[0] == '/';
  return path == prefix ||
         (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
          path[prefix.size()] == '/');
}

std::vector<std::string> split(const std::string& rel) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos < rel.size()) {
    std::size_t slash = rel.find('/', pos);
    if (slash == std::string::npos) slash = rel.size();
    if (slash > pos) parts.push_back(rel.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return parts;
}

}  // namespace

SimFileSystem::SimFileSystem(std::vector<std::string> roots, std::uint64_t seed,
                             std::vector<std::string> passthrough)
    : rng_state_(seed) {
  for (const std::string& r : roots) {
    const std::string n = normalize(r);
    KVC_CHECK(!n.empty() && n[0] == '/', "simulated file system roots must be absolute paths");
    roots_.emplace(n, std::make_shared<Dir>());
  }
  for (const std::string& p : passthrough) passthrough_.push_back(normalize(p));
}

SimFileSystem::~SimFileSystem() = default;

std::uint64_t SimFileSystem::rand(std::uint64_t n) {
  // splitmix64
  std::uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return n == 0 ? z : z % n;
}

std::uint64_t SimFileSystem::next_random() {
  std::lock_guard lock(mu_);
  return rand(0);
}

std::string SimFileSystem::normalize(const std::string& path) const {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

SimFileSystem::Where SimFileSystem::classify(const std::string& norm) const {
  if (norm.empty() || norm[0] != '/') return Where::kPosix;
  for (const std::string& p : passthrough_) {
    if (under(norm, p)) return Where::kPosix;
  }
  bool ancestor = false;
  for (const auto& [root, dir] : roots_) {
    if (under(norm, root)) return Where::kSim;
    if (under(root, norm)) ancestor = true;
  }
  return ancestor ? Where::kAncestor : Where::kPosix;
}

bool SimFileSystem::covers(const std::string& path) const {
  return classify(normalize(path)) == Where::kSim;
}

std::shared_ptr<SimFileSystem::Dir> SimFileSystem::root_of(const std::string& norm,
                                                           std::vector<std::string>& parts) const {
  // The longest root containing the path (roots may nest).
  const std::string* best = nullptr;
  std::shared_ptr<Dir> dir;
  for (const auto& [root, d] : roots_) {
    if (under(norm, root) && (best == nullptr || root.size() > best->size())) {
      best = &root;
      dir = d;
    }
  }
  if (best == nullptr) return nullptr;
  parts = split(norm.substr(best->size()));
  return dir;
}

SimFileSystem::Node SimFileSystem::lookup(const std::string& norm, int& err) const {
  std::vector<std::string> parts;
  std::shared_ptr<Dir> d = root_of(norm, parts);
  err = 0;
  if (d == nullptr) {
    err = ENOENT;
    return {};
  }
  Node node{nullptr, d};
  for (const std::string& part : parts) {
    if (!node.is_dir()) {
      err = ENOTDIR;
      return {};
    }
    auto it = node.dir->current.find(part);
    if (it == node.dir->current.end()) {
      err = ENOENT;
      return {};
    }
    node = it->second;
  }
  return node;
}

std::shared_ptr<SimFileSystem::Dir> SimFileSystem::parent_of(const std::string& norm,
                                                             std::string& name, int& err) const {
  const std::size_t slash = norm.find_last_of('/');
  name = norm.substr(slash + 1);
  const std::string parent = slash == 0 ? "/" : norm.substr(0, slash);
  if (classify(parent) != Where::kSim) {
    err = EEXIST;  // `norm` is a root: it exists and cannot be created, removed or renamed
    return nullptr;
  }
  Node p = lookup(parent, err);
  if (err != 0) return nullptr;
  if (!p.is_dir()) {
    err = ENOTDIR;
    return nullptr;
  }
  return p.dir;
}

SimFileSystem::OpenFile* SimFileSystem::sim_fd(int fd, int& err) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) {
    err = EBADF;
    return nullptr;
  }
  err = 0;
  return it->second.get();
}

// ---- FileSystem ----

int SimFileSystem::open(const std::string& path, int flags, int mode, int& fd) {
  const std::string norm = normalize(path);
  std::lock_guard lock(mu_);
  const Where where = classify(norm);
  if (where == Where::kPosix) return posix_file_system().open(path, flags, mode, fd);
  const int acc = flags & O_ACCMODE;
  auto of = std::make_unique<OpenFile>();
  of->path = norm;
  of->readable = acc == O_RDONLY || acc == O_RDWR;
  of->writable = acc == O_WRONLY || acc == O_RDWR;
  if (where == Where::kAncestor) {
    // A directory above the simulated roots: readable, and syncing it changes nothing here.
    if (of->writable) return EISDIR;
    of->dir = std::make_shared<Dir>();
    fd = next_fd_++;
    fds_.emplace(fd, std::move(of));
    return 0;
  }
  int err = 0;
  Node node = lookup(norm, err);
  if (err == ENOTDIR) return err;
  if (err == 0) {
    if ((flags & O_CREAT) != 0 && (flags & O_EXCL) != 0) return EEXIST;
    if (node.is_dir()) {
      if (of->writable) return EISDIR;
      of->dir = node.dir;
    } else {
      if ((flags & O_DIRECTORY) != 0) return ENOTDIR;
      of->file = node.file;
      if ((flags & O_TRUNC) != 0 && of->writable && !node.file->current.empty()) {
        FileChange c{.resize = true, .offset = 0, .data = {}};
        apply_change(*node.file, c, false);
        node.file->pending.push_back(std::move(c));
      }
    }
  } else {
    if ((flags & O_CREAT) == 0) return ENOENT;
    std::string name;
    std::shared_ptr<Dir> parent = parent_of(norm, name, err);
    if (parent == nullptr) return err;
    Node created{std::make_shared<File>(), nullptr};
    parent->current[name] = created;
    parent->pending.push_back(DirChange{.kind = DirChange::kSet, .name = name, .node = created});
    of->file = created.file;
  }
  KVC_CHECK(next_fd_ < std::numeric_limits<int>::max(), "simulated fds exhausted");
  fd = next_fd_++;
  fds_.emplace(fd, std::move(of));
  return 0;
}

int SimFileSystem::close(int fd) {
  if (fd < kFirstFd) return posix_file_system().close(fd);
  std::lock_guard lock(mu_);
  if (dead_fds_.erase(fd) != 0) return 0;
  auto it = fds_.find(fd);
  if (it == fds_.end()) return EBADF;
  for (auto l = locks_.begin(); l != locks_.end();) {
    l = l->second == fd ? locks_.erase(l) : std::next(l);
  }
  fds_.erase(it);
  return 0;
}

void SimFileSystem::apply_change(File& f, const FileChange& c, bool to_durable) {
  std::string& bytes = to_durable ? f.durable : f.current;
  if (c.resize) {
    bytes.resize(static_cast<std::size_t>(c.offset), '\0');
    return;
  }
  const std::size_t end = static_cast<std::size_t>(c.offset) + c.data.size();
  if (bytes.size() < end) bytes.resize(end, '\0');
  std::memcpy(bytes.data() + c.offset, c.data.data(), c.data.size());
}

std::int64_t SimFileSystem::pwrite(int fd, const char* data, std::size_t n, std::uint64_t offset) {
  if (fd < kFirstFd) return posix_file_system().pwrite(fd, data, n, offset);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return -err;
  if (of->file == nullptr) return -EISDIR;
  if (!of->writable) return -EBADF;
  if (n == 0) return 0;
  FileChange c{.resize = false, .offset = offset, .data = std::string(data, n)};
  apply_change(*of->file, c, false);
  of->file->pending.push_back(std::move(c));
  ++stats_.writes;
  stats_.bytes_written += n;
  return static_cast<std::int64_t>(n);
}

// write() and read(): the positioned call at the fd's position, which then moves past what it
// transferred.
std::int64_t SimFileSystem::at_position(int fd,
                                        const std::function<std::int64_t(std::uint64_t)>& op) {
  std::uint64_t pos = 0;
  {
    std::lock_guard lock(mu_);
    int err = 0;
    OpenFile* of = sim_fd(fd, err);
    if (of == nullptr) return -err;
    pos = of->pos;
  }
  const std::int64_t r = op(pos);
  if (r > 0) {
    std::lock_guard lock(mu_);
    int err = 0;
    if (OpenFile* of = sim_fd(fd, err); of != nullptr)
      of->pos = pos + static_cast<std::uint64_t>(r);
  }
  return r;
}

std::int64_t SimFileSystem::write(int fd, const char* data, std::size_t n) {
  if (fd < kFirstFd) return posix_file_system().write(fd, data, n);
  return at_position(fd, [&](std::uint64_t pos) { return pwrite(fd, data, n, pos); });
}

std::int64_t SimFileSystem::pread(int fd, char* out, std::size_t n, std::uint64_t offset) {
  if (fd < kFirstFd) return posix_file_system().pread(fd, out, n, offset);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return -err;
  if (of->file == nullptr) return -EISDIR;
  if (!of->readable) return -EBADF;
  const std::string& bytes = of->file->current;
  if (offset >= bytes.size()) return 0;
  const std::size_t got =
      static_cast<std::size_t>(std::min<std::uint64_t>(n, bytes.size() - offset));
  std::memcpy(out, bytes.data() + offset, got);
  for (auto& [prefix, count] : read_flips_) {
    if (count > 0 && under(of->path, prefix) && got > 0) {
      --count;
      out[rand(got)] ^= static_cast<char>(1u << rand(8));
      ++stats_.read_flips;
      break;
    }
  }
  return static_cast<std::int64_t>(got);
}

std::int64_t SimFileSystem::read(int fd, char* out, std::size_t n) {
  if (fd < kFirstFd) return posix_file_system().read(fd, out, n);
  return at_position(fd, [&](std::uint64_t pos) { return pread(fd, out, n, pos); });
}

bool SimFileSystem::sync_fails(const std::string& path) {
  for (auto& [prefix, rule] : sync_rules_) {
    if (!under(path, prefix)) continue;
    if (rule.fail_next > 0) {
      --rule.fail_next;
      return true;
    }
    if (rule.per_million > 0 && rand(1000000) < rule.per_million) return true;
  }
  return false;
}

int SimFileSystem::fdatasync(int fd) {
  if (fd < kFirstFd) return posix_file_system().fdatasync(fd);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return err;
  if (sync_fails(of->path)) {
    ++stats_.failed_syncs;
    if (of->file != nullptr) {
      // Linux: the dirty pages are marked clean after the error; they stay readable but will
      // never be written (a later sync reports success without them).
      of->file->pending.clear();
    }
    return EIO;
  }
  if (of->dir != nullptr) {
    of->dir->durable = of->dir->current;
    of->dir->pending.clear();
    ++stats_.dir_syncs;
    return 0;
  }
  File& f = *of->file;
  for (const FileChange& c : f.pending) apply_change(f, c, true);
  f.pending.clear();
  ++stats_.syncs;
  return 0;
}

int SimFileSystem::fsync(int fd) { return fdatasync(fd); }

int SimFileSystem::ftruncate(int fd, std::uint64_t size) {
  if (fd < kFirstFd) return posix_file_system().ftruncate(fd, size);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return err;
  if (of->file == nullptr) return EISDIR;
  if (!of->writable) return EINVAL;
  FileChange c{.resize = true, .offset = size, .data = {}};
  apply_change(*of->file, c, false);
  of->file->pending.push_back(std::move(c));
  return 0;
}

int SimFileSystem::fallocate(int fd, std::uint64_t offset, std::uint64_t len) {
  if (fd < kFirstFd) return posix_file_system().fallocate(fd, offset, len);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return err;
  if (of->file == nullptr) return EISDIR;
  if (!of->writable) return EBADF;
  if (offset + len > of->file->current.size()) {
    FileChange c{.resize = true, .offset = offset + len, .data = {}};
    apply_change(*of->file, c, false);
    of->file->pending.push_back(std::move(c));
  }
  return 0;
}

int SimFileSystem::fstat(int fd, FileInfo& info) {
  if (fd < kFirstFd) return posix_file_system().fstat(fd, info);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return err;
  info = of->file != nullptr ? FileInfo{.size = of->file->current.size(), .regular = true}
                             : FileInfo{.size = 0, .directory = true};
  return 0;
}

int SimFileSystem::lock(int fd) {
  if (fd < kFirstFd) return posix_file_system().lock(fd);
  std::lock_guard lock(mu_);
  int err = 0;
  OpenFile* of = sim_fd(fd, err);
  if (of == nullptr) return err;
  const File* key = of->file.get();
  if (key == nullptr) return 0;
  auto it = locks_.find(key);
  if (it != locks_.end() && it->second != fd) return EWOULDBLOCK;
  locks_[key] = fd;
  return 0;
}

int SimFileSystem::stat(const std::string& path, FileInfo& info) {
  const std::string norm = normalize(path);
  std::lock_guard lock(mu_);
  const Where where = classify(norm);
  if (where == Where::kPosix) return posix_file_system().stat(path, info);
  if (where == Where::kAncestor) {
    info = FileInfo{.size = 0, .directory = true};
    return 0;
  }
  int err = 0;
  Node node = lookup(norm, err);
  if (err != 0) return err;
  info = node.is_dir() ? FileInfo{.size = 0, .directory = true}
                       : FileInfo{.size = node.file->current.size(), .regular = true};
  return 0;
}

int SimFileSystem::rename(const std::string& from, const std::string& to) {
  const std::string nfrom = normalize(from);
  const std::string nto = normalize(to);
  std::lock_guard lock(mu_);
  const Where wf = classify(nfrom);
  const Where wt = classify(nto);
  if (wf == Where::kPosix && wt == Where::kPosix) return posix_file_system().rename(from, to);
  if (wf != Where::kSim || wt != Where::kSim) return EXDEV;
  int err = 0;
  Node node = lookup(nfrom, err);
  if (err != 0) return err;
  std::string from_name, to_name;
  std::shared_ptr<Dir> from_dir = parent_of(nfrom, from_name, err);
  if (from_dir == nullptr) return err == EEXIST ? EBUSY : err;
  std::shared_ptr<Dir> to_dir = parent_of(nto, to_name, err);
  if (to_dir == nullptr) return err == EEXIST ? EBUSY : err;
  if (auto it = to_dir->current.find(to_name); it != to_dir->current.end()) {
    if (it->second.is_dir()) return EISDIR;
    if (node.is_dir()) return ENOTDIR;
  }
  if (nfrom == nto) return 0;
  if (from_dir == to_dir) {
    DirChange c{.kind = DirChange::kMove, .name = to_name, .from = from_name, .node = node};
    apply_dir_change(from_dir->current, c);
    from_dir->pending.push_back(std::move(c));
  } else {
    to_dir->current[to_name] = node;
    to_dir->pending.push_back(DirChange{.kind = DirChange::kSet, .name = to_name, .node = node});
    from_dir->current.erase(from_name);
    from_dir->pending.push_back(DirChange{.kind = DirChange::kRemove, .name = from_name});
  }
  return 0;
}

int SimFileSystem::unlink(const std::string& path) {
  const std::string norm = normalize(path);
  std::lock_guard lock(mu_);
  const Where where = classify(norm);
  if (where == Where::kPosix) return posix_file_system().unlink(path);
  if (where == Where::kAncestor) return EISDIR;
  int err = 0;
  Node node = lookup(norm, err);
  if (err != 0) return err;
  if (node.is_dir()) return EISDIR;
  std::string name;
  std::shared_ptr<Dir> parent = parent_of(norm, name, err);
  if (parent == nullptr) return err;
  parent->current.erase(name);
  parent->pending.push_back(DirChange{.kind = DirChange::kRemove, .name = name});
  return 0;
}

int SimFileSystem::mkdir(const std::string& path, int mode) {
  const std::string norm = normalize(path);
  std::lock_guard lock(mu_);
  const Where where = classify(norm);
  if (where == Where::kAncestor) return EEXIST;
  if (where == Where::kPosix) {
    // A passthrough directory under a simulated root: its real parents may not exist yet.
    int err = posix_file_system().mkdir(path, mode);
    if (err == ENOENT) {
      const std::vector<std::string> parts = split(norm);
      std::string partial = norm[0] == '/' ? "" : ".";
      for (const std::string& p : parts) {
        partial += "/" + p;
        err = posix_file_system().mkdir(partial, mode);
        if (err != 0 && err != EEXIST) return err;
      }
    }
    return err;
  }
  int err = 0;
  lookup(norm, err);
  if (err == 0) return EEXIST;
  std::string name;
  std::shared_ptr<Dir> parent = parent_of(norm, name, err);
  if (parent == nullptr) return err;
  Node created{nullptr, std::make_shared<Dir>()};
  parent->current[name] = created;
  parent->pending.push_back(DirChange{.kind = DirChange::kSet, .name = name, .node = created});
  return 0;
}

int SimFileSystem::list(const std::string& dir, std::vector<std::string>& names) {
  const std::string norm = normalize(dir);
  std::lock_guard lock(mu_);
  const Where where = classify(norm);
  if (where != Where::kSim) return posix_file_system().list(dir, names);
  int err = 0;
  Node node = lookup(norm, err);
  if (err != 0) return err;
  if (!node.is_dir()) return ENOTDIR;
  for (const auto& [name, child] : node.dir->current) names.push_back(name);
  return 0;
}

// ---- crashes ----

void SimFileSystem::apply_dir_change(std::map<std::string, Node>& m, const DirChange& c) {
  switch (c.kind) {
    case DirChange::kSet:
      m[c.name] = c.node;
      break;
    case DirChange::kRemove:
      m.erase(c.name);
      break;
    case DirChange::kMove:
      m[c.name] = c.node;
      if (c.from != c.name) m.erase(c.from);
      break;
  }
}

void SimFileSystem::crash_file(File& f) {
  const std::size_t n = f.pending.size();
  std::size_t keep = 0;
  bool tear = false;
  switch (rand(8)) {
    case 0:
    case 1:
      keep = 0;  // nothing unsynced reached the disk
      break;
    case 2:
    case 3:
      keep = n;  // everything did (the crash came just before the sync)
      break;
    case 4:
    case 5:
      keep = static_cast<std::size_t>(rand(n + 1));
      break;
    default:
      keep = static_cast<std::size_t>(rand(n + 1));
      tear = keep < n;  // part of the first lost write reaches the disk
      break;
  }
  for (std::size_t i = 0; i < keep; ++i) apply_change(f, f.pending[i], true);
  stats_.lost_changes += n - keep;
  if (tear && !f.pending[keep].resize) {
    const FileChange& w = f.pending[keep];
    // Sector boundaries strictly inside the write: keep the bytes up to one of them.
    const std::uint64_t first = (w.offset / kSectorBytes + 1) * kSectorBytes;
    const std::uint64_t end = w.offset + w.data.size();
    if (first < end) {
      const std::uint64_t boundaries = (end - 1 - first) / kSectorBytes + 1;
      const std::uint64_t cut = first + rand(boundaries) * kSectorBytes;
      FileChange part{.resize = false,
                      .offset = w.offset,
                      .data = w.data.substr(0, static_cast<std::size_t>(cut - w.offset))};
      apply_change(f, part, true);
      ++stats_.torn_writes;
    }
  }
  f.pending.clear();
  f.current = f.durable;
}

void SimFileSystem::crash_dir(Dir& d, std::set<const File*>& done) {
  const std::size_t n = d.pending.size();
  std::size_t keep = 0;
  switch (rand(4)) {
    case 0:
      keep = 0;
      break;
    case 1:
      keep = n;
      break;
    default:
      keep = static_cast<std::size_t>(rand(n + 1));
      break;
  }
  for (std::size_t i = 0; i < keep; ++i) {
    apply_dir_change(d.durable, d.pending[i]);
  }
  stats_.lost_changes += n - keep;
  d.pending.clear();
  d.current = d.durable;
  for (auto& [name, node] : d.durable) {
    if (node.is_dir()) {
      crash_dir(*node.dir, done);
    } else if (done.insert(node.file.get()).second) {
      crash_file(*node.file);
    }
  }
}

void SimFileSystem::crash(const std::string& prefix) {
  const std::string norm = normalize(prefix);
  std::lock_guard lock(mu_);
  ++stats_.crashes;
  std::set<const File*> done;
  for (auto& [root, dir] : roots_) {
    if (under(root, norm)) crash_dir(*dir, done);  // a whole root (or several) crashes
  }
  if (classify(norm) == Where::kSim && roots_.count(norm) == 0) {
    int err = 0;
    Node node = lookup(norm, err);
    if (err == 0 && node.is_dir()) crash_dir(*node.dir, done);
    if (err == 0 && !node.is_dir()) crash_file(*node.file);
  }
  for (auto it = fds_.begin(); it != fds_.end();) {
    if (under(it->second->path, norm)) {
      for (auto l = locks_.begin(); l != locks_.end();) {
        l = l->second == it->first ? locks_.erase(l) : std::next(l);
      }
      dead_fds_.insert(it->first);
      it = fds_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---- faults ----

void SimFileSystem::fail_next_syncs(const std::string& prefix, int count) {
  std::lock_guard lock(mu_);
  sync_rules_[normalize(prefix)].fail_next += count;
}

void SimFileSystem::set_sync_failure_rate(const std::string& prefix, std::uint32_t per_million) {
  std::lock_guard lock(mu_);
  sync_rules_[normalize(prefix)].per_million = per_million;
}

bool SimFileSystem::flip_durable_bit(const std::string& path, std::uint64_t offset, int bit) {
  std::lock_guard lock(mu_);
  int err = 0;
  Node node = lookup(normalize(path), err);
  if (err != 0 || node.is_dir() || offset >= node.file->durable.size()) return false;
  const char mask = static_cast<char>(1u << (bit & 7));
  node.file->durable[offset] ^= mask;
  if (offset < node.file->current.size()) node.file->current[offset] ^= mask;
  return true;
}

std::optional<std::uint64_t> SimFileSystem::flip_random_durable_bit(const std::string& path,
                                                                    std::uint64_t from,
                                                                    std::uint64_t to) {
  std::uint64_t size = 0;
  {
    std::lock_guard lock(mu_);
    int err = 0;
    Node node = lookup(normalize(path), err);
    if (err != 0 || node.is_dir()) return std::nullopt;
    size = node.file->durable.size();
  }
  to = std::min(to, size);
  if (from >= to) return std::nullopt;
  std::uint64_t offset = 0;
  int bit = 0;
  {
    std::lock_guard lock(mu_);
    offset = from + rand(to - from);
    bit = static_cast<int>(rand(8));
  }
  if (!flip_durable_bit(path, offset, bit)) return std::nullopt;
  return offset;
}

void SimFileSystem::flip_next_reads(const std::string& prefix, int count) {
  std::lock_guard lock(mu_);
  read_flips_[normalize(prefix)] += count;
}

// ---- introspection ----

void SimFileSystem::collect_files(const Dir& d, const std::string& path,
                                  std::vector<std::string>& out) const {
  for (const auto& [name, node] : d.current) {
    const std::string p = path + "/" + name;
    if (node.is_dir()) {
      collect_files(*node.dir, p, out);
    } else {
      out.push_back(p);
    }
  }
}

std::vector<std::string> SimFileSystem::files(const std::string& prefix) const {
  const std::string norm = normalize(prefix);
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [root, dir] : roots_) {
    if (under(root, norm)) collect_files(*dir, root, out);
  }
  if (roots_.count(norm) == 0 && classify(norm) == Where::kSim) {
    int err = 0;
    Node node = lookup(norm, err);
    if (err == 0 && node.is_dir()) collect_files(*node.dir, norm, out);
    if (err == 0 && !node.is_dir()) out.push_back(norm);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::optional<std::string> SimFileSystem::contents(const std::string& path) const {
  std::lock_guard lock(mu_);
  int err = 0;
  Node node = lookup(normalize(path), err);
  if (err != 0 || node.is_dir()) return std::nullopt;
  return node.file->current;
}

std::optional<std::string> SimFileSystem::durable_contents(const std::string& path) const {
  std::lock_guard lock(mu_);
  int err = 0;
  Node node = lookup(normalize(path), err);
  if (err != 0 || node.is_dir()) return std::nullopt;
  return node.file->durable;
}

std::uint64_t SimFileSystem::count_unsynced(const Dir& d) const {
  std::uint64_t n = d.pending.size();
  for (const auto& [name, node] : d.current) {
    n += node.is_dir() ? count_unsynced(*node.dir) : node.file->pending.size();
  }
  return n;
}

std::uint64_t SimFileSystem::unsynced_changes(const std::string& prefix) const {
  const std::string norm = normalize(prefix);
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (const auto& [root, dir] : roots_) {
    if (under(root, norm)) n += count_unsynced(*dir);
  }
  if (roots_.count(norm) == 0 && classify(norm) == Where::kSim) {
    int err = 0;
    Node node = lookup(norm, err);
    if (err == 0) n += node.is_dir() ? count_unsynced(*node.dir) : node.file->pending.size();
  }
  return n;
}

std::string SimFileSystem::describe() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> all;
  std::uint64_t bytes = 0;
  for (const auto& [root, dir] : roots_) collect_files(*dir, root, all);
  for (const std::string& p : all) {
    int err = 0;
    Node node = lookup(p, err);
    if (err == 0 && !node.is_dir()) bytes += node.file->current.size();
  }
  return "simfs files=" + std::to_string(all.size()) + " bytes=" + std::to_string(bytes) +
         " open_fds=" + std::to_string(fds_.size()) + " writes=" + std::to_string(stats_.writes) +
         " bytes_written=" + std::to_string(stats_.bytes_written) +
         " syncs=" + std::to_string(stats_.syncs) +
         " dir_syncs=" + std::to_string(stats_.dir_syncs) +
         " failed_syncs=" + std::to_string(stats_.failed_syncs) +
         " crashes=" + std::to_string(stats_.crashes) +
         " lost_changes=" + std::to_string(stats_.lost_changes) +
         " torn_writes=" + std::to_string(stats_.torn_writes) +
         " read_flips=" + std::to_string(stats_.read_flips);
}

}  // namespace kvc::storage
