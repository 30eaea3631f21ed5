// kvc-node as real processes on 127.0.0.1: writes through any member, leader loss, catch-up
// (by log and by snapshot), full restarts, clean shutdown, and bad input that must never take
// a member down. Every process is stopped by PID when a test ends (ProcessCluster).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"

namespace kvc::test {
namespace {

std::string value_for(int i) { return "value-" + std::to_string(i) + std::string(20, 'x'); }

// Writes keys [from, to) through `c`; returns how many were acknowledged; failures other than
// "unknown outcome" are test failures.
std::map<std::string, std::string> write_keys(client::Client& c, int from, int to,
                                              const std::string& prefix = "k") {
  std::map<std::string, std::string> acked;
  for (int i = from; i < to; ++i) {
    const std::string key = prefix + std::to_string(i);
    wire::Response r = c.put(key, value_for(i));
    if (r.code == Code::kOk) {
      acked[key] = value_for(i);
    } else {
      EXPECT_EQ(r.code, Code::kTimeout) << "put " << key << ": " << r.message;
    }
  }
  return acked;
}

void expect_all_readable(client::Client& c, const std::map<std::string, std::string>& acked) {
  for (const auto& [k, v] : acked) {
    wire::Response r = c.get(k);
    ASSERT_EQ(r.code, Code::kOk) << k << ": " << r.message;
    ASSERT_TRUE(r.found) << "acknowledged key " << k << " is missing";
    ASSERT_EQ(r.kvs.at(0).value, v) << k;
  }
}

TEST(NodeProcessTest, ThreeMembersServeWritesThroughAnyMember) {
  ProcessCluster cluster("any-member", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  for (int i = 0; i < cluster.size(); ++i) {
    auto c = cluster.client_for(i);
    wire::Response w = c->put("via-" + std::to_string(i), "v" + std::to_string(i));
    ASSERT_EQ(w.code, Code::kOk) << w.message;
    EXPECT_GT(w.revision, 0u);
  }
  for (int i = 0; i < cluster.size(); ++i) {
    auto c = cluster.client_for(i);
    for (int j = 0; j < cluster.size(); ++j) {
      wire::Response r = c->get("via-" + std::to_string(j));
      ASSERT_EQ(r.code, Code::kOk) << r.message;
      ASSERT_TRUE(r.found);
      EXPECT_EQ(r.kvs[0].value, "v" + std::to_string(j));
    }
  }
}

TEST(NodeProcessTest, KilledLeaderIsReplacedAndNoAcknowledgedWriteIsLost) {
  ProcessCluster cluster("leader-kill", {});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(3000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 200);
  ASSERT_EQ(acked.size(), 200u);
  ASSERT_TRUE(cluster.kill(*leader, SIGKILL).ok());
  Result<int> next = cluster.wait_for_leader();
  ASSERT_TRUE(next.ok()) << next.status().to_string();
  EXPECT_NE(*next, *leader);
  std::map<std::string, std::string> more = write_keys(*c, 200, 300);
  acked.insert(more.begin(), more.end());
  EXPECT_GE(more.size(), 99u);
  expect_all_readable(*c, acked);
  // The old leader comes back as a follower and catches up.
  ASSERT_TRUE(cluster.start(*leader).ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  wire::Response status = cluster.status(*leader, 3000);
  ASSERT_EQ(status.code, Code::kOk);
  auto any = cluster.client();
  wire::Response last = any->put("after-restart", "x");
  ASSERT_EQ(last.code, Code::kOk);
  ASSERT_TRUE(cluster.wait_applied(*leader, last.revision).ok());
}

TEST(NodeProcessTest, StoppedMemberCatchesUpByLogAndBySnapshot) {
  // A short retained log and fast flushes force the lagging member onto a snapshot.
  ProcessCluster cluster("catch-up",
                         {.extra_flags = {"--retained-entries", "20", "--flush-interval", "20ms"}});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  const int lagger = (*leader + 1) % cluster.size();
  auto c = cluster.client();
  std::map<std::string, std::string> acked = write_keys(*c, 0, 50);
  ASSERT_TRUE(cluster.kill(lagger, SIGKILL).ok());
  // Small lag: caught up from the log.
  std::map<std::string, std::string> more = write_keys(*c, 50, 60);
  acked.insert(more.begin(), more.end());
  ASSERT_TRUE(cluster.start(lagger).ok());
  wire::Response mark = c->put("mark-1", "x");
  ASSERT_EQ(mark.code, Code::kOk);
  ASSERT_TRUE(cluster.wait_applied(lagger, mark.revision).ok());
  // Large lag: the entries it needs are compacted away.
  ASSERT_TRUE(cluster.kill(lagger, SIGKILL).ok());
  more = write_keys(*c, 60, 1000);
  acked.insert(more.begin(), more.end());
  ASSERT_TRUE(cluster.start(lagger).ok());
  mark = c->put("mark-2", "x");
  ASSERT_EQ(mark.code, Code::kOk);
  ASSERT_TRUE(cluster.wait_applied(lagger, mark.revision, 20000).ok());
  // Every acknowledged key is in the lagging member's own state.
  auto local = cluster.client_for(lagger);
  for (const auto& [k, v] : acked) {
    wire::Response r = local->get(k, /*serializable=*/true);
    ASSERT_EQ(r.code, Code::kOk);
    ASSERT_TRUE(r.found) << k << " missing on the member that caught up";
    ASSERT_EQ(r.kvs[0].value, v);
  }
  std::string log;
  {
    FILE* f = std::fopen(cluster.log_path(lagger).c_str(), "r");
    ASSERT_NE(f, nullptr);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) log.append(buf, n);
    std::fclose(f);
  }
  EXPECT_NE(log.find("installed snapshot"), std::string::npos)
      << "the lagging member should have caught up through a snapshot";
}

TEST(NodeProcessTest, FullClusterRestartKeepsAllData) {
  ProcessCluster cluster("full-restart", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  std::map<std::string, std::string> acked;
  {
    auto c = cluster.client();
    acked = write_keys(*c, 0, 300);
    ASSERT_EQ(acked.size(), 300u);
    ASSERT_EQ(c->del("k7").code, Code::kOk);
    acked.erase("k7");
  }
  for (int i = 0; i < cluster.size(); ++i) {
    Result<int> rc = cluster.stop(i);
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(*rc, 0) << "a SIGTERM stop must exit 0";
  }
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto c = cluster.client();
  expect_all_readable(*c, acked);
  wire::Response gone = c->get("k7");
  ASSERT_EQ(gone.code, Code::kOk);
  EXPECT_FALSE(gone.found);
}

TEST(NodeProcessTest, DataDirOfAnotherMemberIsRefused) {
  ProcessCluster cluster("wrong-dir", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ASSERT_TRUE(cluster.stop(0).ok());
  // Same data dir, another name: refused with a message naming the owner.
  cluster.mutable_spec(0).extra_flags = {};
  std::vector<std::string> args = cluster.command_line(0);
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--name") args[i + 1] = "intruder";
  }
  std::string cmd;
  for (const auto& a : args) cmd += "'" + a + "' ";
  cmd += "2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(out.find("belongs to member 'm1'"), std::string::npos) << out;
}

// Sends bytes and reports whether the member closed the connection (read returns 0 or error).
bool member_hangs_up(const std::string& addr, const std::string& bytes) {
  const int fd = raw_connect(addr);
  if (fd < 0) return false;
  (void)::write(fd, bytes.data(), bytes.size());
  char buf[4096];
  bool closed = false;
  for (int i = 0; i < 50; ++i) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      closed = true;
      break;
    }
    if (n < 0) break;  // timed out without a hang-up
  }
  ::close(fd);
  return closed;
}

TEST(NodeProcessTest, BadInputClosesTheConnectionNotTheMember) {
  ProcessCluster cluster("bad-input", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  std::string hello;
  wire::append_hello(hello, {.role = wire::Role::kClient});
  std::string huge_header("\x7f\xff\xff\xff", 4);
  std::string garbage_frame;
  wire::append_frame(garbage_frame, std::string("\xc1\xc1\xc1", 3));
  std::string unknown_kind;
  wire::append_frame(unknown_kind, std::string("\x92\x63\x80", 3));
  std::string wrong_peer;
  wire::append_hello(wrong_peer, {.role = wire::Role::kPeer, .cluster_id = 12345, .member_id = 9});
  std::string request;
  wire::append_request(request, {.id = 1, .op = wire::Op::kPut, .key = "k", .value = "v"});
  std::string half_request = request.substr(0, request.size() / 2);

  const struct {
    const char* name;
    bool peer_port;
    std::string bytes;
  } cases[] = {
      {"oversized frame", false, hello + huge_header},
      {"malformed msgpack", false, hello + garbage_frame},
      {"unknown message kind", false, hello + unknown_kind},
      {"request before hello", false, request},
      {"peer of another cluster", true, wrong_peer},
      {"garbage on the peer port", true, garbage_frame},
      {"oversized frame on the peer port", true, huge_header},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    for (int i = 0; i < cluster.size(); ++i) {
      const std::string addr = c.peer_port ? cluster.peer_addr(i) : cluster.client_addr(i);
      EXPECT_TRUE(member_hangs_up(addr, c.bytes));
    }
  }
  // A client that disconnects in the middle of a request.
  for (int i = 0; i < cluster.size(); ++i) {
    const int fd = raw_connect(cluster.client_addr(i));
    ASSERT_GE(fd, 0);
    std::string bytes = hello + half_request;
    (void)::write(fd, bytes.data(), bytes.size());
    ::close(fd);
  }
  for (int i = 0; i < cluster.size(); ++i) EXPECT_TRUE(cluster.running(i)) << "member " << i;
  auto c = cluster.client();
  wire::Response r = c->put("still", "serving");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_TRUE(cluster.wait_for_leader().ok());
}

}  // namespace
}  // namespace kvc::test
