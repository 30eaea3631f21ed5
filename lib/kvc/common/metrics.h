// Metrics: counters, gauges and fixed-bucket histograms, optionally labelled (op="put"), kept in
// a Registry that renders them in the Prometheus text exposition format (version 0.0.4), which
// is what GET /metrics serves. Recording (Counter::inc, Gauge::set/add, Histogram::observe) is a
// few relaxed atomic operations: no lock, no allocation, safe from any thread, so it can sit on
// the hot path. Registering takes the registry's mutex and allocates: do it once at start-up and
// keep the returned reference, which stays valid for the registry's lifetime. Exposition reads
// the atomics while writers carry on, so a scrape is a near-snapshot: a histogram's _count always
// equals its +Inf bucket, but _sum may already include an observation whose bucket is not yet
// counted (or the reverse). No I/O, no libuv; thread-safe throughout.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::metrics {

struct Label {
  std::string name;
  std::string value;
};
using Labels = std::vector<Label>;

// Latency buckets in seconds, 100 µs to 10 s: requests, fsyncs, applies, round trips.
inline constexpr std::array<double, 16> kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
// Buckets in seconds for slow operations such as snapshots, 10 ms to 10 min.
inline constexpr std::array<double, 11> kLongDurationBuckets = {0.01, 0.05, 0.1, 0.5, 1,  5,
                                                                10,   30,   60,  180, 600};

// A value that only goes up (events, bytes). Starts at 0.
class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down (term, indexes, open connections). Starts at 0.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void inc() { add(1); }
  void dec() { add(-1); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (upper bounds, inclusive, as Prometheus's `le`) plus
// their sum. NaN observations are ignored.
class Histogram {
 public:
  // `bounds` must be finite and strictly increasing (checked); +Inf is implicit.
  explicit Histogram(std::span<const double> bounds);

  void observe(double v);
  // Observes the seconds elapsed since `start`.
  void observe_since(std::chrono::steady_clock::time_point start) {
    observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;
  std::span<const double> bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  // Invariant: counts_ has bounds_.size() + 1 slots; slot i counts observations v with
  // bounds_[i-1] < v <= bounds_[i] (the last slot: v > every bound). Not cumulative.
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// The set of metrics one process exposes. Metric and label names follow Prometheus's rules
// ([a-zA-Z_:][a-zA-Z0-9_:]* and [a-zA-Z_][a-zA-Z0-9_]*); a bad name, a name registered again
// with another type (or other buckets), or `le` as a histogram label is a bug and fails a
// KVC_CHECK. Asking again for the same name and labels returns the same metric.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                       const Labels& labels = {});

  // `collect` runs at the start of every expose(), on the exposing thread and without the
  // registry's lock (it may register metrics), to refresh gauges that are cheaper to read at
  // scrape time than to keep current (term, commit index).
  void add_collector(std::function<void()> collect);

  // Every metric in the text exposition format, families in registration order, each with its
  // # HELP and # TYPE lines; series in registration order.
  std::string expose() const;

 private:
  struct Series;
  struct Family;
  enum class Type { kCounter, kGauge, kHistogram };
  Series& series(std::string_view name, std::string_view help, Type type,
                 std::span<const double> bounds, const Labels& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;        // guarded by mu_
  std::map<std::string, Family*, std::less<>> by_name_;  // guarded by mu_
  std::vector<std::function<void()>> collectors_;        // guarded by mu_
};

// Bytes this process (thread = false) or the calling thread (thread = true) has caused to be
// written to storage: write_bytes of /proc/self/io or /proc/thread-self/io. Linux counts a page
// when it becomes dirty, so rewriting a page still dirty in the page cache adds nothing; it is
// what reaches the disk, less what a truncation cancels. nullopt where the kernel does not
// account it (no task I/O accounting, or no /proc).
std::optional<std::uint64_t> storage_bytes_written(bool thread);

// This process's anonymous resident memory (RssAnon of /proc/self/status), in bytes; nullopt
// where the kernel does not report it.
std::optional<std::uint64_t> anonymous_memory_bytes();

// Prometheus text-format escaping: label values escape backslash, double quote and newline;
// HELP text escapes backslash and newline.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// A sample value as the text format spells it: shortest round-trip decimal, "+Inf", "-Inf",
// "NaN".
std::string format_value(double v);

}  // namespace kvc::metrics
