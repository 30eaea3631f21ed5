// The chaos tests' clients and their history. A Workload runs dozens of client threads, each one
// logical client with one operation at a time (put, get, compare-and-set, delete on a small key
// space), through the kvc client library: most requests follow the leader from different
// starting members, and a share of the reads go to one chosen member only (so followers, and
// deposed leaders that clients still reach, answer reads too). A Recorder keeps every
// operation with its invoke and response times (steady clock, microseconds since the run
// began) and its outcome mapped as the checker expects (record_response). Values are unique
// per write; revisions are recorded (the checker is fast only with them). Besides the hot keys
// every client writes all the time, a few cold keys are written rarely and read often: values
// that sit unchanged for seconds, which is what a damaged or rolled-back member could serve
// stale or wrong (and what a scrubber exists for).
//
// Thread-safety: Recorder is thread-safe. Workload::start/stop from one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chaos_cluster.h"
#include "kvc/check/history.h"
#include "kvc/client/client.h"
#include "kvc/wire/messages.h"

namespace kvc::chaos {

using Clock = std::chrono::steady_clock;

// Fills `op`'s outcome and results from the client's answer (the rules of client.h): ok and
// definite answers (compare failed, not found) are kOk, kTimeout is kUnknown (the write may or
// may not have been applied), anything else kFailed (not applied). `response_us` is the time
// the answer arrived.
void record_response(check::Operation& op, const wire::Response& r, std::uint64_t response_us);

class Recorder {
 public:
  explicit Recorder(Clock::time_point origin) : origin_(origin) {}

  std::uint64_t now_us() const;
  Clock::time_point origin() const { return origin_; }

  // Records an invocation now; returns its handle.
  std::size_t begin(check::Operation op);
  void complete(std::size_t handle, const wire::Response& r);

  // The history so far; operations still in flight are kUnknown (they may yet take effect).
  check::History snapshot() const;
  std::size_t size() const;

 private:
  Clock::time_point origin_;
  mutable std::mutex mu_;
  check::History ops_;         // guarded by mu_
  std::vector<bool> pending_;  // guarded by mu_
};

struct WorkloadOptions {
  int clients = 24;
  int keys = 8;
  // Written by about 1 operation in 500, read by about 1 in 25; the first ("cold0") is frozen:
  // written once when the run starts, then only read, so a value damaged on one member's disk
  // stays the only version of it until that member serves or detects it (nemesis damage).
  int cold_keys = 4;
  std::uint64_t op_timeout_ms = 1500;
  std::uint64_t seed = 1;
  int targeted_read_percent = 50;  // of the reads, those sent to one chosen member only
};

struct WorkloadStats {
  std::uint64_t ok = 0, failed = 0, unknown = 0;
};

// The hot keys the workload uses: "k0" .. "k<keys-1>"; the cold ones: "cold0" (frozen) ..
std::string workload_key(int i);
std::string cold_key(int i);
// Every key of a workload with `keys` hot and `cold` cold keys, the cold ones first.
std::vector<std::string> workload_keys(int keys, int cold);

class Workload {
 public:
  Workload(ChaosCluster& cluster, Recorder& recorder, WorkloadOptions options);
  ~Workload();  // stops
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  Status start();
  // Asks every client to finish its operation in flight and joins them (bounded by the
  // operation timeout).
  void stop();
  WorkloadStats stats() const;

 private:
  void run_client(int id);
  bool wait_or_stop(std::uint64_t ms);

  ChaosCluster& cluster_;
  Recorder& recorder_;
  WorkloadOptions options_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<std::uint64_t> ok_{0}, failed_{0}, unknown_{0};
};

}  // namespace kvc::chaos
