// Helpers for the WAL tests: fresh directories, whole-file reads and writes, copying a log, and
// running a process (the kvc-wal binary, the crash child) with its output captured. Not
// thread-safe; for tests only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/storage/wal.h"
#include "wal_test_data.h"

namespace kvc::storage::wal_test {

// An empty directory of the running test (tests/support/test_dir.h), emptied first if it exists.
std::string fresh_dir(const std::string& name);
// The same on tmpfs (/dev/shm) when there is one: for loops that copy and reopen a log hundreds
// of times, where what is tested is the reading and recovery logic, not the disk, and an
// fdatasync per iteration would make the test take many seconds.
std::string fresh_tmpfs_dir(const std::string& name);
std::string slurp(const std::string& path);
void spit(const std::string& path, const std::string& bytes);
// Copies the files of `from` (not recursively) into a new directory `to`.
void copy_dir(const std::string& from, const std::string& to);
// The segment file paths of a WAL directory, oldest first.
std::vector<std::string> segment_paths(const std::string& wal_dir);

// Opens `dir`, appends `entries` (one batch per call, `batch` entries each), syncs, closes.
void write_log(const std::string& dir, std::uint64_t first, std::uint64_t last,
               std::size_t batch = 1, std::uint64_t segment_bytes = kDefaultSegmentBytes);

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};
// Runs argv[0] with `env` added to the environment and `input` on stdin; waits for it.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {}, const std::string& input = "");

// ASAN_OPTIONS for a child that gets an LD_PRELOAD shim: ASan must not insist on being first.
std::string asan_options_for_preload();

}  // namespace kvc::storage::wal_test
