// kvc-bench's load generator: drives one workload (put, get, range, cas, watch, mixed,
// lease-expiry) against a
// kvc cluster through the client library, closed loop (--clients requests in flight) or open
// loop (--rate: requests start on a fixed schedule and latency is measured from the scheduled
// time, so a stall is not hidden by coordinated omission), and reports throughput, a latency
// histogram and errors by kind. It does not print: cmd/kvc-bench formats the result. One
// run_bench() call at a time per process; run_bench itself is internally synchronised.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "histogram.h"
#include "idle.h"
#include "kvc/common/status.h"
#include "kvc/net/address.h"
#include "kvc/net/tls.h"

namespace kvc::bench {

enum class Workload { kPut, kGet, kRange, kCas, kWatch, kMixed, kLeaseExpiry };
std::string workload_name(Workload w);

struct BenchOptions {
  Workload workload = Workload::kPut;
  std::vector<net::Address> endpoints;
  std::size_t clients = 1;        // requests in flight (closed loop); the cap with --rate
  std::size_t conns = 1;          // connections to each member
  std::uint64_t total = 10000;    // operations (puts for watch), unless duration_ms is set
  std::uint64_t duration_ms = 0;  // run for this long instead of `total` operations
  std::size_t key_size = 8;
  std::size_t val_size = 8;
  std::uint64_t key_space_size = 1;  // keys are drawn from [0, key_space_size)
  bool sequential_keys = false;      // 0, 1, 2, ... (mod key_space_size) instead of random
  std::uint64_t first_key = 0;       // sequential keys start here (to load in stages)
  bool target_leader = false;        // send everything to the leader only
  double rate = 0;                   // operations per second, open loop; 0: closed loop
  std::uint64_t timeout_ms = 5000;   // per request
  std::uint64_t seed = 1;            // key and read/write choices
  std::string secret_file;           // the cluster's shared secret, when it has one
  net::TlsConfig tls;                // --cacert (trusted_ca_file), --cert, --key
  std::string token;                 // --token: a named token (kvc-permissions(5))
  // get, range, mixed
  bool serializable = false;
  std::optional<std::string> key;    // get: always this key instead of the key space
  std::string prefix;                // range: keys that start with this
  std::uint64_t limit = 100;         // range: at most this many keys per request
  double read_ratio = 0.5;           // mixed: fraction of operations that are gets
  std::size_t watchers = 1;          // watch: streams on the watched prefix
  bool per_watch_responses = false;  // watch: no shared watch responses (Hello::shared_watches)
  std::string watch_prefix;          // watch, lease-expiry: the prefix watched (and put under)
  // lease-expiry: `total` leases of this ttl, each with one key, never renewed; latency is from
  // the end of the ttl (counted from the grant's answer) to the key's delete event.
  std::uint64_t lease_ttl_s = 2;
  // Idle connections (idle.h) opened over all endpoints before the workload and held, silent,
  // until it ends; on_idle_open is called once they are open, then the run waits idle_hold_ms.
  std::size_t idle_conns = 0;
  std::uint64_t idle_hold_ms = 0;
  std::function<void(const IdleSummary&)> on_idle_open;
  // Called about five times a second from a thread of run_bench's, with operations done so far.
  std::function<void(std::uint64_t done, double elapsed_s)> on_progress;
};

struct BenchResult {
  std::string workload;
  std::uint64_t ok = 0;      // operations that succeeded (events delivered, for watch)
  std::uint64_t issued = 0;  // operations started (puts, for watch)
  std::map<std::string, std::uint64_t> errors;  // code name -> count
  double elapsed_s = 0;                         // first start to last completion
  Histogram latency;                            // microseconds; watch: put sent -> event delivered
  Histogram put_latency;                        // watch only: the puts' own latency
  std::uint64_t reads = 0, writes = 0;          // mixed
  std::string leader;                           // the member used with target_leader
  std::string first_error;                      // one full message, for the report
  Code first_error_code = Code::kOk;
  IdleSummary idle;  // with idle_conns: what was opened, and how many were still open at the end

  double throughput() const { return elapsed_s > 0 ? static_cast<double>(ok) / elapsed_s : 0; }
  std::uint64_t error_count() const;
};

Status validate(const BenchOptions& options);
Result<BenchResult> run_bench(const BenchOptions& options);

// The key for number `n`: decimal, zero-padded to `key_size` when the key space fits in that
// many digits, else `key_size` big-endian bytes of n. `prefix` is put in front (watch).
std::string make_key(std::uint64_t n, std::size_t key_size, std::uint64_t key_space_size);

// Parses "0.75" or "75%" into [0, 1].
Result<double> parse_ratio(const std::string& text);

}  // namespace kvc::bench
