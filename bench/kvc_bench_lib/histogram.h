// An HDR-style latency histogram: log-linear buckets over non-negative integer values (kvc-bench
// records microseconds), exact below 256 and within 1/128 (< 0.8 %) of the value above, so a
// percentile has two to three significant digits whatever the range. Fixed memory (about
// 40 KiB), O(1) record, mergeable. The minimum and maximum are exact. Not thread-safe: record
// on one thread, merge copies.
#pragma once

#include <cstdint>
#include <vector>

namespace kvc::bench {

class Histogram {
 public:
  Histogram();

  void record(std::uint64_t value);
  void merge(const Histogram& other);

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  double mean() const;
  // The smallest recorded-bucket value v such that at least `q` (0..1] of the values are <= v;
  // reported as the bucket's highest equivalent value, clamped to [min(), max()]. 0 when empty.
  std::uint64_t percentile(double q) const;

  // Bucket arithmetic, public for tests.
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t bucket_low(std::size_t bucket);   // smallest value in the bucket
  static std::uint64_t bucket_high(std::size_t bucket);  // largest value in the bucket
  static std::size_t bucket_count();

 private:
  // Invariant: count_ == sum of counts_; min_ <= max_ when count_ > 0.
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace kvc::bench
