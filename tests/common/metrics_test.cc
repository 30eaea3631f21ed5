#include "kvc/common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace kvc::metrics {
namespace {

TEST(CounterTest, CountsUp) {
  Counter c;
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
}

TEST(GaugeTest, SetsAndMovesBothWays) {
  Gauge g;
  g.set(10);
  g.inc();
  g.dec();
  g.dec();
  g.add(0.5);
  EXPECT_DOUBLE_EQ(g.value(), 9.5);
}

TEST(HistogramTest, BoundsAreInclusiveUpperLimits) {
  const double bounds[] = {1, 2, 5};
  Histogram h(bounds);
  for (double v : {0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 6.0, -3.0}) h.observe(v);
  const Histogram::Snapshot s = h.snapshot();
  // le=1: 0.5 1 -3; le=2: + 1.5 2; le=5: + 4 5; +Inf: + 6.
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{3, 5, 7, 8}));
  EXPECT_EQ(s.count, 8u);
  EXPECT_DOUBLE_EQ(s.sum, 0.5 + 1 + 1.5 + 2 + 4 + 5 + 6 - 3);
}

TEST(HistogramTest, IgnoresNaNAndCountsInfinityAboveEveryBound) {
  const double bounds[] = {1};
  Histogram h(bounds);
  h.observe(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(h.snapshot().count, 0u);
  h.observe(std::numeric_limits<double>::infinity());
  EXPECT_EQ(h.snapshot().cumulative, (std::vector<std::uint64_t>{0, 1}));
}

TEST(HistogramTest, ObserveSinceRecordsElapsedSeconds) {
  Histogram h(kLatencyBuckets);
  h.observe_since(std::chrono::steady_clock::now() - std::chrono::milliseconds(30));
  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 1u);
  EXPECT_GE(s.sum, 0.030);
  EXPECT_LT(s.sum, 60.0);
}

TEST(RegistryTest, ExposesEveryKindInTheTextFormat) {
  Registry r;
  r.counter("kvc_proposals_total", "Proposals by outcome.", {{"outcome", "committed"}}).inc(3);
  r.counter("kvc_proposals_total", "Proposals by outcome.", {{"outcome", "failed"}}).inc();
  r.gauge("kvc_raft_term", "The current term.").set(7);
  const double bounds[] = {0.001, 0.5};
  Histogram& h = r.histogram("kvc_apply_seconds", "Apply latency.", bounds, {{"op", "put"}});
  h.observe(0.0005);
  h.observe(0.25);
  h.observe(2);
  EXPECT_EQ(r.expose(),
            "# HELP kvc_proposals_total Proposals by outcome.\n"
            "# TYPE kvc_proposals_total counter\n"
            "kvc_proposals_total{outcome=\"committed\"} 3\n"
            "kvc_proposals_total{outcome=\"failed\"} 1\n"
            "# HELP kvc_raft_term The current term.\n"
            "# TYPE kvc_raft_term gauge\n"
            "kvc_raft_term 7\n"
            "# HELP kvc_apply_seconds Apply latency.\n"
            "# TYPE kvc_apply_seconds histogram\n"
            "kvc_apply_seconds_bucket{op=\"put\",le=\"0.001\"} 1\n"
            "kvc_apply_seconds_bucket{op=\"put\",le=\"0.5\"} 2\n"
            "kvc_apply_seconds_bucket{op=\"put\",le=\"+Inf\"} 3\n"
            "kvc_apply_seconds_sum{op=\"put\"} 2.2505\n"
            "kvc_apply_seconds_count{op=\"put\"} 3\n");
}

TEST(RegistryTest, SameNameAndLabelsReturnTheSameMetric) {
  Registry r;
  Counter& a = r.counter("c_total", "help", {{"op", "get"}});
  Counter& b = r.counter("c_total", "help", {{"op", "get"}});
  Counter& other = r.counter("c_total", "help", {{"op", "put"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
}

TEST(RegistryTest, EscapesLabelValuesAndHelp) {
  Registry r;
  r.gauge("g", "line one\nback\\slash \"quoted\"", {{"peer", "a\"b\\c\nd"}}).set(1);
  EXPECT_EQ(r.expose(),
            "# HELP g line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE g gauge\n"
            "g{peer=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(RegistryTest, FormatsSpecialAndFractionalValues) {
  const struct {
    double v;
    const char* want;
  } cases[] = {{0, "0"},
               {0.1, "0.1"},
               {-2.5, "-2.5"},
               {1e-05, "1e-05"},
               {123456789, "123456789"},
               {std::numeric_limits<double>::infinity(), "+Inf"},
               {-std::numeric_limits<double>::infinity(), "-Inf"},
               {std::numeric_limits<double>::quiet_NaN(), "NaN"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(format_value(c.v), c.want);
  }
}

TEST(RegistryTest, CollectorsRunBeforeExposition) {
  Registry r;
  Gauge& g = r.gauge("kvc_commit_index", "Commit index.");
  int runs = 0;
  r.add_collector([&] {
    ++runs;
    g.set(100 + runs);
    // A collector may register metrics (it runs without the registry's lock).
    r.counter("kvc_scrapes_total", "Scrapes.").inc();
  });
  EXPECT_NE(r.expose().find("kvc_commit_index 101\n"), std::string::npos);
  const std::string second = r.expose();
  EXPECT_NE(second.find("kvc_commit_index 102\n"), std::string::npos);
  EXPECT_NE(second.find("kvc_scrapes_total 2\n"), std::string::npos);
}

TEST(RegistryTest, ConcurrentRecordingLosesNothing) {
  Registry r;
  Counter& c = r.counter("events_total", "Events.");
  Gauge& g = r.gauge("level", "Level.");
  Histogram& h = r.histogram("lat_seconds", "Latency.", kLatencyBuckets);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::atomic<bool> stop{false};
  // A scraper runs alongside the writers: every snapshot it takes is internally consistent.
  std::thread scraper([&] {
    for (int i = 0; i < 1000 && !stop.load(); ++i) {
      const Histogram::Snapshot s = h.snapshot();
      ASSERT_EQ(s.cumulative.back(), s.count);
      for (std::size_t b = 1; b < s.cumulative.size(); ++b) {
        ASSERT_LE(s.cumulative[b - 1], s.cumulative[b]);
      }
      (void)r.expose();
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        c.inc();
        g.add(t % 2 == 0 ? 1 : -1);
        h.observe(0.001 * ((i + t) % 7));  // 0, 1, ..., 6 ms
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  scraper.join();
  EXPECT_EQ(c.value(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_DOUBLE_EQ(g.value(), 0);
  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, std::uint64_t{kThreads} * kPerThread);
  // Sum of 0..6 ms spread evenly (each thread's i+t walks every residue), within float error.
  double want = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) want += 0.001 * ((i + t) % 7);
  }
  EXPECT_NEAR(s.sum, want, 1e-6);
}

TEST(RegistryDeathTest, RejectsBadNamesAndConflictingRegistrations) {
  Registry r;
  EXPECT_DEATH(r.counter("bad name", "h"), "bad metric name");
  EXPECT_DEATH(r.counter("9lives", "h"), "bad metric name");
  EXPECT_DEATH(r.counter("ok", "h", {{"bad-label", "v"}}), "bad label name");
  EXPECT_DEATH(r.counter("ok", "h", {{"__reserved", "v"}}), "bad label name");
  EXPECT_DEATH(r.counter("ok", "h", {{"a", "1"}, {"a", "2"}}), "repeated");
  EXPECT_DEATH(r.histogram("h", "h", kLatencyBuckets, {{"le", "1"}}), "reserved");
  r.counter("taken", "h");
  EXPECT_DEATH(r.gauge("taken", "h"), "two types");
  r.histogram("lat", "h", kLatencyBuckets);
  EXPECT_DEATH(r.histogram("lat", "h", kLongDurationBuckets), "two bucket layouts");
  const double unsorted[] = {1, 0.5};
  EXPECT_DEATH(Histogram h(unsorted), "increase strictly");
}

}  // namespace
}  // namespace kvc::metrics
