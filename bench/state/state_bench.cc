// State machine benchmark (reported, never asserted): apply throughput into the overlay, flush
// throughput into LMDB, snapshot write, verify and install speed, and the state hash, for N
// keys (default 1,000,000). Each figure is set beside a baseline measured in the same run on the
// same machine: a std::map insert for apply, raw LMDB puts in one synced transaction for flush,
// a plain write + fsync of as many bytes for snapshot writing, a plain read for verification,
// one fdatasync for the fixed cost of a small flush, and an unchecked decode for the cost of
// verifying a record's checksum (state_format.h), which every LMDB read pays.
//
//   state_bench [--keys N] [--value-bytes B] [--batch K] [--dir DIR]
#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/storage/snapshot.h"
#include "kvc/storage/state.h"
#include "kvc/storage/state_format.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvc::storage::Command;
using kvc::storage::CommandOp;
using kvc::storage::StateMachine;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "state_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(const kvc::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.to_string());
}

std::string key_of(std::uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "bench/key/%010llu", static_cast<unsigned long long>(i));
  return buf;
}

void row(const char* what, double value, const char* unit, double baseline, const char* base_name) {
  if (baseline > 0) {
    std::printf("%-34s %14.1f %-8s  %6.2fx of %s\n", what, value, unit, value / baseline,
                base_name);
  } else {
    std::printf("%-34s %14.1f %-8s\n", what, value, unit);
  }
}

// Raw LMDB: `n` puts of the bench keys in one synced transaction; returns seconds.
double raw_lmdb_puts(const std::string& dir, std::uint64_t first, std::uint64_t n,
                     const std::string& value) {
  std::filesystem::create_directories(dir);
  MDB_env* env = nullptr;
  if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, 64ull << 30) != 0 ||
      mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0600) != 0) {
    die("raw lmdb open");
  }
  const auto t = Clock::now();
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  if (mdb_txn_begin(env, nullptr, 0, &txn) != 0 || mdb_dbi_open(txn, nullptr, 0, &dbi) != 0) {
    die("raw lmdb begin");
  }
  std::string v = "xxx" + value;  // about what kvc stores: three varints and the value
  for (std::uint64_t i = first; i < first + n; ++i) {
    const std::string k = key_of(i);
    MDB_val kk{k.size(), const_cast<char*>(k.data())}, vv{v.size(), v.data()};
    if (mdb_put(txn, dbi, &kk, &vv, 0) != 0) die("raw lmdb put");
  }
  if (mdb_txn_commit(txn) != 0) die("raw lmdb commit");
  const double s = seconds_since(t);
  mdb_env_close(env);
  return s;
}

double write_and_fsync(const std::string& path, std::uint64_t bytes) {
  const std::string block(1 << 20, 'x');
  const auto t = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open " + path);
  for (std::uint64_t done = 0; done < bytes;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), bytes - done));
    if (::write(fd, block.data(), n) != static_cast<ssize_t>(n)) die("write " + path);
    done += n;
  }
  if (::fsync(fd) != 0) die("fsync " + path);
  ::close(fd);
  return seconds_since(t);
}

double read_all(const std::string& path) {
  std::string buf(1 << 20, '\0');
  const auto t = Clock::now();
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) die("open " + path);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
  return seconds_since(t);
}

double fdatasync_floor(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open " + path);
  const int rounds = 20;
  const auto t = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    if (::pwrite(fd, "0123456789abcdef", 16, 0) != 16 || ::fdatasync(fd) != 0) die("fdatasync");
  }
  ::close(fd);
  return seconds_since(t) / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t keys = 1000000, batch = 100000, value_bytes = 100;
  std::string base = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  base += "/kvc_state_bench_" + std::to_string(::getpid());
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--keys")
      keys = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--batch")
      batch = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--value-bytes")
      value_bytes = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--dir")
      base = argv[i + 1];
    else
      die("unknown argument " + a + " (--keys N --batch K --value-bytes B --dir DIR)");
  }
  if (keys == 0 || batch == 0) die("--keys and --batch must be positive");
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const std::string value(value_bytes, 'v');
  std::printf("state_bench: %llu keys of %llu-byte values, flush every %llu entries, in %s\n\n",
              static_cast<unsigned long long>(keys), static_cast<unsigned long long>(value_bytes),
              static_cast<unsigned long long>(batch), base.c_str());

  // Baselines.
  double map_s = 0;
  {
    std::map<std::string, std::string> m;
    const auto t = Clock::now();
    for (std::uint64_t i = 1; i <= keys; ++i) m[key_of(i)] = value;
    map_s = seconds_since(t);
  }
  double raw_flush_s = 0;
  for (std::uint64_t first = 1; first <= keys; first += batch) {
    raw_flush_s += raw_lmdb_puts(base + "/raw", first, std::min(batch, keys - first + 1), value);
  }
  const double fsync_s = fdatasync_floor(base + "/fsync_probe");

  // Apply and flush, as a server would: batches applied, then flushed.
  kvc::storage::StateOptions opts;
  opts.map_size = 64ull << 30;
  auto sm = StateMachine::open(base + "/state", opts);
  check(sm.status(), "open");
  double apply_s = 0, flush_s = 0;
  std::uint64_t index = 0;
  Command c{.op = CommandOp::kPut, .value = value};
  for (std::uint64_t first = 1; first <= keys; first += batch) {
    const std::uint64_t n = std::min(batch, keys - first + 1);
    auto t = Clock::now();
    for (std::uint64_t i = first; i < first + n; ++i) {
      c.key = key_of(i);
      check((*sm)->apply(++index, 1, c).status(), "apply");
    }
    apply_s += seconds_since(t);
    t = Clock::now();
    check((*sm)->flush_all(), "flush");
    flush_s += seconds_since(t);
  }
  // A small flush: its fixed cost against one fdatasync.
  double small_flush_s = 0;
  const int small_rounds = 20;
  for (int r = 0; r < small_rounds; ++r) {
    c.key = key_of(1 + static_cast<std::uint64_t>(r));
    check((*sm)->apply(++index, 1, c).status(), "apply");
    const auto t = Clock::now();
    check((*sm)->flush_all(), "flush");
    small_flush_s += seconds_since(t);
  }
  small_flush_s /= small_rounds;
  // Overwrites of existing keys (reads LMDB for the old revision).
  double overwrite_s = 0;
  {
    const std::uint64_t n = std::min<std::uint64_t>(keys, 200000);
    const auto t = Clock::now();
    for (std::uint64_t i = 1; i <= n; ++i) {
      c.key = key_of((i * 7919) % keys + 1);
      check((*sm)->apply(++index, 1, c).status(), "apply");
    }
    overwrite_s = seconds_since(t) / static_cast<double>(n);
    check((*sm)->flush_all(), "flush");
  }

  // The checksum alone: verifying stored kv records (what every LMDB read now does) against
  // decoding the same bodies without a check, in memory.
  double seal_s = 0, unsealed_s = 0;
  {
    const std::uint64_t n = 200000;
    std::vector<std::string> names(n), stored(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      names[i] = key_of(i + 1);
      kvc::storage::encode_kv_record(stored[i], names[i], value, i + 1, i + 1, 1);
    }
    kvc::storage::KeyValue kv;
    std::uint64_t sink = 0;
    for (int round = 0; round < 3; ++round) {
      auto t0 = Clock::now();
      for (std::uint64_t i = 0; i < n; ++i) {
        if (kvc::storage::decode_kv_record(names[i], stored[i], kv, true) !=
            kvc::storage::RecordProblem::kNone) {
          die("seal check failed");
        }
        sink += kv.value.size();
      }
      seal_s += seconds_since(t0) / static_cast<double>(n);
      t0 = Clock::now();
      for (std::uint64_t i = 0; i < n; ++i) {
        std::string_view in = std::string_view(stored[i]).substr(kvc::storage::kRecordCrcBytes);
        std::uint64_t cr = 0, m = 0, v = 0;
        if (!kvc::storage::get_varint(in, cr) || !kvc::storage::get_varint(in, m) ||
            !kvc::storage::get_varint(in, v)) {
          die("decode failed");
        }
        kv.key.assign(names[i]);
        kv.value.assign(in.data(), in.size());
        sink += kv.value.size() + cr + m + v;
      }
      unsealed_s += seconds_since(t0) / static_cast<double>(n);
    }
    seal_s /= 3;
    unsealed_s /= 3;
    if (sink == 0) die("nothing decoded");
  }

  // Reads that reach LMDB (the overlay is empty after the flush): point gets, a full range.
  double get_s = 0;
  {
    const std::uint64_t n = std::min<std::uint64_t>(keys, 200000);
    const auto t = Clock::now();
    for (std::uint64_t i = 1; i <= n; ++i) {
      kvc::Result<std::optional<kvc::storage::KeyValue>> got =
          (*sm)->get(key_of((i * 7919) % keys + 1));
      check(got.status(), "get");
      if (!got->has_value()) die("get: a key is missing");
    }
    get_s = seconds_since(t) / static_cast<double>(n);
  }
  auto t = Clock::now();
  kvc::Result<kvc::storage::RangePage> all = (*sm)->range({});
  check(all.status(), "range");
  if (all->kvs.size() != keys) die("range: wrong key count");
  const double range_s = seconds_since(t);
  all = kvc::storage::RangePage{};

  t = Clock::now();
  kvc::Result<std::uint64_t> h = (*sm)->hash();
  check(h.status(), "hash");
  const double hash_s = seconds_since(t);
  t = Clock::now();
  kvc::Result<StateMachine::IndexedHash> dh = (*sm)->durable_hash();
  check(dh.status(), "durable_hash");
  if (dh->hash != *h) die("durable hash differs from the hash");
  const double durable_hash_s = seconds_since(t);

  t = Clock::now();
  kvc::Result<kvc::storage::SnapshotInfo> info = (*sm)->write_snapshot(base + "/bench.snap");
  check(info.status(), "write_snapshot");
  const double snap_write_s = seconds_since(t);
  const double snap_mb = static_cast<double>(info->size_bytes) / 1e6;
  const double raw_write_s = write_and_fsync(base + "/raw.bin", info->size_bytes);

  t = Clock::now();
  kvc::Result<kvc::storage::VerifyReport> rep = kvc::storage::verify_snapshot(info->path);
  check(rep.status(), "verify");
  if (rep->problem != kvc::storage::SnapshotProblem::kNone) die("verify: " + rep->message);
  const double verify_s = seconds_since(t);
  const double raw_read_s = read_all(info->path);

  auto dst = StateMachine::open(base + "/installed", opts);
  check(dst.status(), "open");
  t = Clock::now();
  check((*dst)->install_snapshot(info->path), "install");
  const double install_s = seconds_since(t);
  if (*(*dst)->hash() != *h) die("installed state has a different hash");

  const double k = static_cast<double>(keys);
  row("apply put (new keys)", k / apply_s, "ops/s", k / map_s, "std::map insert");
  row("apply put (overwrite, LMDB read)", 1e9 * overwrite_s, "ns/op", 0, "");
  row("flush (batches of --batch)", k / flush_s, "keys/s", k / raw_flush_s, "raw LMDB puts");
  row("flush of one entry", 1e6 * small_flush_s, "us", 1e6 * fsync_s, "one fdatasync");
  row("decode a record, checksum verified", 1e9 * seal_s, "ns/op", 1e9 * unsealed_s,
      "unchecked decode");
  row("get (from LMDB)", 1e9 * get_s, "ns/op", 0, "");
  row("range over every key (LMDB)", k / range_s, "keys/s", 0, "");
  row("hash of the state", 1e3 * hash_s, "ms", 0, "");
  row("durable hash (LMDB alone)", 1e3 * durable_hash_s, "ms", 0, "");
  row("snapshot write", snap_mb / snap_write_s, "MB/s", snap_mb / raw_write_s, "write+fsync");
  row("snapshot verify (page cache)", snap_mb / verify_s, "MB/s", snap_mb / raw_read_s,
      "plain read");
  row("snapshot install", k / install_s, "keys/s", k / raw_flush_s, "raw LMDB puts");
  std::printf(
      "\nsnapshot: %.1f MB, %llu keys; times: apply %.2fs flush %.2fs write %.2fs "
      "verify %.2fs install %.2fs\n",
      snap_mb, static_cast<unsigned long long>(info->record_count), apply_s, flush_s, snap_write_s,
      verify_s, install_s);
  dst->reset();
  sm->reset();
  std::filesystem::remove_all(base);
  return 0;
}
