// Client failover against real kvc-node processes on loopback (issue 13, points 1, 3, 4 and the
// endpoint rules of point 6): a stopped member listed first must not stall reads; with the
// leader stopped a put through the other endpoints succeeds once they elect a new one; a value
// over the members' limit is refused before it is sent (and a member that is sent an oversized
// frame anyway says so and keeps the connection); an HTTP port given as an endpoint is named as
// such; host names work as endpoints and in a member's own flags; a name that does not resolve
// stops kvc-node at start; endpoints of two clusters are refused. Every wait is polled with a
// bound; every process is stopped by PID.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "kvc/net/address.h"
#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"
#include "support/text.h"

namespace kvc::test {
namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t ms_since(Clock::time_point t0) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

// The other members' client addresses, in index order.
std::string others(const ProcessCluster& c, int except) {
  std::string eps;
  for (int i = 0; i < c.size(); ++i) {
    if (i == except) continue;
    eps += (eps.empty() ? "" : ",") + c.client_addr(i);
  }
  return eps;
}

// This machine's host name when every address it resolves to is a loopback one (members in
// tests listen on loopback only), else "localhost".
std::string loopback_host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  Result<net::Address> a = net::parse_address(std::string(buf) + ":1");
  if (!a.ok()) return "localhost";
  Result<net::Resolved> r = net::resolve_now(*a);
  if (!r.ok()) return "localhost";
  for (const sockaddr_storage& ss : *r) {
    Result<net::Address> ip =
        net::parse_address(net::sockaddr_to_string(reinterpret_cast<const sockaddr*>(&ss)));
    if (!ip.ok() || !ip->is_loopback()) return "localhost";
  }
  return buf;
}

struct ShellRun {
  int status = -1;
  std::string out;
};

// A shell command, bounded by coreutils' timeout (exit 124 when it had to stop it).
ShellRun run_bounded(const std::string& cmd, int seconds) {
  ShellRun r;
  FILE* p =
      ::popen(("timeout -s KILL " + std::to_string(seconds) + " " + cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

TEST(FailoverProcessTest, AStoppedMemberListedFirstDoesNotStallReads) {
  ProcessCluster cluster("failover-hung-read", {});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();
  ASSERT_EQ(cluster.ctl({"put", "/k", "v"}).status, 0);
  // A follower, so that the others still have their leader and a read needs no election.
  const int hung = (*leader + 1) % cluster.size();
  ASSERT_TRUE(cluster.pause(hung).ok());
  const std::string eps = cluster.client_addr(hung) + "," + others(cluster, hung);
  for (int round = 0; round < 3; ++round) {
    for (const bool serializable : {false, true}) {
      SCOPED_TRACE("round " + std::to_string(round) + (serializable ? " serializable" : ""));
      std::vector<std::string> args = {"--timeout", "3s", "get", "/k"};
      if (serializable) args.push_back("--serializable");
      const auto t0 = Clock::now();
      ProcessCluster::CtlResult r = cluster.ctl_with(eps, args);
      const std::uint64_t took = ms_since(t0);
      EXPECT_EQ(r.status, 0) << r.out;
      EXPECT_EQ(r.out, "v");
      // Its hello budget is 300 ms; the old client waited out the whole 3 s and exited 6.
      EXPECT_LT(took, 1500u) << r.out;
    }
  }
  ASSERT_TRUE(cluster.resume(hung).ok());
}

TEST(FailoverProcessTest, APutSucceedsOnceTheOthersReplaceAStoppedLeader) {
  ProcessCluster cluster("failover-hung-leader", {});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();
  ASSERT_EQ(cluster.ctl({"put", "/before", "1"}).status, 0);
  ASSERT_TRUE(cluster.pause(*leader).ok());
  // The stopped leader first, as an operator's list may well have it.
  const std::string eps = cluster.client_addr(*leader) + "," + others(cluster, *leader);
  const auto t0 = Clock::now();
  ProcessCluster::CtlResult r = cluster.ctl_with(eps, {"--timeout", "15s", "put", "/after", "2"});
  const std::uint64_t took = ms_since(t0);
  EXPECT_EQ(r.status, 0) << r.out;
  // An election takes one to two election timeouts (1 s each by default), more when loaded;
  // the old client kept talking to the stopped leader until its deadline.
  EXPECT_LT(took, 10000u) << r.out;
  ProcessCluster::CtlResult got = cluster.ctl_with(others(cluster, *leader), {"get", "/after"});
  EXPECT_EQ(got.status, 0) << got.out;
  EXPECT_EQ(got.out, "2");
  ASSERT_TRUE(cluster.resume(*leader).ok());
}

TEST(FailoverProcessTest, AValueOverTheLimitIsRefusedBeforeItIsSent) {
  ProcessCluster cluster("failover-limits", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const std::string path = cluster.dir() + "/big";
  {
    std::ofstream f(path, std::ios::binary);
    f << std::string(20000000, '\0');
  }
  ProcessCluster::CtlResult r = cluster.ctl_with(cluster.endpoints(), {"put", "/big", "-"}, path);
  EXPECT_EQ(r.status, 1) << r.out;  // not 6: nothing was sent, so nothing is unknown
  EXPECT_TRUE(contains(r.out, "--max-request-bytes")) << r.out;
  EXPECT_TRUE(contains(r.out, std::to_string(1536u << 10))) << r.out;
  EXPECT_EQ(cluster.ctl({"get", "/big"}).status, 3) << "the value must not have been applied";
}

TEST(FailoverProcessTest, AMemberSentAnOversizedFrameSaysSoAndKeepsTheConnection) {
  // What a client that does not check the limits (an older one) meets.
  ProcessCluster cluster("failover-oversized", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const int fd = raw_connect(cluster.client_addr(0));
  ASSERT_GE(fd, 0);
  wire::FrameDecoder decoder(1 << 20);
  // Reads the next frame's payload (bounded: the socket has a 2 s read timeout).
  auto next = [&](std::string* payload) -> bool {
    char buf[65536];
    for (int reads = 0; reads < 64; ++reads) {
      std::string_view p;
      bool has = false;
      if (!decoder.next(&p, &has).ok()) return false;
      if (has) {
        payload->assign(p);
        return true;
      }
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return false;
      decoder.feed(buf, static_cast<std::size_t>(n));
    }
    return false;
  };
  std::string out;
  wire::append_hello(out, {.role = wire::Role::kClient, .name = "raw"});
  ASSERT_EQ(::write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  std::string payload;
  ASSERT_TRUE(next(&payload));
  Result<wire::Envelope> env = wire::open_envelope(payload);
  ASSERT_TRUE(env.ok());
  Result<wire::HelloReply> hello = wire::decode_hello_reply(*env->body);
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->max_frame_bytes, 16u << 20);
  EXPECT_EQ(hello->max_request_bytes, 1536u << 10);
  // A 20 MB request frame, then a small one behind it.
  std::string big;
  wire::append_request(
      big, {.id = 1, .op = wire::Op::kPut, .key = "/big", .value = std::string(20000000, 'x')});
  std::string small;
  wire::append_request(small, {.id = 2, .op = wire::Op::kGet, .key = "/nothing"});
  big += small;
  std::size_t sent = 0;
  while (sent < big.size()) {
    const ssize_t n = ::write(fd, big.data() + sent, big.size() - sent);
    ASSERT_GT(n, 0);
    sent += static_cast<std::size_t>(n);
  }
  ASSERT_TRUE(next(&payload)) << "the member hung up instead of refusing the frame";
  env = wire::open_envelope(payload);
  ASSERT_TRUE(env.ok());
  ASSERT_EQ(env->kind, wire::FrameKind::kHelloReply);
  Result<wire::HelloReply> refusal = wire::decode_hello_reply(*env->body);
  ASSERT_TRUE(refusal.ok());
  EXPECT_EQ(refusal->code, Code::kInvalidArgument);
  EXPECT_EQ(refusal->refused_frame_bytes, big.size() - small.size() - wire::kFrameHeaderBytes);
  EXPECT_TRUE(contains(refusal->message, "--max-frame-bytes")) << refusal->message;
  ASSERT_TRUE(next(&payload)) << "the request after the refused frame got no answer";
  env = wire::open_envelope(payload);
  ASSERT_TRUE(env.ok());
  Result<wire::Response> answer = wire::decode_response(*env->body);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->id, 2u);
  EXPECT_EQ(answer->code, Code::kOk) << answer->message;
  EXPECT_TRUE(answer->kvs.empty());
  ::close(fd);
  EXPECT_EQ(cluster.ctl({"get", "/big"}).status, 3);
}

TEST(FailoverProcessTest, AnHttpPortGivenAsAnEndpointIsNamed) {
  ProcessCluster cluster("failover-http-endpoint", {.members = 1});
  const std::string http = "127.0.0.1:" + std::to_string(free_port());
  cluster.mutable_spec(0).extra_flags = {"--listen-http", http};
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const auto t0 = Clock::now();
  ProcessCluster::CtlResult r = cluster.ctl_with(http, {"--timeout", "5s", "put", "/a", "1"});
  EXPECT_EQ(r.status, 5) << r.out;  // nothing reached a kvc member: never 6
  EXPECT_TRUE(contains(r.out, http + " is not a kvc member")) << r.out;
  EXPECT_TRUE(contains(r.out, "--listen-http")) << r.out;
  EXPECT_LT(ms_since(t0), 4000u) << "a definite answer is not worth waiting out the timeout";
  EXPECT_EQ(cluster.ctl({"get", "/a"}).status, 3);
  // With a member among the endpoints the HTTP port is skipped.
  r = cluster.ctl_with(http + "," + cluster.client_addr(0), {"put", "/a", "1"});
  EXPECT_EQ(r.status, 0) << r.out;
  // etcd's spelling of an endpoint is accepted; TLS is refused with a reason.
  r = cluster.ctl_with("http://" + cluster.client_addr(0), {"get", "/a"});
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "1");
  r = cluster.ctl_with("https://" + cluster.client_addr(0), {"get", "/a"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "TLS")) << r.out;
  EXPECT_FALSE(contains(r.out, "IPv6")) << r.out;
}

TEST(FailoverProcessTest, HostNamesWorkInFlagsAndEndpoints) {
  const std::string host = loopback_host_name();
  ProcessCluster cluster("failover-names", {});
  // Peers dial each other by name (--initial-cluster), listeners bind by name.
  for (int i = 0; i < cluster.size(); ++i) cluster.mutable_spec(i).host = host;
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader(20000);
  ASSERT_TRUE(leader.ok()) << leader.status().to_string() << " (host " << host << ")";
  ProcessCluster::CtlResult r = cluster.ctl_with(cluster.endpoints(), {"put", "/n", "1"});
  EXPECT_EQ(r.status, 0) << r.out;
  for (const std::string& h : {host, std::string("localhost")}) {
    SCOPED_TRACE(h);
    r = cluster.ctl_with(h + ":" + std::to_string(cluster.spec(0).client_port), {"get", "/n"});
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.out, "1");
  }
  r = cluster.ctl({"member", "list"});
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, host + ":" + std::to_string(cluster.spec(1).peer_port))) << r.out;
}

TEST(FailoverProcessTest, ANameThatDoesNotResolveStopsKvcNodeAtStart) {
  ProcessCluster cluster("failover-bad-name", {.members = 1});
  const std::string peer = "127.0.0.1:" + std::to_string(free_port());
  const std::string client = "127.0.0.1:" + std::to_string(free_port());
  const struct {
    const char* name;
    std::string initial_cluster, listen_client;
    const char* flag;
  } cases[] = {
      {"peer", "m1=" + peer + ",m2=no-such-host.invalid:2380", client, "--initial-cluster"},
      {"listener", "m1=" + peer, "no-such-host.invalid:2379", "--listen-client"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string cmd = "'" + binary_path("kvc-node") + "' --name m1 --data-dir '" +
                            cluster.dir() + "/d" + std::to_string(n++) + "' --listen-peer " + peer +
                            " --listen-client " + c.listen_client + " --initial-cluster " +
                            c.initial_cluster;
    const ShellRun r = run_bounded(cmd, 20);
    EXPECT_EQ(r.status, 2) << r.out;  // 124+: it started and dialled nowhere
    EXPECT_TRUE(contains(r.out, c.flag)) << r.out;
    EXPECT_TRUE(contains(r.out, "no-such-host.invalid")) << r.out;
  }
  // kvc-ctl: nothing could be reached (exit 5), said plainly and at once.
  ProcessCluster::CtlResult r =
      cluster.ctl_with("no-such-host.invalid:2379", {"--timeout", "10s", "get", "/k"});
  EXPECT_EQ(r.status, 5) << r.out;
  EXPECT_TRUE(contains(r.out, "cannot resolve host name 'no-such-host.invalid'")) << r.out;
}

TEST(FailoverProcessTest, EndpointsOfTwoClustersAreRefused) {
  ProcessCluster a("failover-cluster-a", {.members = 1, .token = "cluster-a"});
  ProcessCluster b("failover-cluster-b", {.members = 1, .token = "cluster-b"});
  ASSERT_TRUE(a.start_all().ok());
  ASSERT_TRUE(b.start_all().ok());
  ASSERT_TRUE(a.wait_for_leader().ok());
  ASSERT_TRUE(b.wait_for_leader().ok());
  for (const std::string& eps :
       {a.client_addr(0) + "," + b.client_addr(0), b.client_addr(0) + "," + a.client_addr(0)}) {
    SCOPED_TRACE(eps);
    ProcessCluster::CtlResult r = a.ctl_with(eps, {"put", "/x", "1"});
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "different clusters")) << r.out;
    EXPECT_TRUE(contains(r.out, a.client_addr(0))) << r.out;
    EXPECT_TRUE(contains(r.out, b.client_addr(0))) << r.out;
  }
  EXPECT_EQ(a.ctl({"get", "/x"}).status, 3);
  EXPECT_EQ(b.ctl({"get", "/x"}).status, 3);
}

}  // namespace
}  // namespace kvc::test
