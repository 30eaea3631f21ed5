// A member's data directory: the layout (wal/, snap/, state/), the identity file that says which
// member of which cluster the directory belongs to, and the lock file that keeps two processes
// from writing the same directory. See kvc-node(1), "DATA DIRECTORY".
//
//   DATA_DIR/identity   text, "key=value" lines ending with a crc32c line (format below)
//   DATA_DIR/lock       flock(2)ed exclusively by the writer; holds its pid for messages
//   DATA_DIR/wal/       log segments        (kvc-wal(5))
//   DATA_DIR/snap/      snapshot files      (kvc-snap(5))
//   DATA_DIR/state/     the LMDB state machine
//
// A read-only open takes no lock, so offline tools can inspect a live member's directory.
// Not thread-safe; one DataDir per process per directory.
#pragma once

#include <cstdint>
#include <string>

#include "kvc/common/status.h"
#include "kvc/storage/fs.h"

namespace kvc::storage {

inline constexpr std::uint32_t kDataDirFormatVersion = 1;

struct Identity {
  std::uint32_t format_version = kDataDirFormatVersion;
  std::string name;  // member name, unique in its cluster
  std::uint64_t member_id = 0;
  std::uint64_t cluster_id = 0;
  std::string cluster_token;  // --cluster-token the cluster was created with
  // The bootstrap membership ("name=peer_addr,..." sorted) for a member of a new cluster, so a
  // restart does not depend on the flags; empty for a member that joined or was restored (its
  // membership is in the state machine).
  std::string initial_cluster;

  friend bool operator==(const Identity&, const Identity&) = default;
};

// Ids every member computes the same way from the bootstrap flags, so the members of a new
// cluster agree on them without talking: FNV-1a 64 of the inputs, never 0.
//   member id:  cluster_token, '\0', name
//   cluster id: cluster_token, '\0', then each "name=peer_address" of --initial-cluster, sorted,
//               joined by ','
std::uint64_t derive_member_id(std::string_view cluster_token, std::string_view name);
std::uint64_t derive_cluster_id(std::string_view cluster_token,
                                std::string_view sorted_initial_cluster);

// The identity file's bytes, and back. Parsing checks the trailing crc32c line, the format
// version and that every field is present; it names the problem on failure.
std::string encode_identity(const Identity& id);
Result<Identity> decode_identity(std::string_view text, const std::string& path);

class DataDir {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens `path`. kReadWrite creates the directory and its layout when missing and takes the
  // lock (failing with kFailedPrecondition, naming the holder's pid, when another process
  // holds it). kReadOnly requires the directory to exist and takes no lock.
  static Result<DataDir> open(const std::string& path, Mode mode);

  DataDir(DataDir&&) = default;
  DataDir& operator=(DataDir&&) = default;

  const std::string& path() const { return path_; }
  std::string wal_dir() const { return path_ + "/wal"; }
  std::string snap_dir() const { return path_ + "/snap"; }
  std::string state_dir() const { return path_ + "/state"; }
  std::string identity_path() const { return path_ + "/identity"; }
  bool read_only() const { return !lock_.valid(); }

  // True when an identity file exists (the directory belongs to a member already).
  bool has_identity() const;
  Result<Identity> read_identity() const;
  // Writes the identity atomically and durably. Only in kReadWrite mode.
  Status write_identity(const Identity& id);
  // True when nothing but the lock and empty layout folders is in the directory.
  bool is_empty() const;

 private:
  DataDir(std::string path, UniqueFd lock) : path_(std::move(path)), lock_(std::move(lock)) {}

  std::string path_;
  UniqueFd lock_;  // invalid in read-only mode; closing it releases the flock
};

}  // namespace kvc::storage
