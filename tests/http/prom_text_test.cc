#include "prom_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "kvc/common/metrics.h"

namespace kvc::http::testing {
namespace {

TEST(PromTextTest, ParsesAWellFormedExposition) {
  const std::string text =
      "# A plain comment\n"
      "# HELP rpc_total Requests, with a \\\\ and a \\n.\n"
      "# TYPE rpc_total counter\n"
      "rpc_total{op=\"get\",peer=\"a\\\"b\\\\c\\nd\"} 12\n"
      "rpc_total{op=\"put\",} 3 1700000000000\n"
      "\n"
      "# TYPE temp gauge\n"
      "temp -1.5e-3\n"
      "# TYPE lat histogram\n"
      "lat_bucket{le=\"0.1\"} 1\n"
      "lat_bucket{le=\"1\"} 2\n"
      "lat_bucket{le=\"+Inf\"} 3\n"
      "lat_sum 4.5\n"
      "lat_count 3\n"
      "untyped_thing NaN\n";
  Result<std::map<std::string, PromFamily>> r = parse_prometheus_text(text);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const PromFamily& rpc = r->at("rpc_total");
  EXPECT_EQ(rpc.type, "counter");
  EXPECT_EQ(rpc.help, "Requests, with a \\ and a \n.");
  EXPECT_EQ(rpc.value("rpc_total", {{"op", "get"}, {"peer", "a\"b\\c\nd"}}), 12);
  EXPECT_EQ(rpc.value("rpc_total", {{"op", "put"}}), 3);
  EXPECT_DOUBLE_EQ(r->at("temp").value("temp"), -0.0015);
  EXPECT_EQ(r->at("lat").value("lat_bucket", {{"le", "+Inf"}}), 3);
  EXPECT_TRUE(std::isnan(r->at("untyped_thing").value("untyped_thing")));
}

// The checker has teeth: each of these breaks one rule and is refused.
TEST(PromTextTest, RefusesBrokenExpositions) {
  const std::string hist = "# TYPE h histogram\n";
  const struct {
    const char* name;
    std::string text;
    const char* why;  // part of the refusal's message
  } cases[] = {
      {"no final newline", "a 1", "newline"},
      {"bad metric name", "1a 1\n", "metric name"},
      {"bad label name", "a{1x=\"v\"} 1\n", "bad label name"},
      {"unquoted label value", "a{x=v} 1\n", "expected =\""},
      {"unterminated label value", "a{x=\"v} 1\n", "unterminated label value"},
      {"bad escape in label", "a{x=\"\\t\"} 1\n", "bad escape"},
      {"repeated label", "a{x=\"1\",x=\"2\"} 1\n", "label repeated"},
      {"no value", "a\n", "before the value"},
      {"bad value", "a one\n", "bad value"},
      {"bad timestamp", "a 1 soon\n", "bad timestamp"},
      {"unknown type", "# TYPE a meter\na 1\n", "unknown type"},
      {"two types", "# TYPE a gauge\n# TYPE a gauge\na 1\n", "second TYPE"},
      {"two helps", "# HELP a x\n# HELP a y\na 1\n", "second HELP"},
      {"bad help escape", "# HELP a \\t\na 1\n", "bad escape in HELP"},
      {"type after samples", "a 1\n# TYPE a gauge\n", "after its samples"},
      {"ungrouped family", "a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n", "not grouped"},
      {"duplicate series", "a{x=\"1\"} 1\na{x=\"1\"} 2\n", "duplicate series"},
      {"negative counter", "# TYPE c counter\nc -1\n", "negative counter"},
      {"bucket without le", hist + "h_bucket 1\nh_sum 1\nh_count 1\n", "without le"},
      {"le not a number", hist + "h_bucket{le=\"x\"} 1\nh_sum 1\nh_count 1\n", "not a number"},
      {"no +Inf bucket", hist + "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "no +Inf"},
      {"not cumulative",
       hist + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
       "not cumulative"},
      {"bounds not increasing",
       hist + "h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
              "h_sum 1\nh_count 1\n",
       "not increasing"},
      {"count differs", hist + "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", "_count differs"},
      {"no sum", hist + "h_bucket{le=\"+Inf\"} 1\nh_count 1\n", "missing _sum"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<std::map<std::string, PromFamily>> r = parse_prometheus_text(c.text);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(c.why), std::string::npos) << r.status().message();
  }
}

// The registry's output read by the independent parser: every kind, labels that need escaping,
// values that need special spelling.
TEST(PromTextTest, RegistryExpositionIsValid) {
  metrics::Registry reg;
  reg.counter("kvc_proposals_total", "Proposals by outcome.", {{"outcome", "committed"}}).inc(5);
  reg.counter("kvc_proposals_total", "Proposals by outcome.", {{"outcome", "failed"}}).inc(1);
  reg.gauge("kvc_raft_term", "Current term.").set(42);
  reg.gauge("kvc_weird", "Help with \\ and\nnewline.", {{"peer", "n\"1\\\n"}})
      .set(-std::numeric_limits<double>::infinity());
  metrics::Histogram& get =
      reg.histogram("kvc_client_request_seconds", "Client request latency by operation.",
                    metrics::kLatencyBuckets, {{"op", "get"}});
  metrics::Histogram& put =
      reg.histogram("kvc_client_request_seconds", "Client request latency by operation.",
                    metrics::kLatencyBuckets, {{"op", "put"}});
  for (int i = 0; i < 100; ++i) get.observe(i / 10000.0);  // 10 / 10000.0 == 0.001 exactly
  put.observe(20);                                         // above every bound
  reg.histogram("kvc_snapshot_seconds", "Snapshot durations.", metrics::kLongDurationBuckets);

  Result<std::map<std::string, PromFamily>> r = parse_prometheus_text(reg.expose());
  ASSERT_TRUE(r.ok()) << r.status().to_string() << "\n" << reg.expose();
  EXPECT_EQ(r->at("kvc_proposals_total").type, "counter");
  EXPECT_EQ(r->at("kvc_proposals_total").value("kvc_proposals_total", {{"outcome", "failed"}}), 1);
  EXPECT_EQ(r->at("kvc_raft_term").value("kvc_raft_term"), 42);
  const PromFamily& weird = r->at("kvc_weird");
  EXPECT_EQ(weird.help, "Help with \\ and\nnewline.");
  EXPECT_EQ(weird.value("kvc_weird", {{"peer", "n\"1\\\n"}}),
            -std::numeric_limits<double>::infinity());
  const PromFamily& lat = r->at("kvc_client_request_seconds");
  EXPECT_EQ(lat.type, "histogram");
  EXPECT_EQ(lat.value("kvc_client_request_seconds_count", {{"op", "get"}}), 100);
  EXPECT_EQ(lat.value("kvc_client_request_seconds_bucket", {{"op", "get"}, {"le", "0.001"}}), 11);
  EXPECT_EQ(lat.value("kvc_client_request_seconds_bucket", {{"op", "put"}, {"le", "10"}}), 0);
  EXPECT_EQ(lat.value("kvc_client_request_seconds_bucket", {{"op", "put"}, {"le", "+Inf"}}), 1);
  EXPECT_EQ(lat.value("kvc_client_request_seconds_sum", {{"op", "put"}}), 20);
  EXPECT_EQ(r->at("kvc_snapshot_seconds").value("kvc_snapshot_seconds_count"), 0);
}

// Scrapes taken while other threads record are valid expositions too.
TEST(PromTextTest, ExpositionStaysValidUnderConcurrentRecording) {
  metrics::Registry reg;
  metrics::Histogram& h = reg.histogram("h_seconds", "h", metrics::kLatencyBuckets);
  metrics::Counter& c = reg.counter("c_total", "c");
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 200000 && !stop.load(std::memory_order_relaxed); ++i) {
        h.observe(0.00001 * ((i * 7 + t) % 1000));
        c.inc();
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    Result<std::map<std::string, PromFamily>> r = parse_prometheus_text(reg.expose());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }
  stop = true;
  for (auto& w : writers) w.join();
}

}  // namespace
}  // namespace kvc::http::testing
