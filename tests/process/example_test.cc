// examples/embedded-controller: three instances form a cluster, only the leader runs the
// controller job, and when the leader dies another instance takes the job over.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "process_cluster.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;

struct Instance {
  std::string name;
  std::uint16_t peer = 0, client = 0;
  pid_t pid = 0;
};

class ExampleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The test kills one of three instances and needs the other two to take over: all three
    // must be up first. Ports are picked free and released, so another process (a client's
    // outgoing connection, another test) can take one before an instance binds it; such an
    // instance exits saying so, and the three start again on fresh ports (bounded).
    for (int attempt = 1;; ++attempt) {
      std::string initial;
      instances_.clear();
      for (int i = 0; i < 3; ++i) {
        Instance in{"c" + std::to_string(i + 1), free_port(), free_port()};
        if (!initial.empty()) initial += ",";
        initial += in.name + "=127.0.0.1:" + std::to_string(in.peer);
        instances_.push_back(in);
      }
      for (Instance& in : instances_) start(in, initial);
      const std::string problem = wait_until_whole();
      if (problem.empty()) return;
      if (problem.find("address already in use") == std::string::npos || attempt == 3) {
        FAIL() << problem;
      }
      std::cerr << "starting again on fresh ports: " << problem << "\n";
      kill_all();
      for (const Instance& in : instances_) std::filesystem::remove_all(dir_.file(in.name));
    }
  }
  void kill_all() {
    for (Instance& in : instances_) {
      kill_and_reap(in.pid);
      in.pid = 0;
    }
  }
  // Waits (bounded) until every instance runs and all three name the same leader; returns ""
  // then, or what went wrong (an instance that exited, with the end of its log).
  std::string wait_until_whole() {
    std::string last, exited;
    const Status whole_or_exited = wait_until(
        [&] {
          std::uint64_t leader = 0;
          for (Instance& in : instances_) {
            int status = 0;
            if (::waitpid(in.pid, &status, WNOHANG) == in.pid) {
              in.pid = 0;
              std::ifstream f(log_of(in));
              const std::string text(std::istreambuf_iterator<char>(f), {});
              exited = in.name + " exited at start (status " + std::to_string(status) +
                       "); the end of its log: " +
                       text.substr(text.size() > 500 ? text.size() - 500 : 0);
              return true;
            }
            auto c = client_of(in);
            const wire::Response r =
                c->call_sync({.op = wire::Op::kStatus},
                             {.timeout_ms = 1000, .target = net::Address{"127.0.0.1", in.client}});
            if (r.code != Code::kOk || r.status.leader_id == 0 ||
                (leader != 0 && r.status.leader_id != leader)) {
              last = in.name + ": " + (r.code != Code::kOk ? r.message : "no agreed leader");
              return false;
            }
            leader = r.status.leader_id;
          }
          return true;
        },
        30s, "three instances agreeing on a leader", 100ms);
    if (!exited.empty()) return exited;
    if (whole_or_exited.ok()) return "";
    return "the three instances did not all run and agree on a leader within 30 s (last: " + last +
           ")";
  }
  void TearDown() override {
    kill_all();
    if (HasFailure()) {  // what each instance said, and where the rest is kept
      for (const Instance& in : instances_) {
        std::ifstream f(log_of(in));
        const std::string text(std::istreambuf_iterator<char>(f), {});
        std::cerr << "--- the end of " << log_of(in) << ":\n"
                  << text.substr(text.size() > 6000 ? text.size() - 6000 : 0) << "\n";
      }
      std::cerr << "logs and data dirs kept in " << dir_.path() << "\n";
      dir_.keep();
    }
  }
  std::string log_of(const Instance& in) const { return dir_.file(in.name + ".log"); }
  void start(Instance& in, const std::string& initial) {
    const std::string bin =
        std::string(KVC_BINARY_DIR) + "/examples/embedded-controller/embedded-controller";
    Result<pid_t> pid = spawn({.args = {bin, "--name", in.name, "--data-dir", dir_.file(in.name),
                                        "--listen-peer", "127.0.0.1:" + std::to_string(in.peer),
                                        "--listen-client", "127.0.0.1:" + std::to_string(in.client),
                                        "--initial-cluster", initial, "--run-for", "120"},
                               .env = environment_with({}),
                               .output_path = log_of(in)});
    ASSERT_TRUE(pid.ok()) << pid.status().to_string();
    in.pid = *pid;
  }
  std::unique_ptr<client::Client> client_of(const Instance& in) {
    client::ClientOptions o;
    o.endpoints.push_back(net::Address{"127.0.0.1", in.client});
    o.timeout_ms = 1000;
    o.connect_timeout_ms = 500;
    return std::move(*client::Client::open(std::move(o)));
  }
  std::unique_ptr<client::Client> client() {
    client::ClientOptions o;
    for (const Instance& in : instances_) {
      if (in.pid > 0)
        o.endpoints.push_back(*net::parse_address("127.0.0.1:" + std::to_string(in.client)));
    }
    o.timeout_ms = 2000;
    return std::move(*client::Client::open(std::move(o)));
  }
  // The name in the heartbeat record, once it changes from `not_this` (bounded wait).
  std::string heartbeat_writer(const std::string& not_this) {
    std::string writer;
    const Status changed = wait_until(
        [&] {
          auto c = client();
          wire::Response r = c->get("/kvrocks/controller/heartbeat");
          if (r.code != Code::kOk || !r.found) return false;
          writer = r.kvs[0].value.substr(0, r.kvs[0].value.find(' '));
          return writer != not_this;
        },
        20s, "a heartbeat by another writer", 100ms);
    return changed.ok() ? writer : "";
  }
  std::string leader_name() {
    auto c = client();
    wire::Response r = c->call_sync({.op = wire::Op::kLeader});
    return r.code == Code::kOk ? r.leader_name : "";
  }

  ScopedTempDir dir_{"kvc-example-test"};
  std::vector<Instance> instances_;
};

TEST_F(ExampleTest, OnlyTheLeaderRunsTheJobAndAnotherTakesOver) {
  const std::string first = heartbeat_writer("");
  ASSERT_FALSE(first.empty()) << "no controller job ran";
  EXPECT_EQ(first, leader_name()) << "the job must run on the leader";
  // Topology records are kept under the prefix.
  auto c = client();
  wire::Response topo = c->call_sync({.op = wire::Op::kRange,
                                      .key = "/kvrocks/namespaces/",
                                      .value = "/kvrocks/namespaces/",
                                      .prefix = true});
  ASSERT_EQ(topo.code, Code::kOk);
  EXPECT_EQ(topo.kvs.size(), 4u) << "namespace, cluster and two shards";
  // Kill the leader: another instance takes the job over.
  const auto killed_at = std::chrono::steady_clock::now();
  for (Instance& in : instances_) {
    if (in.name == first) {
      kill_and_reap(in.pid);
      in.pid = 0;
    }
  }
  const std::string second = heartbeat_writer(first);
  const auto takeover_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - killed_at)
                               .count();
  RecordProperty("takeover_ms", static_cast<int>(takeover_ms));
  std::cout << "takeover: " << (second.empty() ? "nobody" : second) << " ran the job "
            << takeover_ms << " ms after " << first << " was killed\n";
  ASSERT_FALSE(second.empty()) << "no instance took over the job";
  EXPECT_NE(second, first);
  EXPECT_EQ(second, leader_name());
}

}  // namespace
}  // namespace kvc::test
