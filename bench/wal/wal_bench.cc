// wal_bench: how close WAL appends come to the disk's own limit. In one run and one directory it
// measures the floor (write 256 bytes into a preallocated file, then fdatasync: latency p50/p99)
// and then Wal::append + Wal::sync with 1, 16, 64 and 256 entries per sync (group commit),
// printing each one's latency, throughput and ratio to the floor. A ratio near 1.0 for one entry
// per sync means the WAL adds little over the fdatasync it cannot avoid; the throughput ratio for
// larger batches shows what group commit buys.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kvc/storage/fs.h"
#include "kvc/storage/wal.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Stats {
  double p50_us = 0;
  double p99_us = 0;
  double ops_per_s = 0;  // syncs per second
};

Stats stats_of(std::vector<double> us, double seconds) {
  Stats s;
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  s.p50_us = us[us.size() / 2];
  s.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  s.ops_per_s = static_cast<double>(us.size()) / seconds;
  return s;
}

int die(const kvc::Status& s) {
  std::fprintf(stderr, "wal_bench: %s\n", s.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("wal_bench: WAL append latency and throughput with group commit, against the raw "
               "fdatasync floor of the same disk, measured in the same run.");
  std::string dir = "wal-bench.tmp";
  std::size_t syncs = 1000;
  std::size_t entry_bytes = 256;
  std::vector<std::size_t> batches = {1, 16, 64, 256};
  app.add_option("--dir", dir, "Directory to write in (created, then removed); put it on the "
                               "disk to measure")->capture_default_str();
  app.add_option("--syncs", syncs, "fdatasync calls per measurement")->capture_default_str();
  app.add_option("--entry-bytes", entry_bytes, "Data bytes per entry")->capture_default_str();
  app.add_option("--batches", batches, "Entries per sync to measure")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (syncs == 0 || std::filesystem::exists(dir)) {
    std::fprintf(stderr, "wal_bench: --dir %s must not exist; --syncs must be > 0\n", dir.c_str());
    return 2;
  }
  std::filesystem::create_directories(dir);

  // The floor: what one small synced write costs on this disk, preallocated like a segment.
  const std::string floor_path = dir + "/floor";
  std::vector<double> floor_us;
  double floor_seconds = 0;
  {
    kvc::Result<kvc::storage::UniqueFd> fd =
        kvc::storage::open_file(floor_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!fd.ok()) return die(fd.status());
    if (::fallocate(fd->get(), 0, 0, 64 << 20) != 0) std::perror("fallocate (continuing)");
    const std::string block(entry_bytes, 'f');
    const auto start = Clock::now();
    for (std::size_t i = 0; i < syncs; ++i) {
      const auto t0 = Clock::now();
      if (kvc::Status s = kvc::storage::pwrite_all(fd->get(), block, i * entry_bytes, floor_path);
          !s.ok()) {
        return die(s);
      }
      if (kvc::Status s = kvc::storage::fdatasync_fd(fd->get(), floor_path); !s.ok()) return die(s);
      floor_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    floor_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }
  std::filesystem::remove(floor_path);
  const Stats floor = stats_of(floor_us, floor_seconds);
  std::printf("wal_bench: dir=%s syncs=%zu entry_bytes=%zu\n", dir.c_str(), syncs, entry_bytes);
  std::printf("%-24s %10s %10s %12s %14s %11s %14s\n", "measurement", "p50_us", "p99_us",
              "syncs_per_s", "entries_per_s", "p50/floor", "entries/floor");
  std::printf("%-24s %10.1f %10.1f %12.0f %14.0f %11.2f %14.2f\n", "floor: write+fdatasync",
              floor.p50_us, floor.p99_us, floor.ops_per_s, floor.ops_per_s, 1.0, 1.0);

  for (const std::size_t batch : batches) {
    const std::string wal_dir = dir + "/wal-" + std::to_string(batch);
    kvc::Result<kvc::storage::OpenedWal> w = kvc::storage::Wal::open(wal_dir);
    if (!w.ok()) return die(w.status());
    std::vector<kvc::raft::Entry> entries(batch);
    std::uint64_t next = 1;
    std::vector<double> us;
    const auto start = Clock::now();
    for (std::size_t i = 0; i < syncs; ++i) {
      for (kvc::raft::Entry& e : entries) {
        e.index = next++;
        e.term = 1;
        e.data.assign(entry_bytes, 'e');
      }
      const kvc::raft::HardState hs{.term = 1, .vote = 1, .commit = next - 1};
      const auto t0 = Clock::now();
      if (kvc::Status s = w->wal.append(hs, entries); !s.ok()) return die(s);
      if (kvc::Status s = w->wal.sync(); !s.ok()) return die(s);
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const Stats st = stats_of(us, seconds);
    const double entries_per_s = st.ops_per_s * static_cast<double>(batch);
    char name[64];
    std::snprintf(name, sizeof name, "wal: %zu entr%s/sync", batch, batch == 1 ? "y" : "ies");
    std::printf("%-24s %10.1f %10.1f %12.0f %14.0f %11.2f %14.2f\n", name, st.p50_us, st.p99_us,
                st.ops_per_s, entries_per_s, st.p50_us / floor.p50_us,
                entries_per_s / floor.ops_per_s);
    std::filesystem::remove_all(wal_dir);
  }
  std::filesystem::remove_all(dir);
  std::printf("p50/floor: latency of one append+sync over one raw write+fdatasync (1.00 = no "
              "overhead).\nentries/floor: entries made durable per second over raw synced writes "
              "per second (group commit).\n");
  return 0;
}
