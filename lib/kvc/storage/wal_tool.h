// The kvc-wal commands (info, dump, verify, repair) as library functions: each prints its data
// to `out`, diagnostics and progress to `err`, and returns the process exit code, so
// cmd/kvc-wal/main.cc only parses flags. Everything reads the log with scan_wal() and takes no
// lock, so it is safe on a live member's directory (it warns that the tail may still be being
// written); only `repair --in-place` writes to the log, and it first takes the data directory's
// lock, so it refuses while the member runs. Exit codes and output formats are the contract
// documented in kvc-wal(1). Not thread-safe (one command per process).
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/storage/record.h"
#include "kvc/storage/tool_util.h"
#include "kvc/storage/wal_reader.h"

namespace kvc::storage {

// Where the log of a command-line DIR is: DIR/wal when DIR is a data directory, else DIR when it
// holds segment files (or is named "wal"); data_dir is then DIR's parent when that holds a lock
// or identity file, else empty. kNotFound when DIR does not exist or is neither.
struct WalLocation {
  std::string wal_dir;
  std::string data_dir;
};
Result<WalLocation> locate_wal(const std::string& dir);

// Whether a member holds the data directory's lock, found without taking it: the flock on
// DATA_DIR/lock in /proc/locks, else (no /proc) a live pid recorded in the lock file.
struct LiveWriter {
  bool running = false;
  long pid = 0;
};
LiveWriter find_live_writer(const WalLocation& where);

int run_info(const std::string& dir, ToolContext& ctx);

struct DumpOptions {
  std::optional<std::uint64_t> from;  // entries and markers with index >= from; hard states
  std::optional<std::uint64_t> to;    // whose log position (last index) is in range
  std::vector<RecordType> types;      // empty: every type
};
int run_dump(const std::string& dir, const DumpOptions& options, ToolContext& ctx);

int run_verify(const std::string& dir, ToolContext& ctx);

struct RepairOptions {
  std::string out_dir;            // write a repaired copy here (must not exist or be empty)
  bool in_place = false;          // repair the log itself, after saving what is removed
  std::string backup_dir;         // --in-place: where removed bytes go (default: next to the log)
  bool truncate_corrupt = false;  // allow cutting the log at corruption before the tail
  bool yes = false;               // do not ask
  bool dry_run = false;           // only show the plan
};
int run_repair(const std::string& dir, const RepairOptions& options, ToolContext& ctx);

}  // namespace kvc::storage
