// Shared-secret authentication and connection limits with real kvc-node processes: a cluster
// with a secret (a TLS pre-shared key on both ports) serves kvc-ctl only when it has the same
// secret; a member with the wrong secret cannot join; a member refuses connections beyond
// --max-client-connections with a message and keeps serving.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"
#include "support/text.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;

// Whether some line of `text` contains every one of `parts`, in order (plain search: GCC 12
// warns inside <regex> in the sanitizer build).
bool line_with(const std::string& text, const std::vector<std::string>& parts) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::size_t at = 0;
    bool all = true;
    for (const std::string& p : parts) {
      at = line.find(p, at);
      if (at == std::string::npos) {
        all = false;
        break;
      }
      at += p.size();
    }
    if (all) return true;
  }
  return false;
}

ClusterOptions with_secret(const std::string& dir_hint) {
  ClusterOptions o;
  o.secret_file = dir_hint;
  return o;
}

// The cluster's secret and a wrong one, in files of a directory of their own.
class SecretFiles {
 public:
  explicit SecretFiles(const std::string& name)
      : dir_("kvc-secret-" + name), good_(dir_.file("good")), wrong_(dir_.file("wrong")) {
    // As `openssl rand -hex 32` makes them (a weak secret is refused at start-up).
    EXPECT_TRUE(write_secret_file(
                    good_, "5d2b8e1f4a7c0d3e6b9f2a5c8d1e4b7a0f3c6e9d2b5a8f1c4e7d0a3b6c9f2e5a\n")
                    .ok());
    EXPECT_TRUE(write_secret_file(
                    wrong_, "e8a1d4c7b0f3e6a9d2c5b8f1a4e7d0c3b6a9f2e5d8c1b4a7f0e3d6c9b2a5f8e1\n")
                    .ok());
  }
  const std::string& good() const { return good_; }
  const std::string& wrong() const { return wrong_; }

 private:
  ScopedTempDir dir_;
  std::string good_, wrong_;
};

// A blocking TCP connection to 127.0.0.1:port with a 3 s receive timeout (-1 on failure).
int raw_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The first frame the member sends on `fd`, as a hello reply.
Result<wire::HelloReply> read_hello_reply(int fd) {
  wire::FrameDecoder decoder;
  char buf[4096];
  for (int reads = 0; reads < 100; ++reads) {
    std::string_view payload;
    bool has = false;
    KVC_RETURN_IF_ERROR(decoder.next(&payload, &has));
    if (has) {
      Result<wire::Envelope> env = wire::open_envelope(payload);
      if (!env.ok()) return env.status();
      if (env->kind != wire::FrameKind::kHelloReply) return Status::corruption("not a reply");
      return wire::decode_hello_reply(*env->body);
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return Status::unavailable("no reply");
    decoder.feed(buf, static_cast<std::size_t>(n));
  }
  return Status::corruption("no complete reply");
}

TEST(AuthProcessTest, ClusterWithSecretServesOnlyClientsThatProveIt) {
  SecretFiles secrets("serve");
  ProcessCluster cluster("auth-serve", with_secret(secrets.good()));
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());  // peers authenticated each other

  ProcessCluster::CtlResult put =
      cluster.ctl({"--secret-file", secrets.good(), "put", "/auth/a", "1"});
  ASSERT_EQ(put.status, 0) << put.out;
  ProcessCluster::CtlResult get = cluster.ctl({"--secret-file", secrets.good(), "get", "/auth/a"});
  ASSERT_EQ(get.status, 0) << get.out;
  EXPECT_EQ(get.out, "1");

  ProcessCluster::CtlResult none = cluster.ctl({"--timeout", "2s", "get", "/auth/a"});
  EXPECT_NE(none.status, 0) << none.out;
  EXPECT_TRUE(contains(none.out, "tls: the server speaks TLS and this side sent plaintext"))
      << none.out;
  EXPECT_FALSE(contains(none.out, "/auth/a\n1")) << none.out;

  ProcessCluster::CtlResult wrong =
      cluster.ctl({"--timeout", "2s", "--secret-file", secrets.wrong(), "put", "/auth/b", "2"});
  EXPECT_NE(wrong.status, 0) << wrong.out;
  EXPECT_TRUE(contains(wrong.out, "the server refused our shared secret")) << wrong.out;

  // The refusals are logged with the remote address; the cluster keeps serving and the
  // refused write was not applied.
  std::string logs;
  for (int i = 0; i < cluster.size(); ++i) logs += read_file(cluster.log_path(i));
  EXPECT_TRUE(line_with(logs, {"client connection closed from=127.0.0.1:",
                               " reason=tls: this port speaks TLS: the client sent plaintext"}))
      << logs;
  EXPECT_TRUE(line_with(logs, {"client connection closed from=127.0.0.1:",
                               " reason=tls handshake failed: binder does not verify"}))
      << logs;
  auto c = cluster.client();
  wire::Response after = c->get("/auth/b");
  ASSERT_EQ(after.code, Code::kOk) << after.message;
  EXPECT_FALSE(after.found);
  EXPECT_EQ(c->put("/auth/c", "3").code, Code::kOk);
}

TEST(AuthProcessTest, MemberWithWrongSecretCannotJoinAndClusterKeepsServing) {
  SecretFiles secrets("join");
  ProcessCluster cluster("auth-join", with_secret(secrets.good()));
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const int m4 = cluster.add_spec("m4");
  ProcessCluster::CtlResult add = cluster.ctl(
      {"--secret-file", secrets.good(), "member", "add", "m4", cluster.peer_addr(m4), "--learner"});
  ASSERT_EQ(add.status, 0) << add.out;
  const std::size_t flag = add.out.find("--initial-cluster ");
  ASSERT_NE(flag, std::string::npos) << add.out;
  const std::size_t from = flag + std::string("--initial-cluster ").size();
  cluster.mutable_spec(m4).join_initial_cluster =
      add.out.substr(from, add.out.find_first_of(" \n", from) - from);
  cluster.mutable_spec(m4).secret_file = secrets.wrong();
  ASSERT_TRUE(cluster.start(m4).ok());
  // The joiner gives up at once (a wrong secret is final), without an id.
  ASSERT_TRUE(wait_until([&] { return !cluster.running(m4); }, 20s, "m4 to exit").ok())
      << read_file(cluster.log_path(m4));
  const std::string m4_log = read_file(cluster.log_path(m4));
  EXPECT_TRUE(contains(m4_log, "the server refused our shared secret")) << m4_log;
  std::string logs;
  for (int i = 0; i < 3; ++i) logs += read_file(cluster.log_path(i));
  EXPECT_TRUE(line_with(logs, {"refusing peer from=127.0.0.1:",
                               " reason=tls handshake failed: binder does not verify"}))
      << logs;
  EXPECT_FALSE(contains(logs, "told joining member its id")) << logs;

  auto c = cluster.client();
  EXPECT_EQ(c->put("/after-join", "x").code, Code::kOk);

  // A bootstrap member restarted with the wrong secret cannot rejoin its links; the other two
  // keep serving writes.
  ASSERT_TRUE(cluster.stop(2).ok());
  cluster.mutable_spec(2).secret_file = secrets.wrong();
  ASSERT_TRUE(cluster.start(2).ok());
  ASSERT_TRUE(wait_until(
                  [&] {
                    std::string l = read_file(cluster.log_path(0)) + read_file(cluster.log_path(1));
                    return contains(l, "cannot link to peer") &&
                           contains(l, "the client's shared secret differs");
                  },
                  10s, "the refusal in the logs")
                  .ok())
      << read_file(cluster.log_path(0));
  // m3 redials every 250 ms at most and is refused each time, both ways; m1 logs that at most
  // once a second per kind and peer (two here: its own link out, m3's links in), counting the
  // rest into the next line. A window of 4 s without the limit holds about 32 such lines.
  const std::size_t seen = read_file(cluster.log_path(0)).size();
  std::this_thread::sleep_for(std::chrono::seconds(4));  // the window observed, not a wait
  const std::string window = read_file(cluster.log_path(0)).substr(seen);
  int refusals = 0;
  bool counted = false;
  std::istringstream lines(window);
  for (std::string line; std::getline(lines, line);) {
    if (!contains(line, "shared secret")) continue;
    ++refusals;
    const std::size_t at = line.find("suppressed=");
    counted = counted || (at != std::string::npos && line.compare(at, 12, "suppressed=0") != 0);
  }
  EXPECT_GE(refusals, 2) << window;
  EXPECT_LE(refusals, 2 * (4 + 1)) << window;
  EXPECT_TRUE(counted) << "no refusal line counts the ones it stood for:\n" << window;
  wire::Response w = c->put("/after-restart", "y");
  EXPECT_EQ(w.code, Code::kOk) << w.message;
  EXPECT_TRUE(cluster.running(2));
}

TEST(AuthProcessTest, ConnectionLimitRefusesPolitelyAndMemberKeepsServing) {
  ClusterOptions o;
  o.members = 1;
  o.extra_flags = {"--max-client-connections", "2"};
  ProcessCluster cluster("conn-limit", o);
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  // wait_for_leader's clients are gone once the member has seen them close.
  auto hold1 = cluster.client_for(0);
  auto hold2 = cluster.client_for(0);
  ASSERT_TRUE(wait_until([&] { return hold1->put("/hold/1", "x").code == Code::kOk; }, 5s,
                         "a write through the first client")
                  .ok());
  ASSERT_TRUE(wait_until([&] { return hold2->put("/hold/2", "x").code == Code::kOk; }, 5s,
                         "a write through the second client")
                  .ok());

  // A generous timeout: the refusal must be what ends the call, even on a loaded machine.
  ProcessCluster::CtlResult third = cluster.ctl({"--timeout", "10s", "get", "/hold/1"});
  EXPECT_NE(third.status, 0) << third.out;
  EXPECT_TRUE(contains(third.out, "too many client connections (--max-client-connections 2)"))
      << third.out;
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)), "reason=too many connections limit=2"));
  // The held connections still work, and a freed slot is usable again.
  EXPECT_EQ(hold1->get("/hold/2").code, Code::kOk);
  hold2.reset();
  EXPECT_TRUE(wait_until(
                  [&] {
                    return cluster.ctl({"--timeout", "1s", "get", "/hold/1"}).status == 0;
                  },
                  5s, "a read after the refusals")
                  .ok());
  EXPECT_TRUE(cluster.running(0));
}

// Every client here connects from 127.0.0.1: past --max-client-connections-per-address the
// next is refused naming the address and the flag, while the total limit is far away.
TEST(AuthProcessTest, PerAddressConnectionLimitRefusesTheAddressPolitely) {
  ClusterOptions o;
  o.members = 1;
  o.extra_flags = {"--max-client-connections-per-address", "2"};
  ProcessCluster cluster("conn-limit-address", o);
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto hold1 = cluster.client_for(0);
  auto hold2 = cluster.client_for(0);
  ASSERT_TRUE(wait_until([&] { return hold1->put("/hold/1", "x").code == Code::kOk; }, 5s,
                         "a write through the first client")
                  .ok());
  ASSERT_TRUE(wait_until([&] { return hold2->put("/hold/2", "x").code == Code::kOk; }, 5s,
                         "a write through the second client")
                  .ok());
  ProcessCluster::CtlResult third = cluster.ctl({"--timeout", "10s", "get", "/hold/1"});
  EXPECT_NE(third.status, 0) << third.out;
  EXPECT_TRUE(contains(third.out,
                       "too many client connections from 127.0.0.1 "
                       "(--max-client-connections-per-address 2)"))
      << third.out;
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)),
                       "reason=too many connections from its address limit=2"));
  // A closed connection frees its address's slot.
  EXPECT_EQ(hold1->get("/hold/2").code, Code::kOk);
  hold2.reset();
  EXPECT_TRUE(wait_until(
                  [&] {
                    return cluster.ctl({"--timeout", "1s", "get", "/hold/1"}).status == 0;
                  },
                  5s, "a read after the refusal")
                  .ok());
}

TEST(AuthProcessTest, PeerConnectionLimitRefusesPolitely) {
  ClusterOptions o;
  o.members = 1;
  o.extra_flags = {"--max-peer-connections", "1"};
  ProcessCluster cluster("peer-limit", o);
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const int held = raw_connect(cluster.spec(0).peer_port);  // silent: holds the only slot
  ASSERT_GE(held, 0);
  const int extra = raw_connect(cluster.spec(0).peer_port);
  ASSERT_GE(extra, 0);
  Result<wire::HelloReply> refused = read_hello_reply(extra);
  ::close(extra);
  ASSERT_TRUE(refused.ok()) << refused.status().to_string();
  EXPECT_EQ(refused->code, Code::kResourceExhausted);
  EXPECT_EQ(refused->message, "too many peer connections (--max-peer-connections 1)");
  auto c = cluster.client();
  EXPECT_EQ(c->put("/still-serving", "x").code, Code::kOk);
  // Once the silent connection goes, the slot is free: a hello is answered on its merits.
  ::close(held);
  std::string hello;
  wire::append_hello(hello, {.role = wire::Role::kClient, .name = "probe"});
  std::string last;
  EXPECT_TRUE(wait_until(
                  [&] {
                    const int fd = raw_connect(cluster.spec(0).peer_port);
                    if (fd < 0) return false;
                    const bool sent = ::write(fd, hello.data(), hello.size()) ==
                                      static_cast<ssize_t>(hello.size());
                    Result<wire::HelloReply> r = read_hello_reply(fd);
                    ::close(fd);
                    last = r.ok() ? r->message : r.status().to_string();
                    return sent && r.ok() &&
                           r->message == "this is the peer port; clients use the client port";
                  },
                  5s, "the member to answer a hello")
                  .ok())
      << last;
}

}  // namespace
}  // namespace kvc::test
