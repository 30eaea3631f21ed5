// The client's leader-following and retry rules, against fake members on 127.0.0.1 that answer
// from a script. The outcome rules under test are in client.h.
#include "kvc/client/client.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "kvc/net/connection.h"
#include "kvc/wire/auth.h"

namespace kvc::client {
namespace {

// What a fake member does with a request: answer it, or (nullopt) drop the connection.
using Script = std::function<std::optional<wire::Response>(const wire::Request&)>;

// Fake members on one libuv loop in a background thread.
class FakeCluster {
 public:
  FakeCluster() {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<FakeCluster*>(a->data);
      for (auto& l : self->listeners_) l->close();
      for (auto& c : self->conns_) c->close(Status::shutting_down("test over"));
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_.data = this;
  }
  ~FakeCluster() {
    // Run the loop even when the test never started it, so the listeners are closed and freed.
    if (!thread_.joinable()) start();
    uv_async_send(&stop_);
    thread_.join();
    uv_loop_close(&loop_);
  }

  // Adds a member (before start()); returns its address. `refuse` makes its handshake fail;
  // with `secret` it answers a hello's challenge with a proof of that secret.
  std::string add(Script script, std::string refuse = "", std::string secret = "") {
    auto l = std::make_unique<net::Listener>(&loop_, net::ConnectionOptions{});
    EXPECT_TRUE(
        l->listen(*net::parse_address("127.0.0.1:0"), [this, script, refuse,
                                                       secret](std::shared_ptr<net::Connection> c) {
           serve(std::move(c), script, refuse, secret);
         }).ok());
    std::string addr = l->bound().to_string();
    listeners_.push_back(std::move(l));
    return addr;
  }
  void start() {
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  int requests_seen() const { return requests_.load(); }
  int auth_frames_seen() const { return auth_frames_.load(); }

 private:
  void serve(std::shared_ptr<net::Connection> c, Script script, std::string refuse,
             std::string secret) {
    conns_.push_back(c);
    c->start(
        [this, script, refuse, secret](net::Connection& conn, std::string_view payload) {
          Result<wire::Envelope> env = wire::open_envelope(payload);
          ASSERT_TRUE(env.ok());
          std::string out;
          if (env->kind == wire::FrameKind::kHello) {
            wire::HelloReply reply;
            if (!refuse.empty()) {
              reply.code = Code::kFailedPrecondition;
              reply.message = refuse;
              wire::append_hello_reply(out, reply);
              conn.send(out);
              conn.close_after_flush(Status::failed_precondition(refuse));
              return;
            }
            Result<wire::Hello> hello = wire::decode_hello(*env->body);
            ASSERT_TRUE(hello.ok());
            if (!secret.empty() && !hello->nonce.empty()) {
              ASSERT_TRUE(wire::answer_challenge(secret, *hello, &reply).ok());
            }
            wire::append_hello_reply(out, reply);
            conn.send(out);
            return;
          }
          if (env->kind == wire::FrameKind::kAuth) {
            ++auth_frames_;
            return;
          }
          Result<wire::Request> req = wire::decode_request(*env->body);
          ASSERT_TRUE(req.ok());
          ++requests_;
          std::optional<wire::Response> r = script(*req);
          if (!r) {
            conn.close(Status::unavailable("script dropped the connection"));
            return;
          }
          r->id = req->id;
          wire::append_response(out, *r);
          conn.send(out);
        },
        [](net::Connection&, const Status&) {});
  }

  uv_loop_t loop_{};
  uv_async_t stop_{};
  std::thread thread_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::vector<std::shared_ptr<net::Connection>> conns_;
  std::atomic<int> requests_{0};
  std::atomic<int> auth_frames_{0};
};

std::unique_ptr<Client> open_client(const std::vector<std::string>& endpoints,
                                    std::uint64_t timeout_ms = 2000, std::string secret = "") {
  ClientOptions o;
  o.secret = std::move(secret);
  for (const auto& e : endpoints) o.endpoints.push_back(*net::parse_address(e));
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 500;
  Result<std::unique_ptr<Client>> c = Client::open(std::move(o));
  EXPECT_TRUE(c.ok());
  return std::move(*c);
}

wire::Response ok_with_revision(std::uint64_t rev) {
  wire::Response r;
  r.revision = rev;
  return r;
}

TEST(ClientTest, FollowsTheLeaderHint) {
  FakeCluster cluster;
  std::string leader = cluster.add([](const wire::Request&) { return ok_with_revision(42); });
  std::string follower = cluster.add([&](const wire::Request&) {
    wire::Response r;
    r.code = Code::kNotLeader;
    r.message = "not the leader";
    r.leader_client_addr = leader;
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({follower});
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 42u);
  EXPECT_EQ(client->leader_address(), leader);
  // The next write goes straight to the leader.
  const int before = cluster.requests_seen();
  EXPECT_EQ(client->put("k", "v2").code, Code::kOk);
  EXPECT_EQ(cluster.requests_seen(), before + 1);
}

TEST(ClientTest, WriteOnABrokenConnectionHasUnknownOutcome) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request&) { return std::nullopt; });
  cluster.start();
  auto client = open_client({m});
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kTimeout);
  EXPECT_NE(r.message.find("may or may not have been applied"), std::string::npos) << r.message;
  EXPECT_EQ(cluster.requests_seen(), 1) << "a write must not be retried after it was sent";
}

TEST(ClientTest, ReadOnABrokenConnectionIsRetriedElsewhere) {
  FakeCluster cluster;
  std::string dropper = cluster.add([](const wire::Request&) { return std::nullopt; });
  std::string good = cluster.add([](const wire::Request&) {
    wire::Response r;
    r.found = true;
    r.kvs = {{"k", "v", 1, 1, 1}};
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({dropper, good});
  wire::Response r = client->get("k");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value, "v");
}

TEST(ClientTest, NoReachableMemberIsUnavailableNotUnknown) {
  std::string dead;
  {
    // A port that nothing listens on once the fake cluster is gone.
    FakeCluster cluster;
    dead = cluster.add([](const wire::Request&) { return std::nullopt; });
  }
  auto client = open_client({dead}, 600);
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kUnavailable) << r.message;
}

TEST(ClientTest, UnavailableAnswersAreRetriedUntilALeaderExists) {
  FakeCluster cluster;
  std::atomic<int> calls{0};
  std::string m = cluster.add([&](const wire::Request&) {
    wire::Response r;
    if (++calls < 3) {
      r.code = Code::kUnavailable;
      r.message = "no leader yet";
    }
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({m});
  EXPECT_EQ(client->put("k", "v").code, Code::kOk);
  EXPECT_EQ(calls.load(), 3);
}

TEST(ClientTest, DefiniteAnswersAreNotRetried) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request&) {
    wire::Response r;
    r.code = Code::kCompareFailed;
    r.message = "revision is 7";
    r.revision = 7;
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({m});
  wire::Response r = client->cas("k", "v", 3);
  EXPECT_EQ(r.code, Code::kCompareFailed);
  EXPECT_EQ(cluster.requests_seen(), 1);
}

TEST(ClientTest, RefusedHandshakeReportsWhy) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request&) { return ok_with_revision(1); },
                              "cluster id mismatch");
  cluster.start();
  auto client = open_client({m});
  wire::Response r = client->get("k");
  EXPECT_EQ(r.code, Code::kFailedPrecondition) << r.message;
  EXPECT_NE(r.message.find("cluster id mismatch"), std::string::npos) << r.message;
}

TEST(ClientTest, WithASecretRequestsFollowTheMembersProof) {
  FakeCluster cluster;
  std::string m =
      cluster.add([](const wire::Request&) { return ok_with_revision(7); }, "", "shared");
  cluster.start();
  auto client = open_client({m}, 2000, "shared");
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 7u);
  EXPECT_EQ(client->get("k").code, Code::kOk);
  EXPECT_EQ(cluster.auth_frames_seen(), 1);  // one connection, one proof
  EXPECT_EQ(cluster.requests_seen(), 2);
}

TEST(ClientTest, FakeMemberWithoutTheSecretCollectsNoRequests) {
  const struct {
    const char* name;
    std::string member_secret;
    const char* want;
  } cases[] = {
      {"no secret", "", "sent no proof"},
      {"other secret", "other", "proof of the shared secret is wrong"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeCluster cluster;
    std::string m =
        cluster.add([](const wire::Request&) { return ok_with_revision(1); }, "", c.member_secret);
    cluster.start();
    auto client = open_client({m}, 2000, "shared");
    wire::Response r = client->put("k", "v");
    EXPECT_EQ(r.code, Code::kFailedPrecondition) << r.message;
    EXPECT_NE(r.message.find(c.want), std::string::npos) << r.message;
    EXPECT_EQ(cluster.requests_seen(), 0);
  }
}

TEST(ClientTest, ManyConcurrentCallsArePipelined) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request& q) {
    wire::Response r;
    r.revision = q.id;
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({m});
  constexpr int kCalls = 2000;
  std::mutex mu;
  int ok = 0;
  std::promise<void> all;
  for (int i = 0; i < kCalls; ++i) {
    client->call({.op = wire::Op::kPut, .key = "k" + std::to_string(i)}, [&](wire::Response r) {
      std::lock_guard<std::mutex> lock(mu);
      if (r.code == Code::kOk && r.revision == r.id) ++ok;
      if (ok == kCalls) all.set_value();
    });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(ok, kCalls);
}

TEST(ClientTest, StreamDeliversUntilDone) {
  FakeCluster cluster;
  // Answers each request with done=true immediately, carrying one event.
  std::string m = cluster.add([](const wire::Request&) {
    wire::Response r;
    r.events = {{wire::EventType::kPut, {"k", "v", 5, 5, 1}}};
    r.done = true;
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({m});
  std::promise<wire::Response> last;
  client->stream({.op = wire::Op::kWatch, .key = "k"}, [&](const wire::Response& r) {
    if (r.done || r.code != Code::kOk) last.set_value(r);
    return true;
  });
  auto f = last.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  wire::Response r = f.get();
  EXPECT_EQ(r.code, Code::kOk);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kv.mod_revision, 5u);
}

}  // namespace
}  // namespace kvc::client
