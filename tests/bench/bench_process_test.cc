// kvc-bench against a real 3-member cluster (ProcessCluster): every workload completes with the
// operations it was asked for and no errors, its JSON report adds up, open loop runs on its
// schedule, and a dead cluster or bad flags give the documented exit codes. Each kvc-bench run
// is bounded in time and killed by PID if it overruns.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "idle.h"
#include "kvc/client/client.h"
#include "process_cluster.h"

namespace kvc::test {
namespace {

struct ToolRun {
  int exit_code = -1;
  std::string out;
};

// Runs kvc-bench with `args`, capturing stdout; kills it (by PID) after `timeout_s`.
ToolRun run_bench_tool(const std::vector<std::string>& args, int timeout_s = 60) {
  ToolRun result;
  int fds[2];
  if (::pipe(fds) != 0) return result;
  std::vector<std::string> argv_s = {binary_path("kvc-bench")};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      ADD_FAILURE() << "kvc-bench ran longer than " << timeout_s << " s; killing pid " << pid;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The number after "key": in a flat JSON object, or -1 (enough for kvc-bench's report).
double json_number(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const std::size_t at = json.find(k);
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + k.size(), nullptr);
}

class BenchProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new ProcessCluster("bench_process_test", {});
    ASSERT_TRUE(cluster_->start_all().ok());
    ASSERT_TRUE(cluster_->wait_for_leader(20000).ok());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  // Runs a workload with -o json and checks the report's arithmetic.
  static std::string run_ok(std::vector<std::string> args, double want_ok) {
    args.insert(args.begin(), {"--endpoints", cluster_->endpoints(), "-o", "json"});
    ToolRun r = run_bench_tool(args);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(json_number(r.out, "ok"), want_ok) << r.out;
    EXPECT_EQ(json_number(r.out, "error_count"), 0) << r.out;
    EXPECT_GT(json_number(r.out, "throughput"), 0) << r.out;
    const std::size_t lat = r.out.find("\"latency_ms\":");
    EXPECT_NE(lat, std::string::npos) << r.out;
    if (lat != std::string::npos) {
      const std::string l = r.out.substr(lat);
      EXPECT_EQ(json_number(l, "count"), want_ok) << r.out;
      EXPECT_LE(json_number(l, "min"), json_number(l, "p50"));
      EXPECT_LE(json_number(l, "p50"), json_number(l, "p99"));
      EXPECT_LE(json_number(l, "p99"), json_number(l, "max"));
    }
    return r.out;
  }

  static ProcessCluster* cluster_;
};

ProcessCluster* BenchProcessTest::cluster_ = nullptr;

TEST_F(BenchProcessTest, PutCompletesEveryOperation) {
  const std::string out = run_ok({"--clients", "8", "--conns", "2", "--val-size", "64",
                                  "--key-space-size", "1000", "put", "--total", "300"},
                                 300);
  EXPECT_EQ(json_number(out, "issued"), 300);
}

TEST_F(BenchProcessTest, TargetLeaderNamesTheLeader) {
  const std::string out =
      run_ok({"--target-leader", "--clients", "4", "put", "--total", "100"}, 100);
  Result<int> leader = cluster_->wait_for_leader();
  ASSERT_TRUE(leader.ok());
  EXPECT_NE(out.find("\"leader\":\"" + cluster_->client_addr(*leader) + "\""), std::string::npos)
      << out;
}

TEST_F(BenchProcessTest, GetsLinearizableAndSerializable) {
  run_ok({"--clients", "8", "--key-space-size", "100", "get", "--total", "200"}, 200);
  const std::string out =
      run_ok({"--clients", "6", "get", "--serializable", "--key", "foo", "--total", "200"}, 200);
  EXPECT_NE(out.find("\"serializable\":true"), std::string::npos) << out;
}

TEST_F(BenchProcessTest, RangeCasAndMixed) {
  run_ok({"--sequential-keys", "--key-space-size", "50", "--total", "50", "put"}, 50);
  run_ok({"--clients", "4", "range", "--limit", "10", "--total", "100"}, 100);
  run_ok({"--clients", "4", "cas", "--total", "100"}, 100);
  const std::string out = run_ok({"--clients", "4", "--key-space-size", "50", "mixed",
                                  "--read-ratio", "75%", "--total", "200"},
                                 200);
  EXPECT_EQ(json_number(out, "reads") + json_number(out, "writes"), 200) << out;
  EXPECT_GT(json_number(out, "reads"), json_number(out, "writes")) << out;
}

// Shared watch responses (the default) and one response per watcher alike.
TEST_F(BenchProcessTest, WatchDeliversEveryPutToEveryWatcher) {
  for (const bool shared : {true, false}) {
    std::vector<std::string> args = {"--clients",  "2", "--val-size", "32", "watch",
                                     "--watchers", "3", "--total",    "100"};
    if (!shared) args.push_back("--per-watch-responses");
    const std::string out = run_ok(args, 300);  // every put's event, to each watcher
    const std::size_t put = out.find("\"put_latency_ms\":");
    ASSERT_NE(put, std::string::npos) << out;
    EXPECT_EQ(json_number(out.substr(put), "count"), 100) << out;
  }
}

TEST_F(BenchProcessTest, OpenLoopRunsOnItsSchedule) {
  const std::string out =
      run_ok({"--rate", "400", "--clients", "16", "put", "--total", "200"}, 200);
  EXPECT_NE(out.find("\"mode\":\"open\""), std::string::npos) << out;
  // 200 operations at 400/s are scheduled over 0.5 s: the run cannot end sooner.
  EXPECT_GE(json_number(out, "elapsed_s"), 0.49) << out;
}

TEST_F(BenchProcessTest, DurationBoundsTheRun) {
  ToolRun r = run_bench_tool({"--endpoints", cluster_->endpoints(), "-o", "json", "--clients", "2",
                              "--duration", "300ms", "put"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_GT(json_number(r.out, "ok"), 0) << r.out;
  EXPECT_EQ(json_number(r.out, "ok"), json_number(r.out, "issued")) << r.out;
  // Operations start only within the duration; the last answers come shortly after.
  EXPECT_GE(json_number(r.out, "elapsed_s"), 0.25) << r.out;
  EXPECT_LT(json_number(r.out, "elapsed_s"), 30) << r.out;
}

// The idle-connection opener against the running cluster: every connection completes the
// handshake, they are spread evenly over the members, and they stay open while held.
TEST_F(BenchProcessTest, IdleConnectionsOpenSpreadAndStayOpen) {
  Result<std::vector<net::Address>> eps = client::parse_endpoints(cluster_->endpoints());
  ASSERT_TRUE(eps.ok());
  Result<bench::IdleConnections> idle = bench::IdleConnections::open(*eps, 30, 2000);
  ASSERT_TRUE(idle.ok()) << idle.status().message();
  const bench::IdleSummary& s = idle->summary();
  EXPECT_EQ(s.requested, 30u);
  EXPECT_EQ(s.opened, 30u) << s.first_error;
  EXPECT_EQ(s.refused + s.failed + s.not_tried, 0u) << s.first_error;
  EXPECT_EQ(s.per_endpoint, (std::vector<std::size_t>{10, 10, 10}));
  EXPECT_EQ(idle->size(), 30u);
  // The members keep them (and send nothing on them) while the cluster serves other clients.
  run_ok({"--clients", "4", "put", "--total", "50"}, 50);
  EXPECT_EQ(idle->check_open(), 30u);
  EXPECT_EQ(idle->summary().open_at_end, 30);
}

// kvc-bench --idle-conns: the report says how many were opened and still open at the end.
TEST_F(BenchProcessTest, IdleConnsFlagReportsTheConnections) {
  const std::string out = run_ok(
      {"--idle-conns", "12", "--idle-hold", "50ms", "--clients", "4", "put", "--total", "60"}, 60);
  const std::size_t at = out.find("\"idle_conns\":");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string idle = out.substr(at);
  EXPECT_EQ(json_number(idle, "requested"), 12) << out;
  EXPECT_EQ(json_number(idle, "opened"), 12) << out;
  EXPECT_EQ(json_number(idle, "refused"), 0) << out;
  EXPECT_EQ(json_number(idle, "open_at_end"), 12) << out;
}

// Sequential keys from --first-key: a second stage of a load writes the keys after the first.
TEST_F(BenchProcessTest, FirstKeyStartsTheSequence) {
  run_ok({"--sequential-keys", "--first-key", "7000", "--key-space-size", "8000", "--key-size", "6",
          "put", "--total", "5"},
         5);
  Result<std::unique_ptr<client::Client>> c =
      client::Client::open({.endpoints = *client::parse_endpoints(cluster_->endpoints())});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->get("007004").found);
  EXPECT_FALSE((*c)->get("007005").found);
  // Keys of the plain workloads carry no prefix (only watch puts under --watch-prefix).
  EXPECT_FALSE((*c)->get("bench-watch/007004").found);
}

// A member at its --max-client-connections refuses the extra idle connections; they are
// counted as refused, not as opened, and opening stops after a bounded run of failures.
TEST(BenchIdleTest, RefusedConnectionsAreCountedAndBounded) {
  ProcessCluster cluster("bench_idle_refused",
                         {.members = 1, .extra_flags = {"--max-client-connections", "5"}});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader(20000).ok());
  Result<std::vector<net::Address>> eps = client::parse_endpoints(cluster.endpoints());
  ASSERT_TRUE(eps.ok());
  Result<bench::IdleConnections> idle = bench::IdleConnections::open(*eps, 100, 2000);
  ASSERT_TRUE(idle.ok()) << idle.status().message();
  const bench::IdleSummary& s = idle->summary();
  EXPECT_EQ(s.opened, 5u) << s.first_error;
  EXPECT_EQ(s.refused, 16u) << s.first_error;
  EXPECT_EQ(s.not_tried, 100u - 5u - 16u);
  EXPECT_NE(s.first_error.find("127.0.0.1:"), std::string::npos) << s.first_error;
  EXPECT_EQ(idle->check_open(), 5u);
}

// Nothing listens: every attempt fails, fast, and opening stops after 16.
TEST(BenchIdleTest, UnreachableEndpointFailsBounded) {
  Result<std::vector<net::Address>> eps =
      client::parse_endpoints("127.0.0.1:" + std::to_string(free_port()));
  ASSERT_TRUE(eps.ok());
  Result<bench::IdleConnections> idle = bench::IdleConnections::open(*eps, 1000, 500);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->summary().opened, 0u);
  EXPECT_EQ(idle->summary().failed, 16u);
  EXPECT_EQ(idle->summary().not_tried, 1000u - 16u);
  EXPECT_NE(idle->summary().first_error.find("connect to 127.0.0.1:"), std::string::npos)
      << idle->summary().first_error;
  EXPECT_FALSE(bench::IdleConnections::open({}, 1, 500).ok());
}

TEST(BenchToolTest, UnreachableClusterExitsUnavailable) {
  const std::string ep = "127.0.0.1:" + std::to_string(free_port());
  ToolRun r = run_bench_tool(
      {"--endpoints", ep, "--timeout", "300ms", "-o", "json", "put", "--total", "3"});
  EXPECT_EQ(r.exit_code, kExitUnavailable) << r.out;
  EXPECT_EQ(json_number(r.out, "ok"), 0) << r.out;
  EXPECT_EQ(json_number(r.out, "error_count"), 3) << r.out;
}

TEST(BenchToolTest, BadFlagsAreUsageErrors) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"put", "--clients", "0"},
                                             {"mixed", "--read-ratio", "2"},
                                             {"put", "--duration", "soon"},
                                             {"watch", "--val-size", "4"},
                                             {"--endpoints", "nonsense", "put"},
                                             {"nosuchworkload"}}) {
    ToolRun r = run_bench_tool(args);
    EXPECT_EQ(r.exit_code, kExitUsage) << args.front() << " " << args.back();
  }
}

}  // namespace
}  // namespace kvc::test
