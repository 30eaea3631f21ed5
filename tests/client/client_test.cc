// The client's leader-following and retry rules, against fake members on 127.0.0.1 that answer
// from a script. The outcome rules under test are in client.h.
#include "kvc/client/client.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "kvc/net/connection.h"

namespace kvc::client {
namespace {

// What a fake member does with a request: answer it, or (nullopt) drop the connection. An
// answer carrying kNoAnswer as its message is never sent (the member stopped after its hello).
using Script = std::function<std::optional<wire::Response>(const wire::Request&)>;
constexpr const char* kNoAnswer = "<the fake member does not answer>";

wire::Response no_answer() {
  wire::Response r;
  r.message = kNoAnswer;
  return r;
}

// A fake member: its script, and how its handshake behaves.
struct FakeMember {
  Script script;
  std::string refuse;  // refuse every hello with this message
  std::string secret;  // speak TLS with this secret as the pre-shared key
  std::uint64_t cluster_id = 0;
  // Told in the hello reply (0: not told, as an older member).
  std::uint64_t max_frame_bytes = 0;
  std::uint64_t max_request_bytes = 0;
  bool silent_hello = false;  // a stopped process: connections are accepted, hellos unanswered
  std::string raw_answer;     // sent instead of a hello reply, then it hangs up (not kvc)
  std::uint64_t answer_delay_ms = 0;  // the script's answers go out this late
  // Its own frame limit (0: the default). With refuse_oversized it skips a larger frame and
  // says so in a hello reply, as kvc-node does.
  std::size_t frame_limit = 0;
  bool refuse_oversized = false;
};

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
  // with `secret` it speaks TLS with that secret as the pre-shared key.
  std::string add(Script script, std::string refuse = "", std::string secret = "") {
    return add(FakeMember{
        .script = std::move(script), .refuse = std::move(refuse), .secret = std::move(secret)});
  }
  std::string add(FakeMember spec) {
    auto counts = std::make_shared<Counts>();
    net::ConnectionOptions options;
    if (spec.frame_limit != 0) options.max_frame_bytes = spec.frame_limit;
    if (!spec.secret.empty()) {
      auto ctx = net::TlsContext::create(net::TlsRole::kServer, {.secret = spec.secret});
      EXPECT_TRUE(ctx.ok()) << ctx.status().to_string();
      if (ctx.ok()) options.tls = *ctx;
    }
    if (spec.refuse_oversized) {
      const std::size_t limit = options.max_frame_bytes;
      options.on_oversized = [limit](net::Connection& c, std::size_t bytes) {
        std::string out;
        wire::append_hello_reply(out, {.code = Code::kInvalidArgument,
                                       .message = "frame of " + std::to_string(bytes) +
                                                  " bytes exceeds the member's limit of " +
                                                  std::to_string(limit) + " bytes",
                                       .max_frame_bytes = limit,
                                       .refused_frame_bytes = bytes});
        c.send(out);
        return true;
      };
    }
    auto l = std::make_unique<net::Listener>(&loop_, options);
    auto shared = std::make_shared<FakeMember>(std::move(spec));
    EXPECT_TRUE(
        l->listen(*net::parse_address("127.0.0.1:0"), [this, shared,
                                                       counts](std::shared_ptr<net::Connection> c) {
           serve(std::move(c), shared, counts);
         }).ok());
    std::string addr = l->bound().to_string();
    listeners_.push_back(std::move(l));
    counts_[addr] = counts;
    return addr;
  }
  void start() {
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  int requests_seen() const { return requests_.load(); }
  int requests_at(const std::string& addr) const { return counts_.at(addr)->requests.load(); }
  int hellos_at(const std::string& addr) const { return counts_.at(addr)->hellos.load(); }
  // The connection (numbered in the order they were accepted) each request came on, in order.
  std::vector<int> request_connections() const {
    std::lock_guard<std::mutex> lock(log_mu_);
    return request_connections_;
  }

 private:
  struct Counts {
    std::atomic<int> requests{0};
    std::atomic<int> hellos{0};
  };

  void serve(std::shared_ptr<net::Connection> c, std::shared_ptr<FakeMember> spec,
             std::shared_ptr<Counts> counts) {
    const int index = static_cast<int>(conns_.size());
    conns_.push_back(c);
    c->start(
        [this, spec, counts, index](net::Connection& conn, std::string_view payload) {
          Result<wire::Envelope> env = wire::open_envelope(payload);
          ASSERT_TRUE(env.ok());
          std::string out;
          if (env->kind == wire::FrameKind::kHello) {
            ++counts->hellos;
            if (spec->silent_hello) return;
            if (!spec->raw_answer.empty()) {
              conn.send(spec->raw_answer);
              conn.close_after_flush(Status::unavailable("not a kvc member"));
              return;
            }
            wire::HelloReply reply{.cluster_id = spec->cluster_id,
                                   .max_frame_bytes = spec->max_frame_bytes,
                                   .max_request_bytes = spec->max_request_bytes};
            if (!spec->refuse.empty()) {
              reply.code = Code::kFailedPrecondition;
              reply.message = spec->refuse;
              wire::append_hello_reply(out, reply);
              conn.send(out);
              conn.close_after_flush(Status::failed_precondition(spec->refuse));
              return;
            }
            Result<wire::Hello> hello = wire::decode_hello(*env->body);
            ASSERT_TRUE(hello.ok());
            wire::append_hello_reply(out, reply);
            conn.send(out);
            return;
          }
          Result<wire::Request> req = wire::decode_request(*env->body);
          ASSERT_TRUE(req.ok());
          {
            std::lock_guard<std::mutex> lock(log_mu_);
            request_connections_.push_back(index);
          }
          ++requests_;
          ++counts->requests;
          std::optional<wire::Response> r = spec->script(*req);
          if (!r) {
            conn.close(Status::unavailable("script dropped the connection"));
            return;
          }
          if (r->message == kNoAnswer) return;
          r->id = req->id;
          wire::append_response(out, *r);
          if (spec->answer_delay_ms == 0) {
            conn.send(out);
            return;
          }
          send_later(conn.shared_from_this(), std::move(out), spec->answer_delay_ms);
        },
        [](net::Connection&, const Status&) {});
  }

  void send_later(std::shared_ptr<net::Connection> conn, std::string out, std::uint64_t ms) {
    struct Later {
      uv_timer_t timer{};
      std::weak_ptr<net::Connection> conn;
      std::string out;
    };
    auto* l = new Later{{}, conn, std::move(out)};
    uv_timer_init(&loop_, &l->timer);
    l->timer.data = l;
    uv_timer_start(
        &l->timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<Later*>(t->data);
          if (auto c = self->conn.lock(); c && !c->closed()) c->send(self->out);
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
        },
        ms, 0);
  }

  uv_loop_t loop_{};
  uv_async_t stop_{};
  std::thread thread_;
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::vector<std::shared_ptr<net::Connection>> conns_;
  std::map<std::string, std::shared_ptr<Counts>> counts_;  // written before start() only
  std::atomic<int> requests_{0};
  mutable std::mutex log_mu_;
  std::vector<int> request_connections_;
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

std::uint64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now() - since)
                                        .count());
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

// With several connections to a member, what one turn of the client's loop sends goes out on
// one of them (one write, one TLS record each way), and the next turn's on another.
TEST(ClientTest, RequestsOfOneTurnGoTogetherOnOneOfSeveralConnections) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request&) { return ok_with_revision(7); });
  cluster.start();
  ClientOptions o;
  o.endpoints.push_back(*net::parse_address(m));
  o.connections_per_member = 4;
  Result<std::unique_ptr<Client>> opened = Client::open(std::move(o));
  ASSERT_TRUE(opened.ok());
  Client& client = **opened;
  // Connections are added as requests are sent, each once it answers its hello.
  for (int i = 0; i < 200 && cluster.hellos_at(m) < 4; ++i) {
    ASSERT_EQ(client.get("warm").code, Code::kOk);
  }
  ASSERT_EQ(cluster.hellos_at(m), 4);
  ASSERT_EQ(client.get("warm").code, Code::kOk);  // the fourth has answered and takes requests

  constexpr int kBursts = 6;
  constexpr int kBurst = 40;
  std::set<int> used;
  for (int b = 0; b < kBursts; ++b) {
    const std::size_t before = cluster.request_connections().size();
    std::promise<void> all_done;
    std::atomic<int> left{kBurst};
    std::atomic<int> failed{0};
    // From inside a callback, on the client's thread: kBurst calls made in one turn.
    wire::Request first;
    first.op = wire::Op::kGet;
    first.key = "first";
    client.call(std::move(first), [&](wire::Response) {
      for (int i = 0; i < kBurst; ++i) {
        wire::Request req;
        req.op = wire::Op::kGet;
        req.key = "k" + std::to_string(i);
        client.call(std::move(req), [&](wire::Response r) {
          if (r.code != Code::kOk) ++failed;
          if (--left == 0) all_done.set_value();
        });
      }
    });
    ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_EQ(failed.load(), 0);
    const std::vector<int> log = cluster.request_connections();
    ASSERT_EQ(log.size(), before + 1 + kBurst);
    const std::vector<int> burst(log.begin() + static_cast<std::ptrdiff_t>(before + 1), log.end());
    EXPECT_EQ(std::set<int>(burst.begin(), burst.end()).size(), 1u)
        << "burst " << b << " was spread over several connections";
    used.insert(burst.front());
  }
  // The turns rotate over the connections rather than keeping to one.
  EXPECT_GE(used.size(), 2u);
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
  std::string m =
      cluster.add([](const wire::Request&) { return ok_with_revision(1); }, "cluster id mismatch");
  cluster.start();
  auto client = open_client({m});
  wire::Response r = client->get("k");
  EXPECT_EQ(r.code, Code::kFailedPrecondition) << r.message;
  EXPECT_NE(r.message.find("cluster id mismatch"), std::string::npos) << r.message;
}

TEST(ClientTest, WithASecretRequestsGoOverTls) {
  FakeCluster cluster;
  std::string m =
      cluster.add([](const wire::Request&) { return ok_with_revision(7); }, "", "shared");
  cluster.start();
  auto client = open_client({m}, 2000, "shared");
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 7u);
  EXPECT_EQ(client->get("k").code, Code::kOk);
  EXPECT_EQ(cluster.requests_seen(), 2);  // and nothing but them after the hello
}

TEST(ClientTest, FakeMemberWithoutTheSecretCollectsNoRequests) {
  const struct {
    const char* name;
    std::string member_secret;
    Code code;
    const char* want;
  } cases[] = {
      {"no secret", "", Code::kUnavailable, "tls: the server closed the connection during the TLS"},
      {"other secret", "other", Code::kFailedPrecondition, "the server refused our shared secret"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeCluster cluster;
    std::string m =
        cluster.add([](const wire::Request&) { return ok_with_revision(1); }, "", c.member_secret);
    cluster.start();
    auto client = open_client({m}, 2000, "shared");
    wire::Response r = client->put("k", "v");
    EXPECT_EQ(r.code, c.code) << r.message;
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

wire::Response found(const std::string& value) {
  wire::Response r;
  r.found = true;
  r.kvs = {{"k", value, 1, 1, 1}};
  return r;
}

TEST(ClientTest, HelloBudgetIsAFractionOfTheTimeoutWithinBounds) {
  EXPECT_EQ(hello_budget_ms(3000), 300u);
  EXPECT_EQ(hello_budget_ms(5000), 500u);
  EXPECT_EQ(hello_budget_ms(200), 250u);      // not absurdly small
  EXPECT_EQ(hello_budget_ms(600000), 1000u);  // at most a second
  EXPECT_EQ(read_attempt_ms(3000), 1000u);
  EXPECT_EQ(read_attempt_ms(100), 250u);
  EXPECT_EQ(read_attempt_ms(60000), 2000u);
}

TEST(ClientTest, AHungEndpointIsSkippedAndRemembered) {
  FakeCluster cluster;
  // Listed first: accepts connections (as a stopped process's kernel does), answers nothing.
  std::string hung = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return std::optional<wire::Response>(found("hung")); },
      .silent_hello = true});
  std::string good =
      cluster.add([](const wire::Request&) { return std::optional<wire::Response>(found("v")); });
  cluster.start();
  auto client = open_client({hung, good}, 5000);  // hello budget 500 ms
  const auto t0 = std::chrono::steady_clock::now();
  wire::Response r = client->get("k");
  const std::uint64_t first_ms = elapsed_ms(t0);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.kvs.at(0).value, "v");
  EXPECT_LT(first_ms, 2500u) << "waited for the hung endpoint well past its hello budget";
  // The next calls do not wait for it again.
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(client->get("k").code, Code::kOk);
  EXPECT_LT(elapsed_ms(t1), 450u) << "paid the hung endpoint's hello budget again";
  EXPECT_EQ(cluster.requests_at(hung), 0) << "a request went to a member that never said hello";
  EXPECT_GE(cluster.hellos_at(hung), 1);
}

TEST(ClientTest, NothingIsSentToAMemberThatDoesNotAnswerItsHello) {
  FakeCluster cluster;
  std::string hung = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return std::optional<wire::Response>(found("v")); },
      .silent_hello = true});
  cluster.start();
  auto client = open_client({hung}, 800);
  for (const wire::Op op : {wire::Op::kPut, wire::Op::kGet}) {
    SCOPED_TRACE(std::string(wire::op_name(op)));
    wire::Response r = client->call_sync({.op = op, .key = "k", .value = "v"});
    // Never sent, so never "outcome unknown".
    EXPECT_EQ(r.code, Code::kUnavailable) << r.message;
    EXPECT_NE(r.message.find("no answer to the hello"), std::string::npos) << r.message;
  }
  EXPECT_EQ(cluster.requests_at(hung), 0);
}

TEST(ClientTest, AnUnansweredReadIsRetriedElsewhereAndItsLateAnswerIgnored) {
  FakeCluster cluster;
  // Answers its hello, then its reads only after 2 s (an unanswered attempt; the answer is late).
  std::string slow = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return std::optional<wire::Response>(found("late")); },
      .answer_delay_ms = 2000});
  std::string good =
      cluster.add([](const wire::Request&) { return std::optional<wire::Response>(found("v")); });
  cluster.start();
  for (const bool serializable : {false, true}) {
    SCOPED_TRACE(serializable ? "serializable" : "linearizable");
    auto client = open_client({slow, good}, 3000);  // attempt budget 1 s
    const int before = cluster.requests_at(slow);
    wire::Response r = client->get("k", serializable);
    ASSERT_EQ(r.code, Code::kOk) << r.message;
    EXPECT_EQ(r.kvs.at(0).value, "v");
    EXPECT_EQ(cluster.requests_at(slow), before + 1);
  }
}

TEST(ClientTest, AWriteToAMemberThatGoesSilentIsNeverRetried) {
  FakeCluster cluster;
  std::string silent =
      cluster.add([](const wire::Request&) { return std::optional<wire::Response>(no_answer()); });
  std::string other = cluster.add([](const wire::Request&) { return ok_with_revision(9); });
  cluster.start();
  auto client = open_client({silent, other}, 1500);
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kTimeout) << r.message;
  EXPECT_NE(r.message.find("may or may not have been applied"), std::string::npos) << r.message;
  EXPECT_EQ(cluster.requests_at(silent), 1);
  EXPECT_EQ(cluster.requests_at(other), 0) << "a sent write must not be retried elsewhere";
}

TEST(ClientTest, ARedirectToAHungLeaderFallsBackUntilANewLeaderIsNamed) {
  FakeCluster cluster;
  std::string hung_leader = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return ok_with_revision(1); }, .silent_hello = true});
  std::string new_leader = cluster.add([](const wire::Request&) { return ok_with_revision(5); });
  std::atomic<int> asked{0};
  std::string follower = cluster.add([&](const wire::Request&) {
    // Names the hung leader a few times (it has not noticed yet), then the new one.
    wire::Response r;
    r.code = Code::kNotLeader;
    r.message = "not the leader";
    r.leader_client_addr = ++asked <= 3 ? hung_leader : new_leader;
    return std::optional<wire::Response>(r);
  });
  cluster.start();
  auto client = open_client({follower}, 5000);
  const auto t0 = std::chrono::steady_clock::now();
  wire::Response r = client->put("k", "v");
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 5u);
  EXPECT_LT(elapsed_ms(t0), 4000u);
  EXPECT_EQ(cluster.requests_at(hung_leader), 0);
  EXPECT_EQ(client->leader_address(), new_leader);
}

TEST(ClientTest, EndpointsOfTwoClustersAreRefused) {
  FakeCluster cluster;
  std::string a = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return ok_with_revision(1); }, .cluster_id = 0xaa});
  std::string b = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return ok_with_revision(1); }, .cluster_id = 0xbb});
  cluster.start();
  auto client = open_client({a, b});
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kFailedPrecondition) << r.message;
  for (const std::string& want :
       {a, b, std::string("00000000000000aa"), std::string("00000000000000bb")}) {
    EXPECT_NE(r.message.find(want), std::string::npos) << want << " not in: " << r.message;
  }
  EXPECT_EQ(cluster.requests_seen(), 0);
}

TEST(ClientTest, AMemberOfAnotherClusterIsRefusedByName) {
  FakeCluster cluster;
  std::string other = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return ok_with_revision(1); }, .cluster_id = 0xbb});
  std::string ours = cluster.add(FakeMember{
      .script = [](const wire::Request&) { return ok_with_revision(2); }, .cluster_id = 0xaa});
  cluster.start();
  ClientOptions o;
  o.endpoints = {*net::parse_address(other), *net::parse_address(ours)};
  o.cluster_id = 0xaa;
  o.timeout_ms = 2000;
  auto client = std::move(*Client::open(o));
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 2u);
  EXPECT_EQ(cluster.requests_at(other), 0);
  // Alone, it is refused with both ids and its address.
  r = client->call_sync({.op = wire::Op::kGet, .key = "k"}, {.target = *net::parse_address(other)});
  EXPECT_EQ(r.code, Code::kFailedPrecondition) << r.message;
  for (const std::string& want :
       {other, std::string("00000000000000aa"), std::string("00000000000000bb")}) {
    EXPECT_NE(r.message.find(want), std::string::npos) << want << " not in: " << r.message;
  }
}

TEST(ClientTest, RequestsOverTheMembersLimitsAreRefusedBeforeSending) {
  const struct {
    const char* name;
    std::uint64_t max_frame_bytes, max_request_bytes;
    std::string big_value;
    const char* flag;
    const char* limit;
  } cases[] = {
      {"key plus value", 0, 1000, std::string(1000, 'v'), "--max-request-bytes", "1000"},
      {"frame", 600, 0, std::string(600, 'v'), "--max-frame-bytes", "600"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeCluster cluster;
    std::string m =
        cluster.add(FakeMember{.script = [](const wire::Request&) { return ok_with_revision(1); },
                               .max_frame_bytes = c.max_frame_bytes,
                               .max_request_bytes = c.max_request_bytes});
    cluster.start();
    auto client = open_client({m});
    wire::Response r = client->put("k", c.big_value);
    EXPECT_EQ(r.code, Code::kInvalidArgument) << r.message;
    EXPECT_NE(r.message.find(c.flag), std::string::npos) << r.message;
    EXPECT_NE(r.message.find(c.limit), std::string::npos) << r.message;
    EXPECT_EQ(cluster.requests_at(m), 0);
    EXPECT_EQ(client->put("k", "small").code, Code::kOk);
    EXPECT_EQ(cluster.requests_at(m), 1);
  }
}

TEST(ClientTest, AFrameTheMemberRefusedUnreadEndsOnlyThatCall) {
  FakeCluster cluster;
  // A member that does not tell its limit in the hello but refuses a larger frame unread.
  std::string m =
      cluster.add(FakeMember{.script = [](const wire::Request&) { return ok_with_revision(3); },
                             .frame_limit = 1024,
                             .refuse_oversized = true});
  cluster.start();
  auto client = open_client({m});
  std::promise<wire::Response> big, small;
  client->call({.op = wire::Op::kPut, .key = "big", .value = std::string(5000, 'x')},
               [&](wire::Response r) { big.set_value(std::move(r)); });
  client->call({.op = wire::Op::kPut, .key = "small", .value = "v"},
               [&](wire::Response r) { small.set_value(std::move(r)); });
  wire::Response b = big.get_future().get();
  EXPECT_EQ(b.code, Code::kInvalidArgument) << b.message;
  EXPECT_NE(b.message.find("exceeds the member's limit of 1024"), std::string::npos) << b.message;
  EXPECT_EQ(small.get_future().get().code, Code::kOk);
  // The connection goes on; the next large request is refused before sending.
  EXPECT_EQ(client->put("k", std::string(5000, 'x')).code, Code::kInvalidArgument);
  EXPECT_EQ(client->put("k", "v").code, Code::kOk);
  EXPECT_EQ(cluster.requests_at(m), 2);
}

TEST(ClientTest, APeerThatIsNotAKvcMemberIsNamedAtOnce) {
  const struct {
    const char* name;
    std::string answer;
    const char* want;
  } cases[] = {
      {"http", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "--listen-http"},
      {"other", "SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeCluster cluster;
    std::string m =
        cluster.add(FakeMember{.script = [](const wire::Request&) { return ok_with_revision(1); },
                               .raw_answer = c.answer});
    cluster.start();
    auto client = open_client({m}, 5000);
    const auto t0 = std::chrono::steady_clock::now();
    wire::Response r = client->put("a", "1");
    EXPECT_EQ(r.code, Code::kUnavailable) << r.message;
    EXPECT_NE(r.message.find("is not a kvc member"), std::string::npos) << r.message;
    EXPECT_NE(r.message.find(c.want), std::string::npos) << r.message;
    EXPECT_LT(elapsed_ms(t0), 2500u) << "waited out the timeout for a definite answer";
  }
}

TEST(ClientTest, HostNamesAreResolvedWhenConnecting) {
  FakeCluster cluster;
  std::string m = cluster.add([](const wire::Request&) { return ok_with_revision(4); });
  cluster.start();
  // "localhost" asked of the resolver (parse_address would map it without one): it may give
  // ::1 first, where nothing listens; the client goes on to 127.0.0.1.
  ClientOptions o;
  o.endpoints = {net::Address{.host = "localhost", .port = net::parse_address(m)->port}};
  o.timeout_ms = 3000;
  auto client = std::move(*Client::open(o));
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  EXPECT_EQ(r.revision, 4u);
}

TEST(ClientTest, AnUnresolvableNameFailsAtOnceAsUnavailable) {
  auto client = open_client({"no-such-host.invalid:2379"}, 5000);
  const auto t0 = std::chrono::steady_clock::now();
  wire::Response r = client->put("k", "v");
  EXPECT_EQ(r.code, Code::kUnavailable) << r.message;
  EXPECT_NE(r.message.find("no-such-host.invalid"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("resolve"), std::string::npos) << r.message;
  EXPECT_LT(elapsed_ms(t0), 4000u) << "a name that does not exist is final, not worth retrying";
}

TEST(ClientTest, ParsesEndpointsTheWayOperatorsWriteThem) {
  Result<std::vector<net::Address>> ok =
      parse_endpoints("127.0.0.1:1,http://10.0.0.2:2379/,[::1]:3,db-1.example.com:4");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  ASSERT_EQ(ok->size(), 4u);
  EXPECT_EQ((*ok)[1].to_string(), "10.0.0.2:2379");
  EXPECT_EQ((*ok)[3].host, "db-1.example.com");
  const struct {
    const char* in;
    const char* want;
  } bad[] = {
      {"https://127.0.0.1:2379", "--cacert"},
      {"unix:///tmp/kvc.sock", "unknown scheme"},
      {"127.0.0.1:1,,127.0.0.1:2", "expected HOST:PORT"},
      {"::1:2379", "brackets"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.in);
    Result<std::vector<net::Address>> r = parse_endpoints(b.in);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.want), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace kvc::client
