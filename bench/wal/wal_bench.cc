// wal_bench: how close WAL appends come to the disk's own limit. In one run and one directory it
// measures the floor (write 256 bytes into a preallocated file, then fdatasync: latency p50/p99;
// also into a zero-filled file, for comparison)
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
#include <memory>
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
  CLI::App app(
      "wal_bench: WAL append latency and throughput with group commit, against the raw "
      "fdatasync floor of the same disk, measured in the same run.");
  std::string dir = "wal-bench.tmp";
  std::size_t syncs = 1000;
  std::size_t entry_bytes = 256;
  std::vector<std::size_t> batches = {1, 16, 64, 256};
  app.add_option("--dir", dir,
                 "Directory to write in (created, then removed); put it on the "
                 "disk to measure")
      ->capture_default_str();
  app.add_option("--syncs", syncs, "fdatasync calls per measurement")->capture_default_str();
  app.add_option("--entry-bytes", entry_bytes, "Data bytes per entry")->capture_default_str();
  app.add_option("--batches", batches, "Entries per sync to measure")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (syncs == 0 || std::filesystem::exists(dir)) {
    std::fprintf(stderr, "wal_bench: --dir %s must not exist; --syncs must be > 0\n", dir.c_str());
    return 2;
  }
  std::filesystem::create_directories(dir);

  // The floor (what one small synced write costs on this disk, in a file preallocated like a
  // segment) and each WAL batch size are measured in interleaved rounds, so that a disk whose
  // speed drifts during the run (other load, write-back) affects them all alike. A second floor
  // writes into a zero-filled file instead: on file systems that convert fallocate's unwritten
  // extents on first write (ext4, xfs), the difference is what that conversion costs per sync.
  struct Run {
    std::string name;
    std::size_t batch = 0;  // entries per sync; 0 for a floor
    std::vector<double> us;
    double seconds = 0;
    std::unique_ptr<kvc::storage::OpenedWal> wal;
    std::uint64_t next = 1;
    kvc::storage::UniqueFd fd;  // a floor's file
    std::string path;
    std::uint64_t offset = 0;
  };
  const std::uint64_t floor_bytes = (syncs + 1) * entry_bytes + (1u << 20);
  std::vector<Run> runs;
  for (const bool zero_filled : {false, true}) {
    Run r;
    r.name = zero_filled ? "floor, zero-filled file" : "floor: write+fdatasync";
    r.path = dir + (zero_filled ? "/floor-zeros" : "/floor");
    kvc::Result<kvc::storage::UniqueFd> fd =
        kvc::storage::open_file(r.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!fd.ok()) return die(fd.status());
    r.fd = std::move(*fd);
    if (zero_filled) {
      const std::string zeros(1u << 20, '\0');
      for (std::uint64_t off = 0; off < floor_bytes; off += zeros.size()) {
        if (kvc::Status s = kvc::storage::pwrite_all(r.fd.get(), zeros, off, r.path); !s.ok()) {
          return die(s);
        }
      }
      if (kvc::Status s = kvc::storage::fsync_fd(r.fd.get(), r.path); !s.ok()) return die(s);
    } else if (::fallocate(r.fd.get(), 0, 0, static_cast<off_t>(floor_bytes)) != 0) {
      std::perror("fallocate (continuing)");
    }
    runs.push_back(std::move(r));
  }
  for (const std::size_t batch : batches) {
    Run r;
    r.batch = batch;
    char name[64];
    std::snprintf(name, sizeof name, "wal: %zu entr%s/sync", batch, batch == 1 ? "y" : "ies");
    r.name = name;
    kvc::Result<kvc::storage::OpenedWal> w =
        kvc::storage::Wal::open(dir + "/wal-" + std::to_string(batch));
    if (!w.ok()) return die(w.status());
    r.wal = std::make_unique<kvc::storage::OpenedWal>(std::move(*w));
    runs.push_back(std::move(r));
  }
  const std::string block(entry_bytes, 'f');
  const std::size_t rounds = std::min<std::size_t>(10, syncs);
  std::vector<kvc::raft::Entry> entries;
  for (std::size_t round = 0; round < rounds; ++round) {
    const std::size_t n = syncs / rounds + (round < syncs % rounds ? 1 : 0);
    for (Run& r : runs) {
      const auto start = Clock::now();
      for (std::size_t i = 0; i < n; ++i) {
        if (r.batch == 0) {
          const auto t0 = Clock::now();
          if (kvc::Status s = kvc::storage::pwrite_all(r.fd.get(), block, r.offset, r.path);
              !s.ok()) {
            return die(s);
          }
          if (kvc::Status s = kvc::storage::fdatasync_fd(r.fd.get(), r.path); !s.ok()) {
            return die(s);
          }
          r.us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
          r.offset += entry_bytes;
          continue;
        }
        entries.resize(r.batch);
        for (kvc::raft::Entry& e : entries) {
          e.index = r.next++;
          e.term = 1;
          e.data.assign(entry_bytes, 'e');
        }
        const kvc::raft::HardState hs{.term = 1, .vote = 1, .commit = r.next - 1};
        const auto t0 = Clock::now();
        if (kvc::Status s = r.wal->wal.append(hs, entries); !s.ok()) return die(s);
        if (kvc::Status s = r.wal->wal.sync(); !s.ok()) return die(s);
        r.us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      r.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    }
  }

  const Stats floor = stats_of(runs[0].us, runs[0].seconds);
  std::printf("wal_bench: dir=%s syncs=%zu entry_bytes=%zu rounds=%zu\n", dir.c_str(), syncs,
              entry_bytes, rounds);
  std::printf("%-24s %10s %10s %12s %14s %11s %14s\n", "measurement", "p50_us", "p99_us",
              "syncs_per_s", "entries_per_s", "p50/floor", "entries/floor");
  for (const Run& r : runs) {
    const Stats st = stats_of(r.us, r.seconds);
    const double per_sync = r.batch == 0 ? 1.0 : static_cast<double>(r.batch);
    const double entries_per_s = st.ops_per_s * per_sync;
    std::printf("%-24s %10.1f %10.1f %12.0f %14.0f %11.2f %14.2f\n", r.name.c_str(), st.p50_us,
                st.p99_us, st.ops_per_s, entries_per_s, st.p50_us / floor.p50_us,
                entries_per_s / floor.ops_per_s);
  }
  std::filesystem::remove_all(dir);
  std::printf(
      "p50/floor: latency of one append+sync over one raw write+fdatasync (1.00 = no "
      "overhead).\nentries/floor: entries made durable per second over raw synced writes "
      "per second (group commit).\n");
  return 0;
}
