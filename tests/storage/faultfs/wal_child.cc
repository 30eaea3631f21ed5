// A child process for the WAL crash and fault-injection tests: opens (recovers) the WAL in DIR
// and appends wal_test::expected_entry(i) for i = last + 1 .. COUNT in seeded random batches,
// syncing after each batch and printing "synced <last index>" once the sync returned. Now and
// then it writes a hard state, rewrites the last few entries (a Raft overwrite, same content),
// saves a snapshot marker and releases segments below it. Errors:
//   append fails with resource_exhausted: prints "enospc <message>", retries that batch once
//   (exit 4 when it fails again);
//   any other failure: prints "error <code> <message>", calls sync() once more and prints
//   "again <code>" (a failed sync must stay failed), exits 3.
// Usage: kvc_wal_child DIR COUNT SEGMENT_BYTES SEED
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "../wal_test_data.h"
#include "kvc/storage/wal.h"

namespace {

using kvc::Status;
using kvc::storage::Wal;
namespace wt = kvc::storage::wal_test;

int report_failure(Wal& wal, const Status& s) {
  std::printf("error %s %s\n", std::string(kvc::code_name(s.code())).c_str(), s.message().c_str());
  const Status again = wal.sync();
  std::printf("again %s\n", std::string(kvc::code_name(again.code())).c_str());
  std::fflush(stdout);
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DIR COUNT SEGMENT_BYTES SEED\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::uint64_t count = std::strtoull(argv[2], nullptr, 10);
  kvc::storage::WalOptions options;
  options.segment_bytes = std::strtoull(argv[3], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));

  kvc::Result<kvc::storage::OpenedWal> opened = Wal::open(dir, options);
  if (!opened.ok()) {
    std::printf("open_failed %s\n", opened.status().to_string().c_str());
    return 1;
  }
  Wal& wal = opened->wal;
  std::uint64_t last = wal.last_index();
  std::uint64_t commit = wal.log().hard_state ? wal.log().hard_state->commit : 0;
  std::printf("opened %" PRIu64 "\n", last);
  std::fflush(stdout);
  while (last < count) {
    std::uint64_t from = last + 1;
    // Now and then rewrite the last entries (identical content), as a new leader may.
    if (rng() % 5 == 0 && last >= 3 && last - 2 > commit &&
        (!wal.log().snapshot || last - 2 > wal.log().snapshot->index)) {
      from = last - 2;
    }
    const std::uint64_t to = std::min<std::uint64_t>(count, last + 1 + rng() % 8);
    std::vector<kvc::raft::Entry> batch = wt::expected_entries(from, to);
    std::optional<kvc::raft::HardState> hs;
    if (rng() % 3 == 0 && to >= 4) {
      commit = std::max(commit, to - 3);
      hs = kvc::raft::HardState{.term = wt::expected_term(to), .vote = 1, .commit = commit};
    }
    Status s = wal.append(hs, batch);
    if (s.code() == kvc::Code::kResourceExhausted) {
      std::printf("enospc %s\n", s.message().c_str());
      std::fflush(stdout);
      s = wal.append(hs, batch);
      if (s.code() == kvc::Code::kResourceExhausted) return 4;
    }
    if (!s.ok()) return report_failure(wal, s);
    if (Status sy = wal.sync(); !sy.ok()) return report_failure(wal, sy);
    last = to;
    std::printf("synced %" PRIu64 "\n", last);
    std::fflush(stdout);
    if (rng() % 10 == 0 && last > 10) {
      const std::uint64_t at = std::min(commit, last - 5);
      if (at > 0 && (!wal.log().snapshot || at > wal.log().snapshot->index)) {
        kvc::raft::SnapshotMeta meta;
        meta.index = at;
        meta.term = wt::expected_term(at);
        meta.conf.voters = {1, 2, 3};
        if (Status m = wal.save_snapshot(meta); !m.ok()) return report_failure(wal, m);
        if (Status sy = wal.sync(); !sy.ok()) return report_failure(wal, sy);
        if (Status r = wal.release_to(at + 1); !r.ok()) return report_failure(wal, r);
        std::printf("snapshot %" PRIu64 "\n", at);
        std::fflush(stdout);
      }
    }
  }
  std::printf("done %" PRIu64 "\n", last);
  return 0;
}
