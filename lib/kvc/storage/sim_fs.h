// A simulated disk for the storage layer (the FileSystem seam of fs.h): files and directories in
// memory that behave like a real disk when a member crashes, for the simulator and for crash
// tortures of the real WAL and snapshot code. Deterministic: every random choice comes from a
// generator seeded by the caller; no clock, no global state.
//
// What it models, per file: the durable bytes (what a crash leaves), the current bytes (what
// reads see: the page cache), and the writes and size changes since the last successful
// fdatasync/fsync, in order. Per directory: the durable entries, the current ones, and the
// changes (create, rename, unlink, mkdir) since its last fsync.
//   - crash(prefix): for every file and directory under `prefix`, a random prefix of the unsynced
//     changes survives (none, all, or some), the last surviving write possibly torn at a 512-byte
//     sector boundary; the rest is lost. Every fd opened under it becomes invalid (EBADF; closing
//     it is fine).
//   - A failed fsync (fail_next_syncs, set_sync_failure_rate) returns EIO with Linux semantics:
//     the unsynced writes stay readable but are never made durable (a later successful sync does
//     not write them; a crash loses them).
//   - Media damage: flip_durable_bit changes a file's durable (and cached) bytes; flip_next_reads
//     flips one bit of what a pread returns (transient).
// It covers only the directories it is given (and not the passthrough ones under them): every
// other path, and every real fd, goes to POSIX, so a member's wal/ and snap/ can be simulated
// while its LMDB directory is real. Simulated fds are numbered from kFirstFd (1 << 30), above any
// real fd. Thread-safe (one mutex), but deterministic only when one thread drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvc/storage/fs.h"

namespace kvc::storage {

struct SimFsStats {
  std::uint64_t writes = 0;         // pwrite/write calls on simulated files
  std::uint64_t bytes_written = 0;  // their bytes
  std::uint64_t syncs = 0;          // successful fdatasync/fsync of files
  std::uint64_t dir_syncs = 0;      // successful fsync of directories
  std::uint64_t failed_syncs = 0;   // injected EIO
  std::uint64_t crashes = 0;
  std::uint64_t lost_changes = 0;  // unsynced file and directory changes a crash dropped
  std::uint64_t torn_writes = 0;   // writes a crash kept only a sector-aligned part of
  std::uint64_t read_flips = 0;    // transient bit flips returned by pread
};

class SimFileSystem final : public FileSystem {
 public:
  static constexpr int kFirstFd = kFirstSimulatedFd;
  static constexpr std::uint64_t kSectorBytes = 512;

  // `roots`: absolute directories simulated here; each exists (empty, durable) from the start and
  // its ancestors count as existing directories. `passthrough`: directories under a root that
  // stay on the real file system. `seed` seeds every random choice.
  SimFileSystem(std::vector<std::string> roots, std::uint64_t seed,
                std::vector<std::string> passthrough = {});
  ~SimFileSystem() override;
  SimFileSystem(const SimFileSystem&) = delete;
  SimFileSystem& operator=(const SimFileSystem&) = delete;

  // FileSystem (see fs.h).
  int open(const std::string& path, int flags, int mode, int& fd) override;
  int close(int fd) override;
  std::int64_t pwrite(int fd, const char* data, std::size_t n, std::uint64_t offset) override;
  std::int64_t write(int fd, const char* data, std::size_t n) override;
  std::int64_t pread(int fd, char* out, std::size_t n, std::uint64_t offset) override;
  std::int64_t read(int fd, char* out, std::size_t n) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int ftruncate(int fd, std::uint64_t size) override;
  int fallocate(int fd, std::uint64_t offset, std::uint64_t len) override;
  int fstat(int fd, FileInfo& info) override;
  int lock(int fd) override;
  int stat(const std::string& path, FileInfo& info) override;
  int rename(const std::string& from, const std::string& to) override;
  int unlink(const std::string& path) override;
  int mkdir(const std::string& path, int mode) override;
  int list(const std::string& dir, std::vector<std::string>& names) override;

  // True when `path` is simulated here (under a root, not under a passthrough directory).
  bool covers(const std::string& path) const;

  // The crash of whatever lives under `prefix` (a member's data directory, or a root): see the
  // header comment. Files and directories elsewhere are untouched.
  void crash(const std::string& prefix);

  // The next `count` fdatasync/fsync calls on files or directories under `prefix` fail with EIO.
  void fail_next_syncs(const std::string& prefix, int count = 1);
  // Each later fdatasync/fsync under `prefix` fails with probability per_million / 1e6 (0: never).
  void set_sync_failure_rate(const std::string& prefix, std::uint32_t per_million);
  // Flips bit `bit` (0..7) of byte `offset` of the file at `path`, in its durable and its cached
  // bytes (damaged media). False when there is no such file or byte.
  bool flip_durable_bit(const std::string& path, std::uint64_t offset, int bit);
  // Flips a random bit of a random durable byte in [from, min(to, durable size)); returns its
  // offset, or nullopt when the range is empty.
  std::optional<std::uint64_t> flip_random_durable_bit(
      const std::string& path, std::uint64_t from = 0,
      std::uint64_t to = std::numeric_limits<std::uint64_t>::max());
  // The next `count` preads under `prefix` that return bytes have one random bit flipped in the
  // returned buffer (the file is unchanged).
  void flip_next_reads(const std::string& prefix, int count = 1);

  // Introspection for tests and the simulator.
  const SimFsStats& stats() const { return stats_; }
  // Paths of the files visible under `prefix` (current view), sorted.
  std::vector<std::string> files(const std::string& prefix) const;
  // A file's current bytes (what a read sees) and its durable bytes (what a crash now would
  // leave, were its directory entry durable); nullopt when `path` names no file.
  std::optional<std::string> contents(const std::string& path) const;
  std::optional<std::string> durable_contents(const std::string& path) const;
  // Unsynced changes (file writes and size changes, directory changes) under `prefix`.
  std::uint64_t unsynced_changes(const std::string& prefix) const;
  // One line: files, bytes, syncs, crashes, faults.
  std::string describe() const;
  // The next value of the internal generator (for tests that pick offsets).
  std::uint64_t next_random();

 private:
  struct File;
  struct Dir;
  struct Node {
    std::shared_ptr<File> file;
    std::shared_ptr<Dir> dir;
    bool is_dir() const { return dir != nullptr; }
  };
  struct DirChange;
  struct FileChange;
  struct OpenFile;
  struct SyncRule {
    int fail_next = 0;
    std::uint32_t per_million = 0;
  };
  enum class Where : std::uint8_t { kPosix, kSim, kAncestor };

  std::string normalize(const std::string& path) const;
  Where classify(const std::string& norm) const;
  // The root covering `norm` and the components below it.
  std::shared_ptr<Dir> root_of(const std::string& norm, std::vector<std::string>& parts) const;
  // The node at `norm` (current view); null dir and file when missing. ENOTDIR/ENOENT in `err`.
  Node lookup(const std::string& norm, int& err) const;
  // The directory holding `norm` and the last component.
  std::shared_ptr<Dir> parent_of(const std::string& norm, std::string& name, int& err) const;
  OpenFile* sim_fd(int fd, int& err);
  std::int64_t at_position(int fd, const std::function<std::int64_t(std::uint64_t)>& op);
  static void apply_dir_change(std::map<std::string, Node>& m, const DirChange& c);
  bool sync_fails(const std::string& path);
  void apply_change(File& f, const FileChange& c, bool to_durable);
  void crash_dir(Dir& d, std::set<const File*>& done);
  void crash_file(File& f);
  void collect_files(const Dir& d, const std::string& path, std::vector<std::string>& out) const;
  std::uint64_t count_unsynced(const Dir& d) const;
  std::uint64_t rand(std::uint64_t n);  // uniform in [0, n)

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Dir>> roots_;
  std::vector<std::string> passthrough_;
  std::map<int, std::unique_ptr<OpenFile>> fds_;
  std::set<int> dead_fds_;  // opened under a crashed prefix; only close() works
  std::map<const File*, int> locks_;
  std::map<std::string, SyncRule> sync_rules_;
  std::map<std::string, int> read_flips_;
  int next_fd_ = kFirstFd;
  std::uint64_t rng_state_;
  SimFsStats stats_;
};

}  // namespace kvc::storage
