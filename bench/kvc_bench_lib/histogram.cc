#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace kvc::bench {
namespace {

// Values below kLinear have a bucket each; above, each power of two [2^k, 2^(k+1)) for
// k >= kSubBits+1 is split into kHalf equal buckets, so a bucket spans at most 1/kHalf of its
// values.
constexpr unsigned kSubBits = 7;
constexpr std::uint64_t kHalf = 1u << kSubBits;  // 128
constexpr std::uint64_t kLinear = kHalf * 2;     // 256
constexpr unsigned kMaxShift = 64 - kSubBits - 1;

}  // namespace

Histogram::Histogram() : counts_(bucket_count(), 0) {}

std::size_t Histogram::bucket_count() { return kLinear + kMaxShift * kHalf; }

std::size_t Histogram::bucket_of(std::uint64_t value) {
  if (value < kLinear) return static_cast<std::size_t>(value);
  // shift >= 1: value >> shift lies in [kHalf, 2 * kHalf).
  const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - kSubBits - 1;
  const std::uint64_t sub = (value >> shift) - kHalf;
  return static_cast<std::size_t>(kLinear + (shift - 1) * kHalf + sub);
}

std::uint64_t Histogram::bucket_low(std::size_t bucket) {
  if (bucket < kLinear) return bucket;
  const std::size_t rest = bucket - kLinear;
  const unsigned shift = static_cast<unsigned>(rest / kHalf) + 1;
  const std::uint64_t sub = rest % kHalf;
  return (kHalf + sub) << shift;
}

std::uint64_t Histogram::bucket_high(std::size_t bucket) {
  if (bucket < kLinear) return bucket;
  const std::size_t rest = bucket - kLinear;
  const unsigned shift = static_cast<unsigned>(rest / kHalf) + 1;
  return bucket_low(bucket) + ((std::uint64_t{1} << shift) - 1);
}

void Histogram::record(std::uint64_t value) {
  ++counts_[bucket_of(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value);
}

void Histogram::merge(const Histogram& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double Histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::uint64_t Histogram::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the value asked for, 1-based: at least one value.
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(bucket_high(i), min(), max_);
  }
  return max_;
}

}  // namespace kvc::bench
