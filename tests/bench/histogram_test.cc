// The latency histogram's bucket arithmetic and percentiles (against exact percentiles of a
// seeded random sample), and kvc-bench's small helpers: key encoding, ratios, the JSON report.
#include "histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "report.h"
#include "runner.h"

namespace kvc::bench {
namespace {

TEST(HistogramTest, EveryValueLiesInItsBucketWhichIsNarrow) {
  std::mt19937_64 rng(301);
  std::vector<std::uint64_t> values;
  for (std::uint64_t v = 0; v < 5000; ++v) values.push_back(v);
  for (int i = 0; i < 20000; ++i) values.push_back(rng() >> (rng() % 64));
  values.push_back(UINT64_MAX);
  for (std::uint64_t v : values) {
    const std::size_t b = Histogram::bucket_of(v);
    ASSERT_LT(b, Histogram::bucket_count()) << v;
    ASSERT_LE(Histogram::bucket_low(b), v) << v;
    ASSERT_GE(Histogram::bucket_high(b), v) << v;
    // Exact below 256; above, a bucket spans less than 1/128 of its values.
    const std::uint64_t width = Histogram::bucket_high(b) - Histogram::bucket_low(b);
    if (v < 256) {
      ASSERT_EQ(width, 0u) << v;
    } else {
      ASSERT_LE(static_cast<double>(width), static_cast<double>(Histogram::bucket_low(b)) / 128)
          << v;
    }
  }
}

TEST(HistogramTest, BucketsAreContiguous) {
  for (std::size_t b = 0; b + 1 < Histogram::bucket_count(); ++b) {
    ASSERT_EQ(Histogram::bucket_high(b) + 1, Histogram::bucket_low(b + 1)) << b;
  }
  EXPECT_EQ(Histogram::bucket_high(Histogram::bucket_count() - 1), UINT64_MAX);
}

TEST(HistogramTest, PercentilesMatchTheExactOnesWithinOnePercent) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> d(7.0, 1.2);  // microseconds: a long tail
  Histogram h;
  std::vector<std::uint64_t> all;
  for (int i = 0; i < 100000; ++i) {
    const auto v = static_cast<std::uint64_t>(d(rng));
    h.record(v);
    all.push_back(v);
  }
  std::sort(all.begin(), all.end());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
    SCOPED_TRACE(q);
    const std::uint64_t exact =
        all[static_cast<std::size_t>(std::ceil(q * static_cast<double>(all.size()))) - 1];
    const std::uint64_t got = h.percentile(q);
    EXPECT_GE(got, exact);
    EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * 1.01 + 1);
  }
  EXPECT_EQ(h.min(), all.front());
  EXPECT_EQ(h.max(), all.back());
  EXPECT_EQ(h.percentile(1.0), all.back());
  EXPECT_EQ(h.count(), all.size());
}

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  Histogram a, b, both;
  for (std::uint64_t v = 1; v < 3000; v += 7) {
    a.record(v);
    both.record(v);
  }
  for (std::uint64_t v = 100000; v < 200000; v += 997) {
    b.record(v);
    both.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), both.count());
  EXPECT_EQ(a.min(), both.min());
  EXPECT_EQ(a.max(), both.max());
  for (double q : {0.1, 0.5, 0.75, 0.99}) EXPECT_EQ(a.percentile(q), both.percentile(q)) << q;
}

TEST(HistogramTest, SingleValueIsExactAtEveryPercentile) {
  Histogram h;
  h.record(123456);
  for (double q : {0.0, 0.5, 1.0}) EXPECT_EQ(h.percentile(q), 123456u) << q;
}

TEST(MakeKeyTest, DecimalWhenTheKeySpaceFitsElseBinary) {
  EXPECT_EQ(make_key(42, 8, 100000), "00000042");
  EXPECT_EQ(make_key(0, 8, 1), "00000000");
  EXPECT_EQ(make_key(99999999, 8, 100000000), "99999999");
  // 10^8 keys do not fit in 4 digits: big-endian bytes.
  EXPECT_EQ(make_key(0x01020304, 4, 100000000), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(make_key(7, 3, 1000).size(), 3u);
}

TEST(ParseRatioTest, AcceptsFractionsAndPercentagesOnly) {
  EXPECT_DOUBLE_EQ(*parse_ratio("0.75"), 0.75);
  EXPECT_DOUBLE_EQ(*parse_ratio("90%"), 0.9);
  EXPECT_DOUBLE_EQ(*parse_ratio("0"), 0.0);
  for (const char* bad : {"", "x", "1.5", "-0.1", "101%", "0.5x", "%"}) {
    EXPECT_FALSE(parse_ratio(bad).ok()) << bad;
  }
}

TEST(ValidateTest, RejectsImpossibleOptions) {
  BenchOptions good;
  good.endpoints = {net::Address{}};
  EXPECT_TRUE(validate(good).ok());
  const struct {
    const char* name;
    void (*change)(BenchOptions&);
  } cases[] = {
      {"no endpoints", [](BenchOptions& o) { o.endpoints.clear(); }},
      {"no clients", [](BenchOptions& o) { o.clients = 0; }},
      {"no conns", [](BenchOptions& o) { o.conns = 0; }},
      {"nothing to do", [](BenchOptions& o) { o.total = 0; }},
      {"empty key", [](BenchOptions& o) { o.key_size = 0; }},
      {"empty key space", [](BenchOptions& o) { o.key_space_size = 0; }},
      {"negative rate", [](BenchOptions& o) { o.rate = -1; }},
      {"watch value too small",
       [](BenchOptions& o) {
         o.workload = Workload::kWatch;
         o.val_size = 8;
       }},
      {"cas open loop",
       [](BenchOptions& o) {
         o.workload = Workload::kCas;
         o.rate = 10;
       }},
      // Idle connections are plain TCP (idle.h): refused with any TLS flag.
      {"idle conns with a secret",
       [](BenchOptions& o) {
         o.idle_conns = 3;
         o.secret_file = "secret";
       }},
      {"idle conns with a CA",
       [](BenchOptions& o) {
         o.idle_conns = 3;
         o.tls.trusted_ca_file = "ca.pem";
       }},
      {"idle conns with a client certificate",
       [](BenchOptions& o) {
         o.idle_conns = 3;
         o.tls.cert_file = "c.pem";
         o.tls.key_file = "k.pem";
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    BenchOptions o = good;
    c.change(o);
    EXPECT_EQ(validate(o).code(), Code::kInvalidArgument);
  }
  BenchOptions idle_tls = good;
  idle_tls.idle_conns = 1;
  idle_tls.tls.trusted_ca_file = "ca.pem";
  EXPECT_NE(validate(idle_tls).message().find("--idle-conns does not support TLS"),
            std::string::npos);
}

TEST(ReportTest, JsonCarriesTheContractKeys) {
  BenchOptions o;
  BenchResult r;
  r.workload = "put";
  r.ok = 3;
  r.issued = 4;
  r.elapsed_s = 0.5;
  r.errors["timeout"] = 1;
  r.first_error = "timeout: no \"answer\"";
  for (std::uint64_t v : {1000, 2000, 3000}) r.latency.record(v);
  const std::string j = format_json(o, r);
  // p50 is the bucket's highest equivalent value: 2.0xx, within the histogram's precision.
  for (const char* key :
       {"\"workload\":\"put\"", "\"ok\":3", "\"issued\":4", "\"error_count\":1",
        "\"errors\":{\"timeout\":1}", "\"throughput\":6.0", "\"p50\":2.0", "\"p999\":3.000",
        "\"max\":3.000", "\"min\":1.000", "\"first_error\":\"timeout: no \\\"answer\\\"\""}) {
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  }
  const std::string t = format_text(o, r);
  EXPECT_NE(t.find("p99.9 3.000"), std::string::npos) << t;
  EXPECT_NE(t.find("timeout 1"), std::string::npos) << t;
}

}  // namespace
}  // namespace kvc::bench
