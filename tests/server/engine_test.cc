// In-process tests of the server: one member's Engine opened in this process on 127.0.0.1,
// driven through its embedded API and through raw client frames, to check what the parts of
// Engine::Impl promise (docs/architecture.md, "The server's parts"): writes are applied in
// order and each watcher sees every revision once; a linearizable read sees every write
// acknowledged before it; the client handshake's stages (client_sessions.cc); watch ids.
#include "kvc/server/engine.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "kvc/client/concurrency.h"
#include "kvc/client/kv.h"
#include "kvc/common/json.h"
#include "kvc/net/address.h"
#include "kvc/server/permissions.h"
#include "kvc/storage/wal.h"
#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"
#include "support/http_stream.h"
#include "support/ports.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "support/watch_seen.h"

namespace kvc::server {
namespace {

using namespace std::chrono_literals;

// Polls `pred` for up to `limit` (support/wait.h); true once it holds.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit,
                std::string_view what = "the condition") {
  Status s = kvc::test::wait_until(pred, limit, what, 5ms);
  if (!s.ok()) ADD_FAILURE() << s.to_string();
  return s.ok();
}

// A blocking client connection speaking raw frames, with a receive timeout so that no test
// waits forever.
class RawConn {
 public:
  explicit RawConn(const std::string& address) {
    Result<net::Address> a = net::parse_address(address);
    if (!a.ok()) return;
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(a->port);
    ::inet_pton(AF_INET, a->host.c_str(), &sa.sin_addr);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // The next frame's payload; nullopt when the member closed the connection (or after 5 s).
  std::optional<std::string> next_frame() {
    for (;;) {
      std::string_view payload;
      bool has = false;
      if (!decoder_.next(&payload, &has).ok()) return std::nullopt;
      if (has) return std::string(payload);
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      decoder_.feed(buf, static_cast<std::size_t>(n));
    }
  }
  // Reads until the member closes the connection (true) or 5 s pass without it (false); any
  // frames on the way are dropped.
  bool closed_by_member() {
    for (;;) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
      if (n < 0) return false;  // the receive timeout
    }
  }
  std::optional<wire::HelloReply> hello_reply() {
    return next_of<wire::HelloReply>(wire::FrameKind::kHelloReply, wire::decode_hello_reply);
  }
  std::optional<wire::Response> response() {
    return next_of<wire::Response>(wire::FrameKind::kResponse, wire::decode_response);
  }
  void hello(const wire::Hello& h = {}) {
    std::string out;
    wire::append_hello(out, h);
    send(out);
  }
  void request(const wire::Request& r) {
    std::string out;
    wire::append_request(out, r);
    send(out);
  }

 private:
  // The next frame, decoded as a T when it is of `kind`; nullopt otherwise or when closed.
  template <typename T>
  std::optional<T> next_of(wire::FrameKind kind, Result<T> (*decode)(const msgpack::object&)) {
    std::optional<std::string> f = next_frame();
    if (!f) return std::nullopt;
    Result<wire::Envelope> env = wire::open_envelope(*f);
    if (!env.ok() || env->kind != kind) return std::nullopt;
    Result<T> r = decode(*env->body);
    return r.ok() ? std::optional<T>(std::move(*r)) : std::nullopt;
  }

  int fd_ = -1;
  wire::FrameDecoder decoder_;
};

class EngineTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> open(const std::string& secret = "", bool http = false) {
    EngineOptions o;
    o.name = "a";
    o.data_dir = dir_.path() + "/a";
    const std::string peer = "127.0.0.1:" + std::to_string(kvc::test::free_port());
    o.listen_peer = peer;
    o.listen_client = "127.0.0.1:" + std::to_string(kvc::test::free_port());
    o.initial_cluster = "a=" + peer;
    o.tick_ms = 10;
    o.secret = secret;
    o.handshake_timeout_ms = handshake_timeout_ms_;
    o.permissions_file = permissions_file_;
    if (http) o.listen_http = "127.0.0.1:0";
    if (adjust_) adjust_(o);
    Result<std::unique_ptr<Engine>> e = Engine::open(o);
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    if (!e.ok()) return nullptr;
    wait_until([&] { return (*e)->is_ready(); }, 10s, "the member to lead and be ready");
    return std::move(*e);
  }
  std::uint64_t handshake_timeout_ms_ = 5000;
  std::string permissions_file_;
  std::function<void(EngineOptions&)> adjust_;  // last changes to the options open() uses
  kvc::test::ScopedTempDir dir_{"kvc-engine-test"};
};

TEST_F(EngineTest, WritesApplyInOrderAndAWatcherSeesEachRevisionOnce) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  std::mutex mu;
  std::vector<WatchEvent> seen;
  Result<std::uint64_t> w = e->watch("/k/", true, 0, [&](const WatchEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(ev);
  });
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  constexpr int kThreads = 4, kEach = 25;
  std::mutex rmu;
  std::map<std::uint64_t, std::string> written;  // revision -> value
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string key = "/k/" + std::to_string(t) + "/" + std::to_string(i);
        Result<std::uint64_t> rev = e->set(key, key + "=v");
        ASSERT_TRUE(rev.ok()) << rev.status().to_string();
        std::lock_guard<std::mutex> lock(rmu);
        EXPECT_TRUE(written.emplace(*rev, key + "=v").second) << "revision given twice";
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(written.size(), static_cast<std::size_t>(kThreads * kEach));
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return seen.size() >= written.size();
      },
      10s, "every write to reach the watcher"));
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(seen.size(), written.size());
  std::uint64_t prev = 0;
  for (const WatchEvent& ev : seen) {
    EXPECT_GT(ev.kv.mod_revision, prev) << "out of order or repeated";
    prev = ev.kv.mod_revision;
    ASSERT_EQ(written.count(ev.kv.mod_revision), 1u);
    EXPECT_EQ(ev.kv.value, written.at(ev.kv.mod_revision));
  }
  e->unwatch(*w);
  EXPECT_TRUE(e->close().ok());
}

// A Ready that only moves the commit index gets no disk write of its own (replica.cc): the
// index rides with the next write of entries, and a clean stop writes the last one. So the log
// of a member stopped cleanly says that everything in it was committed.
TEST_F(EngineTest, TheLastCommitIndexReachesTheLogAtACleanStop) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  for (int i = 0; i < 10; ++i) {
    Result<std::uint64_t> rev = e->set("/c/" + std::to_string(i), "v");
    ASSERT_TRUE(rev.ok()) << rev.status().to_string();
  }
  ASSERT_TRUE(e->close().ok());
  e.reset();
  Result<storage::OpenedWal> w = storage::Wal::open(dir_.path() + "/a/wal");
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  const storage::RecoveredLog& log = w->log;
  ASSERT_TRUE(log.hard_state.has_value());
  ASSERT_TRUE(!log.entries.empty() || log.snapshot.has_value());
  const std::uint64_t last = log.entries.empty() ? log.snapshot->index : log.entries.back().index;
  EXPECT_GE(last, 10u);
  EXPECT_EQ(log.hard_state->commit, last);
}

// A barrier's hash (the periodic hash check, kvc-ctl check hash) scans the whole state. It runs
// on its own thread, beside the flushes, so what is applied meanwhile still reaches LMDB and the
// overlay in memory does not grow for as long as the scan takes (at 10M keys, tens of seconds of
// writes). Here the scan is held at its start while writes go on.
TEST_F(EngineTest, TheStateFlushesGoOnWhileABarrierHashScansTheState) {
  std::mutex mu;
  std::condition_variable cv;
  bool scanning = false, release = false;
  std::atomic<int> flushes{0};
  adjust_ = [&](EngineOptions& o) {
    o.hash_check_interval_ms = 50;
    o.flush_interval_ms = 20;
    o.state_test_hook = [&](std::string_view point) {
      if (point == "flush.after_commit") flushes.fetch_add(1);
      if (point != "hash.scan") return;
      std::unique_lock<std::mutex> lock(mu);
      scanning = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    };
  };
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  struct Release {  // on every way out, before the Engine closes (it waits for the scan)
    std::function<void()> fn;
    ~Release() { fn(); }
  } releaser{[&] {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }};
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return scanning;
      },
      10s, "a barrier hash to start its scan"));
  // Three rounds of writes, each flushed while the scan is still held.
  for (int round = 0; round < 3; ++round) {
    const int before = flushes.load();
    for (int i = 0; i < 5; ++i) {
      Result<std::uint64_t> rev = e->set("/scan/" + std::to_string(round * 5 + i), "v");
      ASSERT_TRUE(rev.ok()) << rev.status().to_string();
    }
    ASSERT_TRUE(wait_until([&] { return flushes.load() > before; }, 10s,
                           "a flush while the barrier's scan is held"));
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_FALSE(release) << "the scan was held throughout";
  }
  releaser.fn();
  EXPECT_TRUE(e->close().ok());
}

TEST_F(EngineTest, ALinearizableReadSeesEveryWriteAcknowledgedBeforeIt) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> checked{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const std::string key = "/r/" + std::to_string(t);
        Result<std::uint64_t> rev = e->set(key, std::to_string(i));
        ASSERT_TRUE(rev.ok());
        Result<std::optional<KeyValue>> got = e->get(key);
        ASSERT_TRUE(got.ok() && got->has_value());
        EXPECT_EQ((*got)->value, std::to_string(i));
        EXPECT_EQ((*got)->mod_revision, *rev);
        ++checked;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(checked.load(), 120);
}

// The client library's typed calls (client::Kv over a Client) are the Engine's: the same
// results and error codes over the network as inside the member.
TEST_F(EngineTest, TheClientLibraryHasTheEnginesTypedCalls) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  client::ClientOptions co;
  co.endpoints = {*net::parse_address(e->client_address())};
  Result<std::unique_ptr<client::Client>> c = client::Client::open(co);
  ASSERT_TRUE(c.ok());
  client::Kv kv(**c);
  Result<LeaseInfo> l = kv.lease_grant(30);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  Result<std::uint64_t> rev = kv.set("/t/a", "1", l->id);
  ASSERT_TRUE(rev.ok()) << rev.status().to_string();
  EXPECT_EQ(kv.set("/t/b", "1", l->id + 1).status().code(), Code::kNotFound);
  ASSERT_TRUE(kv.set("/t/b", "2").ok());
  Result<std::optional<KeyValue>> got = kv.get("/t/a");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->mod_revision, *rev);
  EXPECT_EQ((*got)->lease, l->id);
  EXPECT_EQ(**got, **e->get("/t/a"));  // the same KeyValue either way
  EXPECT_TRUE(*kv.exists("/t/b"));
  EXPECT_FALSE(*kv.exists("/t/c", {.serializable = true}));
  Result<std::vector<KeyValue>> all = kv.list("/t/");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].value, "2");
  EXPECT_EQ(kv.list("/t/", 1)->size(), 1u);
  EXPECT_EQ(kv.lease_ttl(l->id, true)->keys, std::vector<std::string>{"/t/a"});
  EXPECT_EQ(*kv.lease_keep_alive(l->id), 30u);
  ASSERT_EQ(kv.leases()->size(), 1u);

  Txn t;
  t.compares = {{.target = CompareTarget::kModRevision,
                 .op = CompareOp::kEqual,
                 .key = "/t/a",
                 .number = *rev}};
  t.success = {{.type = TxnOpType::kDelete, .key = "/t/b"},
               {.type = TxnOpType::kGetPrefix, .key = "/t/"}};
  t.failure = {{.type = TxnOpType::kGet, .key = "/t/a"}};
  Result<TxnResult> r = kv.txn(t);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->succeeded);
  ASSERT_EQ(r->results.size(), 2u);
  EXPECT_EQ(r->results[0].deleted, 1u);
  ASSERT_EQ(r->results[1].kvs.size(), 1u);  // read after the delete, at the txn's revision
  EXPECT_EQ(r->results[1].kvs[0].key, "/t/a");

  EXPECT_EQ(kv.cas("/t/a", "x", *rev + 100).status().code(), Code::kCompareFailed);
  EXPECT_EQ(kv.del("/t/a", *rev + 100).status().code(), Code::kCompareFailed);
  EXPECT_EQ(*kv.lease_revoke(l->id), 1u);
  EXPECT_FALSE(kv.get("/t/a")->has_value());
  EXPECT_EQ(kv.lease_ttl(l->id).status().code(), Code::kNotFound);
  EXPECT_FALSE(*kv.del("/t/a"));
  c->reset();
  EXPECT_TRUE(e->close().ok());
}

// The embedded API's leases and txns (docs/coordination.md): typed results, a lease that ends
// by revoke and one that expires on the leader's clock, a txn's branches, and a lock taken
// through a client on the member's own address.
TEST_F(EngineTest, LeasesTxnsAndALockThroughTheEmbeddedApi) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  Result<LeaseInfo> l = e->lease_grant(30);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  EXPECT_NE(l->id, 0u);
  EXPECT_EQ(l->ttl_s, 30u);
  ASSERT_TRUE(e->set("/svc/a", "1", l->id).ok());
  EXPECT_EQ(e->set("/svc/b", "1", l->id + 1).status().code(), Code::kNotFound);
  Result<std::optional<KeyValue>> got = e->get("/svc/a");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->lease, l->id);
  Result<LeaseInfo> ttl = e->lease_ttl(l->id, true);
  ASSERT_TRUE(ttl.ok()) << ttl.status().to_string();
  EXPECT_EQ(ttl->keys, std::vector<std::string>{"/svc/a"});
  EXPECT_LE(ttl->remaining_ms, 30000u);
  EXPECT_EQ(*e->lease_keep_alive(l->id), 30u);
  ASSERT_EQ(e->leases()->size(), 1u);

  Txn t;
  t.compares = {
      {.target = CompareTarget::kValue, .op = CompareOp::kEqual, .key = "/svc/a", .value = "1"}};
  t.success = {{.type = TxnOpType::kPut, .key = "/svc/a", .value = "2", .lease = l->id},
               {.type = TxnOpType::kGetPrefix, .key = "/svc/"}};
  t.failure = {{.type = TxnOpType::kGet, .key = "/svc/a"}};
  Result<TxnResult> r = e->txn(t);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->succeeded);
  ASSERT_EQ(r->results.size(), 2u);
  ASSERT_EQ(r->results[1].kvs.size(), 1u);
  EXPECT_EQ(r->results[1].kvs[0].value, "2");
  r = e->txn(t);  // the value is "2" now: the failure list runs
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->succeeded);
  Txn dup;
  dup.success = {{.type = TxnOpType::kPut, .key = "/x", .value = "1"},
                 {.type = TxnOpType::kDelete, .key = "/x"}};
  EXPECT_EQ(e->txn(dup).status().code(), Code::kInvalidArgument);
  // Compare-and-delete.
  EXPECT_EQ(e->del("/svc/a", 1).status().code(), Code::kCompareFailed);
  EXPECT_EQ(*e->lease_revoke(l->id), 1u);
  EXPECT_FALSE(e->get("/svc/a")->has_value());
  EXPECT_EQ(e->lease_keep_alive(l->id).status().code(), Code::kNotFound);

  // Expiry: a lease nobody renews goes (the minimum ttl here, 10 ms ticks, is 1 s).
  Result<LeaseInfo> short_lease = e->lease_grant(1);
  ASSERT_TRUE(short_lease.ok());
  ASSERT_TRUE(e->set("/eph", "x", short_lease->id).ok());
  EXPECT_TRUE(wait_until([&] { return !e->get("/eph")->has_value(); }, 10s, "the lease to expire"));

  // A lock through the client library on the member's own address.
  client::ClientOptions co;
  co.endpoints = {*net::parse_address(e->client_address())};
  Result<std::unique_ptr<client::Client>> c = client::Client::open(co);
  ASSERT_TRUE(c.ok());
  Result<std::unique_ptr<client::Session>> s1 = client::Session::open(**c, {.ttl_s = 5});
  Result<std::unique_ptr<client::Session>> s2 = client::Session::open(**c, {.ttl_s = 5});
  ASSERT_TRUE(s1.ok() && s2.ok());
  client::Mutex m1(**c, **s1, "/locks/x/");
  client::Mutex m2(**c, **s2, "/locks/x/");
  Result<std::uint64_t> t1 = m1.lock(5000);
  ASSERT_TRUE(t1.ok()) << t1.status().to_string();
  EXPECT_EQ(m2.lock(300).status().code(), Code::kTimeout);  // held by m1
  ASSERT_TRUE(m1.unlock().ok());
  Result<std::uint64_t> t2 = m2.lock(5000);
  ASSERT_TRUE(t2.ok()) << t2.status().to_string();
  EXPECT_GT(*t2, *t1);
  // The same recipes inside the member, through its own channel (no client): an election.
  {
    Result<std::unique_ptr<client::Session>> es1 =
        client::Session::open(e->channel(), {.ttl_s = 5});
    Result<std::unique_ptr<client::Session>> es2 =
        client::Session::open(e->channel(), {.ttl_s = 5});
    ASSERT_TRUE(es1.ok() && es2.ok()) << es1.status().to_string();
    client::Election a(e->channel(), **es1, "/el/");
    client::Election b(e->channel(), **es2, "/el/");
    ASSERT_TRUE(a.campaign("node-a", 5000).ok());
    EXPECT_EQ(b.campaign("node-b", 300).status().code(), Code::kTimeout);
    Result<client::Election::Leader> lead = client::Election::leader(e->channel(), "/el/");
    ASSERT_TRUE(lead.ok());
    EXPECT_EQ(lead->proposal, "node-a");
    std::thread resign([&] {
      std::this_thread::sleep_for(200ms);
      (void)a.resign();
    });
    Result<std::uint64_t> rb = b.campaign("node-b", 5000);  // waits on a watch of the member's
    resign.join();
    ASSERT_TRUE(rb.ok()) << rb.status().to_string();
    EXPECT_EQ(client::Election::leader(e->channel(), "/el/")->proposal, "node-b");
  }
  // Closing a session revokes its lease: the lock's key goes with it.
  EXPECT_TRUE((*s2)->close().ok());
  EXPECT_FALSE(e->exists(m2.key()).value_or(true));
  s1->reset();
  s2->reset();
  EXPECT_TRUE(e->close().ok());
}

// Slow-loris: connections on the client and peer ports that send nothing, or half a hello,
// are closed once the handshake deadline passes; one that completed its hello stays.
TEST_F(EngineTest, AConnectionThatCompletesNoHandshakeIsClosedOnBothPorts) {
  handshake_timeout_ms_ = 300;
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  std::string hello;
  wire::append_hello(hello, {});
  RawConn silent(e->client_address());
  RawConn partial(e->client_address());
  RawConn done(e->client_address());
  RawConn peer_silent(e->peer_address());
  RawConn peer_partial(e->peer_address());
  ASSERT_TRUE(silent.ok() && partial.ok() && done.ok() && peer_silent.ok() && peer_partial.ok());
  partial.send(hello.substr(0, hello.size() / 2));
  peer_partial.send(hello.substr(0, 3));
  done.hello();
  ASSERT_TRUE(done.hello_reply().has_value());
  EXPECT_TRUE(silent.closed_by_member());
  EXPECT_TRUE(partial.closed_by_member());
  EXPECT_TRUE(peer_silent.closed_by_member());
  EXPECT_TRUE(peer_partial.closed_by_member());
  // Well past the deadline, the connection that completed its hello is still served.
  done.request({.id = 7, .op = wire::Op::kPut, .key = "/x", .value = "1"});
  std::optional<wire::Response> r = done.response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, Code::kOk);
}

TEST_F(EngineTest, NothingButAHelloIsHandledFirst) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.request({.id = 1, .op = wire::Op::kPut, .key = "/x", .value = "1"});
  EXPECT_FALSE(c.response().has_value()) << "a request before the hello was answered";
  Result<std::optional<KeyValue>> got = e->get("/x");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value()) << "a request before the hello was applied";
}

TEST_F(EngineTest, AfterTheHelloRequestsAreAnsweredByTheirIds) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.hello();
  std::optional<wire::HelloReply> hr = c.hello_reply();
  ASSERT_TRUE(hr.has_value());
  EXPECT_EQ(hr->code, Code::kOk);
  EXPECT_EQ(hr->member_id, e->id());
  c.request({.id = 41, .op = wire::Op::kPut, .key = "/x", .value = "1"});
  std::optional<wire::Response> r = c.response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id, 41u);
  EXPECT_EQ(r->code, Code::kOk);
  // An operation the table does not know on this connection is refused, not dropped.
  c.request({.id = 42, .op = static_cast<wire::Op>(250), .key = "/x"});
  r = c.response();
  if (r.has_value()) {  // an unknown op may also fail to decode: then the link closes
    EXPECT_EQ(r->id, 42u);
    EXPECT_NE(r->code, Code::kOk);
  }
}

TEST_F(EngineTest, WithASecretPlaintextIsRefusedAndNothingApplied) {
  // The secret is a TLS pre-shared key: a plaintext hello and request get a TLS alert (no kvc
  // frame) and a closed connection.
  const std::string secret = "0b7e2d5a8c1f4e7b0a3d6c9f2e5b8a1d4c7f0e3b6a9d2c5f8e1b4a7d0c3f6e9b";
  std::unique_ptr<Engine> e = open(secret);
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.hello();
  c.request({.id = 1, .op = wire::Op::kPut, .key = "/x", .value = "1"});
  EXPECT_FALSE(c.next_frame().has_value());
  Result<std::optional<KeyValue>> got = e->get("/x");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

// The leader's guard for forwarded requests (docs/security.md, "Who checks what"): a member's
// connection (the secret, no token) may name the caller, whose identity is then checked; any
// other connection that tries is refused; the embedding program is never checked.
TEST_F(EngineTest, OnBehalfOfIsHonouredOnlyFromAMembersConnection) {
  const std::string secret = "0b7e2d5a8c1f4e7b0a3d6c9f2e5b8a1d4c7f0e3b6a9d2c5f8e1b4a7d0c3f6e9b";
  permissions_file_ = dir_.path() + "/perms";
  {
    std::ofstream out(permissions_file_);
    out << "token ctl " << token_digest("ctl-token") << "\n"
        << "grant ctl readwrite /a/\n";
  }
  std::unique_ptr<Engine> e = open(secret);
  ASSERT_NE(e, nullptr);
  auto connect = [&](const std::string& token) {
    client::ClientOptions co;
    co.endpoints = {*net::parse_address(e->client_address())};
    co.secret = secret;
    co.token = token;
    Result<std::unique_ptr<client::Client>> c = client::Client::open(co);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(*c) : nullptr;
  };
  std::unique_ptr<client::Client> member = connect("");
  ASSERT_NE(member, nullptr);
  wire::Response r =
      member->call_sync({.op = wire::Op::kPut, .key = "/a/x", .value = "1", .on_behalf_of = "ctl"});
  EXPECT_EQ(r.code, Code::kOk) << r.message;
  r = member->call_sync({.op = wire::Op::kPut, .key = "/b", .value = "1", .on_behalf_of = "ctl"});
  EXPECT_EQ(r.code, Code::kPermissionDenied);
  EXPECT_EQ(r.message, "permission denied: ctl may not put /b");
  r = member->call_sync({.op = wire::Op::kPut, .key = "/b", .value = "1"});
  EXPECT_EQ(r.message, "permission denied: secret may not put /b");

  std::unique_ptr<client::Client> ctl = connect("ctl-token");
  ASSERT_NE(ctl, nullptr);
  r = ctl->call_sync(
      {.op = wire::Op::kPut, .key = "/b", .value = "1", .on_behalf_of = std::string("embedded")});
  EXPECT_EQ(r.code, Code::kPermissionDenied);
  EXPECT_NE(r.message.find("permission denied: ctl may not act on behalf of embedded"),
            std::string::npos)
      << r.message;
  EXPECT_FALSE(e->get("/b")->has_value());     // nothing applied
  EXPECT_TRUE(e->set("/b", "embedded").ok());  // the embedding program is not checked
  r = ctl->call_sync({.op = wire::Op::kWhoami});
  EXPECT_EQ(r.identity, "ctl");
  EXPECT_EQ(r.grants, std::vector<std::string>{"readwrite \"/a/\""});
}

// A permissions reload that takes away a read grant ends the identity's open watches on the
// client port (a final permission_denied answer) and over HTTP (an error line ends the stream)
// in the same loop turn as the swap, so nothing written after the reload reaches them; a watch
// the new file still allows, and the embedding program's, go on.
TEST_F(EngineTest, APermissionsReloadEndsTheWatchesItNoLongerAllows) {
  const std::string secret = "4c7f0e3b6a9d2c5f8e1b4a7d0c3f6e9b0b7e2d5a8c1f4e7b0a3d6c9f2e5b8a1d";
  permissions_file_ = dir_.path() + "/perms";
  auto write_perms = [&](bool ro_may_read) {
    std::ofstream out(permissions_file_);
    out << "token ro " << token_digest("ro-token") << "\n"
        << "token ctl " << token_digest("ctl-token") << "\n"
        << "grant ctl readwrite /a/\n";
    if (ro_may_read) out << "grant ro read /a/\n";
  };
  write_perms(true);
  std::unique_ptr<Engine> e = open(secret, /*http=*/true);
  ASSERT_NE(e, nullptr);
  using Seen = kvc::test::WatchSeen;
  std::vector<std::unique_ptr<client::Client>> clients;
  // Each client's watches of one prefix share their responses (one group): the reload ends
  // each watch of the group.
  auto watch = [&](const std::string& token, std::vector<Seen*> seens) {
    client::ClientOptions co;
    co.endpoints = {*net::parse_address(e->client_address())};
    co.secret = secret;
    co.token = token;
    Result<std::unique_ptr<client::Client>> c = client::Client::open(co);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    for (Seen* seen : seens) {
      (*c)->stream({.op = wire::Op::kWatch, .key = "/a/", .prefix = true}, seen->recorder());
    }
    clients.push_back(std::move(*c));
  };
  auto keys = [](Seen& seen) { return seen.keys_so_far(); };
  Seen ro, ro2, ctl;
  watch("ro-token", {&ro, &ro2});
  watch("ctl-token", {&ctl});
  for (Seen* seen : {&ro, &ro2, &ctl}) {
    ASSERT_TRUE(wait_until(
        [seen] {
          std::lock_guard<std::mutex> lock(seen->mu);
          return seen->started;
        },
        10s, "the watch to start"));
  }
  std::mutex emu;
  std::vector<std::string> embedded;
  ASSERT_TRUE(e->watch("/a/", true, 0, [&](const WatchEvent& ev) {
                 std::lock_guard<std::mutex> lock(emu);
                 embedded.push_back(ev.kv.key);
               }).ok());
  kvc::test::HttpStream http(e->http_address(), "/v1/watch/%2Fa%2F?prefix=true",
                             {"Authorization: Bearer ro-token"});
  ASSERT_TRUE(http.head_read());
  ASSERT_EQ(http.status(), 200) << http.head();

  ASSERT_TRUE(e->set("/a/1", "x").ok());
  const std::vector<std::string> one = {"/a/1"};
  ASSERT_TRUE(wait_until([&] { return keys(ro) == one && keys(ro2) == one && keys(ctl) == one; },
                         10s, "the watches to see /a/1"));
  ASSERT_TRUE(http.read_until([](const std::string& b) {
    return b.find(R"("key":"/a/1")") != std::string::npos;
  })) << http.body();

  write_perms(false);
  ASSERT_TRUE(e->reload_permissions().ok());
  // Ended in the reload's own loop turn: by now the answer is on its way.
  for (Seen* seen : {&ro, &ro2}) {
    ASSERT_TRUE(wait_until(
        [&] {
          std::lock_guard<std::mutex> lock(seen->mu);
          return !seen->finals.empty();
        },
        10s, "ro's watches to end"));
    std::lock_guard<std::mutex> lock(seen->mu);
    ASSERT_EQ(seen->finals.size(), 1u);
    EXPECT_EQ(seen->finals[0].code, Code::kPermissionDenied);
    EXPECT_EQ(seen->finals[0].message, "permission denied: ro may not watch prefix /a/");
  }
  ASSERT_TRUE(http.read_until([](const std::string& b) {
    return b.find(R"({"error":{"code":"permission_denied","message":"permission denied: ro may )"
                  R"(not watch prefix /a/"}})") != std::string::npos;
  })) << http.body();

  ASSERT_TRUE(e->set("/a/2", "y").ok());
  const std::vector<std::string> both = {"/a/1", "/a/2"};
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(emu);
        return keys(ctl) == both && embedded == both;
      },
      10s, "ctl's and the embedded watch to see /a/2"));
  EXPECT_EQ(keys(ro), one);
  EXPECT_EQ(keys(ro2), one);
  (void)http.read_until([](const std::string&) { return false; }, 200ms);
  EXPECT_EQ(http.body().find("/a/2"), std::string::npos) << http.body();
  std::lock_guard<std::mutex> lock(ctl.mu);
  EXPECT_TRUE(ctl.finals.empty());
}

TEST_F(EngineTest, AWeakSecretIsRefusedAtOpen) {
  EngineOptions o;
  o.name = "a";
  o.data_dir = dir_.path() + "/weak";
  o.listen_peer = "127.0.0.1:0";
  o.initial_cluster = "a=127.0.0.1:1";
  o.secret = std::string(64, 'a');
  Result<std::unique_ptr<Engine>> e = Engine::open(o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("the shared secret is too weak"), std::string::npos)
      << e.status().to_string();
}

TEST_F(EngineTest, AWatchIsNamedByItsRequestIdAndEndsWithDoneWhenCancelled) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.hello();
  ASSERT_TRUE(c.hello_reply().has_value());
  c.request({.id = 7, .op = wire::Op::kWatch, .key = "/w/a"});
  c.request({.id = 9, .op = wire::Op::kWatch, .key = "/w/b"});
  // Each watch answers once that it started (a response without events).
  std::set<std::uint64_t> started;
  for (int i = 0; i < 2; ++i) {
    std::optional<wire::Response> r = c.response();
    ASSERT_TRUE(r.has_value());
    started.insert(r->watch_id);
  }
  EXPECT_EQ(started, (std::set<std::uint64_t>{7, 9}));
  ASSERT_TRUE(e->set("/w/a", "1").ok());
  std::optional<wire::Response> r = c.response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->watch_id, 7u);
  ASSERT_EQ(r->events.size(), 1u);
  EXPECT_EQ(r->events[0].kv.key, "/w/a");
  c.request({.id = 10, .op = wire::Op::kWatchCancel, .watch_id = 7});
  r = c.response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->watch_id, 7u);
  EXPECT_TRUE(r->done);
  // Only the other watch hears of later writes.
  ASSERT_TRUE(e->set("/w/a", "2").ok());
  ASSERT_TRUE(e->set("/w/b", "1").ok());
  r = c.response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->watch_id, 9u);
  ASSERT_EQ(r->events.size(), 1u);
  EXPECT_EQ(r->events[0].kv.key, "/w/b");
}

// A gauge's value from the member's /metrics (-1 when it is missing).
double scrape_gauge(Engine& e, const std::string& name) {
  kvc::test::HttpStream m(e.http_address(), "/metrics");
  const std::string line = "\n" + name + " ";
  m.read_until([&](const std::string& b) { return b.find(line) != std::string::npos; }, 5s);
  const std::size_t at = m.body().find(line);
  return at == std::string::npos ? -1 : std::atof(m.body().c_str() + at + line.size());
}

// Shared watch responses (kvc-node(1), "WIRE PROTOCOL"): a client that says so in its hello
// gets one response per batch for the watches of one connection with the same key and options
// at the same position. Each acknowledgement names the watch's group; a watch that starts
// elsewhere (another key, other options, a past revision) gets a group of its own, which later
// watches may join once it is where they start; a cancel ends one watch of a group, the group
// goes on (under its first watch's name) until its last watch ends.
TEST_F(EngineTest, WatchesThatSeeTheSameEventsShareOneResponsePerBatch) {
  std::unique_ptr<Engine> e = open("", /*http=*/true);
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.hello({.shared_watches = true});
  ASSERT_TRUE(c.hello_reply().has_value());
  auto watch = [&](wire::Request r) {
    r.op = wire::Op::kWatch;
    c.request(r);
    std::optional<wire::Response> ack = c.response();
    EXPECT_TRUE(ack.has_value());
    if (!ack) return std::uint64_t{0};
    EXPECT_EQ(ack->code, Code::kOk) << ack->message;
    EXPECT_EQ(ack->watch_id, r.id);
    EXPECT_TRUE(ack->events.empty());
    EXPECT_FALSE(ack->group_events);
    return ack->watch_group;
  };
  // Cancels watch `id`: its own final response, done, for it alone.
  std::uint64_t next_id = 100;
  auto cancel = [&](std::uint64_t id) {
    c.request({.id = next_id++, .op = wire::Op::kWatchCancel, .watch_id = id});
    std::optional<wire::Response> done = c.response();
    ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->watch_id, id);
    EXPECT_TRUE(done->done);
    EXPECT_FALSE(done->group_events);
  };
  EXPECT_EQ(watch({.id = 1, .key = "/g/", .prefix = true}), 1u);
  EXPECT_EQ(watch({.id = 2, .key = "/g/", .prefix = true}), 1u);
  EXPECT_EQ(watch({.id = 3, .key = "/g/", .prefix = true}), 1u);
  EXPECT_EQ(watch({.id = 4, .key = "/h/", .prefix = true}), 4u);                   // another key
  EXPECT_EQ(watch({.id = 5, .key = "/g/", .prefix = true, .prev_kv = true}), 5u);  // options
  EXPECT_EQ(watch({.id = 6, .key = "/g/"}), 6u);  // the key itself, not the prefix
  EXPECT_EQ(scrape_gauge(*e, "kvc_watchers"), 6.0);
  EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), 4.0);

  // One response for group 1, one for group 5 (with the previous value), none for 4 and 6.
  Result<std::uint64_t> r1 = e->set("/g/x", "1");
  ASSERT_TRUE(r1.ok());
  std::map<std::uint64_t, wire::Response> got;
  for (int i = 0; i < 2; ++i) {
    std::optional<wire::Response> r = c.response();
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(r->group_events);
    EXPECT_EQ(r->id, r->watch_group);
    EXPECT_EQ(r->watch_id, r->watch_group);
    got[r->watch_group] = *r;
  }
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(got[1].events.size(), 1u);
  EXPECT_EQ(got[1].events[0].kv.key, "/g/x");
  EXPECT_EQ(got[1].events[0].kv.mod_revision, *r1);
  EXPECT_TRUE(got[1].prev_kvs.empty());
  ASSERT_EQ(got[5].events.size(), 1u);
  ASSERT_EQ(got[5].prev_kvs.size(), 1u);
  EXPECT_EQ(got[5].prev_kvs[0].mod_revision, 0u);  // /g/x did not exist before

  // Cancelling one watch of the group ends only that one; cancelling the watch whose id names
  // the group does not end the group.
  cancel(2);
  cancel(1);
  EXPECT_EQ(scrape_gauge(*e, "kvc_watchers"), 4.0);
  EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), 4.0);
  cancel(5);
  std::optional<wire::Response> r;
  ASSERT_TRUE(e->set("/h/y", "2").ok());
  Result<std::uint64_t> r3 = e->set("/g/z", "3");
  ASSERT_TRUE(r3.ok());
  got.clear();
  for (int i = 0; i < 2; ++i) {
    r = c.response();
    ASSERT_TRUE(r.has_value());
    got[r->watch_group] = *r;
  }
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(got[4].events.size(), 1u);
  EXPECT_EQ(got[4].events[0].kv.key, "/h/y");
  ASSERT_EQ(got[1].events.size(), 1u);  // watch 3 is all that is left of group 1
  EXPECT_EQ(got[1].events[0].kv.key, "/g/z");

  // A watch from a past revision starts behind: a group of its own, served from the history.
  EXPECT_EQ(watch({.id = 7, .key = "/g/", .prefix = true, .start_revision = *r1}), 7u);
  std::vector<std::string> keys;
  while (keys.size() < 2) {
    r = c.response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->watch_group, 7u);
    for (const wire::Event& ev : r->events) keys.push_back(ev.kv.key);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"/g/x", "/g/z"}));
  // Caught up, it is where a watch from now starts: the next one joins it (the newest group
  // of that key and options).
  EXPECT_EQ(watch({.id = 8, .key = "/g/", .prefix = true}), 7u);
  ASSERT_TRUE(e->set("/g/w", "4").ok());
  std::set<std::uint64_t> groups;
  for (int i = 0; i < 2; ++i) {
    r = c.response();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->events.size(), 1u);
    EXPECT_EQ(r->events[0].kv.key, "/g/w");
    groups.insert(r->watch_group);
  }
  EXPECT_EQ(groups, (std::set<std::uint64_t>{1, 7}));
  EXPECT_EQ(scrape_gauge(*e, "kvc_watchers"), 5.0);  // 3, 4, 6, 7, 8
  EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), 4.0);

  // The group's last watch ends it.
  cancel(3);
  EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), 3.0);
}

// Through the client library, shared or not: every watch of a prefix gets every event once
// and in order under its own id, and a watch whose callback says stop gets nothing more while
// the others go on. Shared, the member serves the connection's watches as one group.
TEST_F(EngineTest, EveryWatchOfAClientGetsEveryEventWhetherOrNotTheyShareResponses) {
  std::unique_ptr<Engine> e = open("", /*http=*/true);
  ASSERT_NE(e, nullptr);
  for (const bool shared : {true, false}) {
    SCOPED_TRACE(shared ? "shared" : "one response per watch");
    const std::string prefix = shared ? "/fs/" : "/fo/";
    client::ClientOptions co;
    co.endpoints = {*net::parse_address(e->client_address())};
    co.shared_watches = shared;
    Result<std::unique_ptr<client::Client>> c = client::Client::open(co);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    constexpr std::size_t kWatches = 20;
    constexpr std::size_t kKeeps = 10;  // watches 0-9 never stop; watch i >= 10 stops after
                                        // 2 * (i - 9) events
    struct Seen {
      std::uint64_t id = 0;
      std::vector<std::string> keys;
      bool started = false;
      bool stopped = false;
      bool called_after_stop = false;
      std::vector<std::uint64_t> ids;  // the id each call carried
    };
    std::mutex mu;
    std::vector<Seen> seen(kWatches);
    for (std::size_t i = 0; i < kWatches; ++i) {
      seen[i].id = (*c)->stream({.op = wire::Op::kWatch, .key = prefix, .prefix = true},
                                [&, i](const wire::Response& r) {
                                  std::lock_guard<std::mutex> lock(mu);
                                  Seen& s = seen[i];
                                  if (s.stopped) s.called_after_stop = true;
                                  s.started = true;
                                  s.ids.push_back(r.watch_id);
                                  for (const wire::Event& ev : r.events)
                                    s.keys.push_back(ev.kv.key);
                                  if (i >= kKeeps && s.keys.size() >= 2 * (i - kKeeps + 1))
                                    s.stopped = true;
                                  return !s.stopped;
                                });
    }
    ASSERT_TRUE(wait_until(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return std::all_of(seen.begin(), seen.end(), [](const Seen& s) { return s.started; });
        },
        10s, "every watch to start"));
    EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), shared ? 1.0 : double(kWatches));
    std::vector<std::string> written;
    for (int k = 0; k < 30; ++k) {
      written.push_back(prefix + std::to_string(100 + k));
      ASSERT_TRUE(e->set(written.back(), "v").ok());
    }
    ASSERT_TRUE(wait_until(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          for (std::size_t i = 0; i < kKeeps; ++i) {
            if (seen[i].keys.size() < written.size()) return false;
          }
          return true;
        },
        10s, "the watches to see every write"));
    // The stopped watches were cancelled: the member serves the ten left.
    ASSERT_TRUE(wait_until([&] { return scrape_gauge(*e, "kvc_watchers") == double(kKeeps); }, 10s,
                           "the stopped watches to be cancelled"));
    EXPECT_EQ(scrape_gauge(*e, "kvc_watch_groups"), shared ? 1.0 : double(kKeeps));
    std::lock_guard<std::mutex> lock(mu);
    for (std::size_t i = 0; i < kWatches; ++i) {
      const Seen& s = seen[i];
      for (std::uint64_t id : s.ids) EXPECT_EQ(id, s.id) << "watch " << i;
      EXPECT_FALSE(s.called_after_stop) << "watch " << i;
      if (i < kKeeps) {
        EXPECT_EQ(s.keys, written) << "watch " << i;
      } else {
        const std::size_t want = 2 * (i - kKeeps + 1);
        ASSERT_GE(s.keys.size(), want) << "watch " << i;
        EXPECT_TRUE(std::equal(s.keys.begin(), s.keys.end(), written.begin())) << "watch " << i;
      }
    }
    // Kept open until here: the next round's client is a new connection.
    for (std::size_t i = 0; i < kKeeps; ++i) (*c)->cancel(seen[i].id);
    ASSERT_TRUE(wait_until([&] { return scrape_gauge(*e, "kvc_watchers") == 0.0; }, 10s,
                           "the watches to be cancelled"));
  }
}

// A client that stops reading its watch stream is not sent more than a bounded backlog: its
// watchers wait at their positions (watch_hub.cc, kWatchOutputLimit) and the tick retries
// them. Once it reads again, every write arrives on each of its watches exactly once, in order.
TEST_F(EngineTest, AWatchClientThatStopsReadingGetsEveryEventOnceItReadsAgain) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  RawConn c(e->client_address());
  ASSERT_TRUE(c.ok());
  c.hello();
  ASSERT_TRUE(c.hello_reply().has_value());
  constexpr int kWatches = 8;
  for (int i = 1; i <= kWatches; ++i) {
    c.request({.id = static_cast<std::uint64_t>(i),
               .op = wire::Op::kWatch,
               .key = "/s/",
               .prefix = true});
  }
  for (int i = 0; i < kWatches; ++i) ASSERT_TRUE(c.response().has_value());
  // 160 writes of 32 KiB each, 8 times over: 40 MiB of events, far more than the backlog and
  // the sockets' buffers hold, while the client reads nothing.
  std::mutex rmu;
  std::vector<std::uint64_t> written;
  std::vector<std::thread> threads;
  const std::string value(32 << 10, 'x');
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        Result<std::uint64_t> rev =
            e->set("/s/" + std::to_string(t) + "/" + std::to_string(i), value);
        ASSERT_TRUE(rev.ok()) << rev.status().to_string();
        std::lock_guard<std::mutex> lock(rmu);
        written.push_back(*rev);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(written.size(), 160u);
  std::sort(written.begin(), written.end());
  ASSERT_TRUE(e->get("/s/0/0", {.serializable = true}).ok());
  std::map<std::uint64_t, std::vector<std::uint64_t>> seen;  // watch id -> revisions
  std::size_t total = 0;
  while (total < written.size() * kWatches) {
    std::optional<wire::Response> r = c.response();
    ASSERT_TRUE(r.has_value()) << "the stream ended after " << total << " events";
    for (const wire::Event& ev : r->events) {
      ASSERT_EQ(ev.kv.value.size(), value.size());
      seen[r->watch_id].push_back(ev.kv.mod_revision);
      ++total;
    }
  }
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kWatches));
  for (const auto& [id, revs] : seen) EXPECT_EQ(revs, written) << "watch " << id;
}

// Every watcher can learn what an event replaced: an embedded callback always gets it
// (WatchEvent::prev_kv), an HTTP stream with prev_kv=true; a delete's is the whole key.
TEST_F(EngineTest, WatchersLearnWhatEachEventReplacedEmbeddedAndOverHttp) {
  std::unique_ptr<Engine> e = open("", /*http=*/true);
  ASSERT_NE(e, nullptr);
  Result<std::uint64_t> first = e->set("/p", "one");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(e->set("/p", "two").ok());
  ASSERT_TRUE(e->del("/p").ok());
  std::mutex mu;
  std::vector<WatchEvent> seen;
  Result<std::uint64_t> w = e->watch("/p", false, *first, [&](const WatchEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(ev);
  });
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return seen.size() >= 3;
      },
      10s, "the three events"));
  e->unwatch(*w);
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_FALSE(seen[0].prev_kv.has_value());  // the key was new
    ASSERT_TRUE(seen[1].prev_kv.has_value());
    EXPECT_EQ(seen[1].prev_kv->value, "one");
    EXPECT_EQ(seen[1].prev_kv->mod_revision, *first);
    EXPECT_EQ(seen[2].type, WatchEvent::Type::kDelete);
    ASSERT_TRUE(seen[2].prev_kv.has_value());
    EXPECT_EQ(seen[2].prev_kv->value, "two");
    EXPECT_EQ(seen[2].prev_kv->create_revision, *first);
    EXPECT_EQ(seen[2].prev_kv->version, 2u);
  }

  kvc::test::HttpStream s(e->http_address(),
                          "/v1/watch/%2Fp?prev_kv=true&start_revision=" + std::to_string(*first));
  ASSERT_TRUE(s.head_read());
  ASSERT_EQ(s.status(), 200) << s.head();
  ASSERT_TRUE(s.read_until([](const std::string& b) {
    return std::count(b.begin(), b.end(), '\n') >= 3;
  })) << s.body();
  std::vector<JsonValue> msgs;
  std::size_t at = 0;
  for (std::size_t nl; (nl = s.body().find('\n', at)) != std::string::npos; at = nl + 1) {
    Result<JsonValue> v = parse_json(std::string_view(s.body()).substr(at, nl - at));
    ASSERT_TRUE(v.ok()) << s.body();
    msgs.push_back(std::move(*v));
  }
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].find("events")->array.at(0).find("prev_kv"), nullptr);
  const JsonValue* p = msgs[2].find("events")->array.at(0).find("prev_kv");
  ASSERT_NE(p, nullptr) << s.body();
  EXPECT_EQ(p->find("value")->text, "two");
  EXPECT_EQ(p->find("create_revision")->as_uint64(), *first);
  EXPECT_EQ(p->find("mod_revision")->as_uint64(), *first + 1);
  EXPECT_EQ(p->find("version")->as_uint64(), 2u);
  EXPECT_TRUE(e->close().ok());
}

// The same for a watch over HTTP (http_backend.cc): a reader that stops reading pauses its
// watcher (the stream's unsent bytes past 4 MiB, as a client connection's), and once it reads
// again it gets every event once and in order; closing the connection drops the watcher.
TEST_F(EngineTest, AnHttpWatchThatStopsReadingGetsEveryEventOnceItReadsAgain) {
  std::unique_ptr<Engine> e = open("", /*http=*/true);
  ASSERT_NE(e, nullptr);
  ASSERT_FALSE(e->http_address().empty());
  auto s = std::make_unique<kvc::test::HttpStream>(
      e->http_address(), "/v1/watch/%2Fs%2F?prefix=true", std::vector<std::string>{}, 64 << 10);
  ASSERT_TRUE(s->connected());
  ASSERT_TRUE(s->head_read());
  ASSERT_EQ(s->status(), 200) << s->head();
  // 160 writes of 64 KiB while the reader reads nothing: 10 MiB of events, more than the
  // backlog and the sockets' buffers hold.
  std::mutex rmu;
  std::vector<std::uint64_t> written;
  std::vector<std::thread> threads;
  const std::string value(64 << 10, 'x');
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        Result<std::uint64_t> rev =
            e->set("/s/" + std::to_string(t) + "/" + std::to_string(i), value);
        ASSERT_TRUE(rev.ok()) << rev.status().to_string();
        std::lock_guard<std::mutex> lock(rmu);
        written.push_back(*rev);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(written.size(), 160u);
  std::sort(written.begin(), written.end());
  // Now read: one JSON line per revision, each with its one event.
  std::vector<std::uint64_t> seen;
  std::size_t parsed = 0;  // bytes of the body already parsed
  auto parse = [&](const std::string& body) {
    for (std::size_t nl; (nl = body.find('\n', parsed)) != std::string::npos; parsed = nl + 1) {
      if (nl == parsed) continue;  // a keep-alive
      Result<JsonValue> v = parse_json(std::string_view(body).substr(parsed, nl - parsed));
      if (!v.ok() || v->find("events") == nullptr) {
        ADD_FAILURE() << "not a watch message: " << body.substr(parsed, 200);
        return true;
      }
      for (const JsonValue& ev : v->find("events")->array) {
        EXPECT_EQ(ev.find("value")->text.size(), value.size());
        seen.push_back(ev.find("mod_revision")->as_uint64().value_or(0));
      }
    }
    return seen.size() >= written.size();
  };
  ASSERT_TRUE(s->read_until(parse, 60s)) << "got " << seen.size() << " events; body "
                                         << s->body().size() << " bytes, ended " << s->ended();
  EXPECT_EQ(seen, written);
  EXPECT_FALSE(s->ended());
  s.reset();  // the client closes: the member drops the watcher
  const std::string metrics_path = "/metrics";
  auto watchers = [&] {
    kvc::test::HttpStream m(e->http_address(), metrics_path);
    m.read_until(
        [](const std::string& b) { return b.find("\nkvc_watchers ") != std::string::npos; }, 5s);
    const std::size_t at = m.body().find("\nkvc_watchers ");
    return at == std::string::npos ? -1 : std::atoi(m.body().c_str() + at + 14);
  };
  EXPECT_TRUE(wait_until([&] { return watchers() == 0; }, 10s, "the watcher to be dropped"));
  // The member stops with a stream open: the stream ends (the server closes the connection).
  kvc::test::HttpStream open_at_stop(e->http_address(), "/v1/watch/%2Fs%2F?prefix=true");
  ASSERT_TRUE(open_at_stop.head_read());
  ASSERT_EQ(open_at_stop.status(), 200);
  e.reset();
  open_at_stop.read_until([](const std::string&) { return false; }, 5s);
  EXPECT_TRUE(open_at_stop.ended());
}

// Once the writes stop, the member gives back the memory its flushed writes held (a heap trim),
// and the state file is mapped into its page tables ahead of reads (StateMachine::map_in).
TEST_F(EngineTest, TheHeapIsTrimmedOnceTheWritesStopAndTheStateFileIsMappedIn) {
  std::unique_ptr<Engine> e = open("", true);
  ASSERT_NE(e, nullptr);
  auto metric = [&](const std::string& name) {
    kvc::test::HttpStream m(e->http_address(), "/metrics");
    const std::string line = "\n" + name + " ";
    m.read_until([&](const std::string& b) { return b.find(line) != std::string::npos; }, 5s);
    const std::size_t at = m.body().find(line);
    return at == std::string::npos ? -1.0 : std::atof(m.body().c_str() + at + line.size());
  };
  EXPECT_EQ(metric("kvc_heap_trims_total"), 0);
  // About 22 MiB of values from 8 writers: more than the 16 MiB of flushed writes after which an
  // idle member trims.
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 700; ++i) {
        Result<std::uint64_t> rev =
            e->set("/t/" + std::to_string(t) + "/" + std::to_string(i), std::string(4096, 'v'));
        ASSERT_TRUE(rev.ok()) << rev.status().to_string();
      }
    });
  }
  for (std::thread& w : writers) w.join();
  EXPECT_TRUE(wait_until([&] { return metric("kvc_heap_trims_total") >= 1; }, 20s,
                         "a heap trim after the writes stopped"));
  EXPECT_GE(metric("kvc_heap_trim_released_bytes"), 1 << 20);
  EXPECT_TRUE(wait_until([&] { return metric("kvc_state_mapped_bytes") >= 22 << 20; }, 20s,
                         "the state file mapped in"));
  // Idle from here on: none of the next three flush ticks (where a trim is decided) trims again.
  const double trims = metric("kvc_heap_trims_total");
  const double ticks = metric("kvc_flush_ticks_total");
  ASSERT_GE(ticks, 0.0);
  EXPECT_TRUE(wait_until([&] { return metric("kvc_flush_ticks_total") >= ticks + 3; }, 20s,
                         "three more flush ticks"));
  EXPECT_EQ(metric("kvc_heap_trims_total"), trims);
}

// A watcher from an old revision reads the history itself, a page at a time, and then joins the
// shared feed that watchers from "now" take their events from (watch_hub.cc): across the
// switch, and for a watcher of one key among other keys' writes, every matching write arrives
// exactly once and in order.
TEST_F(EngineTest, AWatcherFromTheHistoryJoinsTheSharedFeedWithoutGapOrRepeat) {
  std::unique_ptr<Engine> e = open();
  ASSERT_NE(e, nullptr);
  std::mutex rmu;
  std::map<std::uint64_t, std::string> written;  // revision -> key, writes under /h/ only
  // Writes from 4 threads, half under /h/ and half elsewhere, 10 keys each.
  auto write = [&](int each) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < each; ++i) {
          const std::string key =
              (i % 2 ? "/o/" : "/h/") + std::to_string(t) + "/" + std::to_string(i % 20);
          Result<std::uint64_t> rev = e->set(key, "v");
          ASSERT_TRUE(rev.ok()) << rev.status().to_string();
          std::lock_guard<std::mutex> lock(rmu);
          if (key.starts_with("/h/")) written.emplace(*rev, key);
        }
      });
    }
    for (std::thread& t : threads) t.join();
  };
  write(600);  // 1,200 events under /h/: more than one history page (1,000)
  std::mutex mu;
  std::vector<WatchEvent> from_start, from_now, one_key;
  auto into = [&mu](std::vector<WatchEvent>& v) {
    return [&mu, &v](const WatchEvent& ev) {
      std::lock_guard<std::mutex> lock(mu);
      v.push_back(ev);
    };
  };
  Result<std::uint64_t> a = e->watch("/h/", true, 1, into(from_start));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  Result<std::uint64_t> b = e->watch("/h/", true, 0, into(from_now));
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  Result<std::uint64_t> c = e->watch("/h/2/4", false, 1, into(one_key));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  std::uint64_t before_second = 0;
  {
    std::lock_guard<std::mutex> lock(rmu);
    before_second = written.rbegin()->first;
  }
  write(200);
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return from_start.size() >= written.size();
      },
      10s, "every write to reach the watcher from revision 1"));
  // A read answered by the loop after the writes' deliveries lets a (wrong) extra one show.
  ASSERT_TRUE(e->get("/h/0/0", {.serializable = true}).ok());
  std::lock_guard<std::mutex> lock(mu);
  std::vector<std::uint64_t> all;
  for (const auto& [rev, key] : written) all.push_back(rev);
  auto revisions = [](const std::vector<WatchEvent>& v) {
    std::vector<std::uint64_t> r;
    for (const WatchEvent& ev : v) r.push_back(ev.kv.mod_revision);
    return r;
  };
  EXPECT_EQ(revisions(from_start), all);
  // From "now": a suffix of every write, holding at least those made after the watch began.
  const std::vector<std::uint64_t> now = revisions(from_now);
  ASSERT_FALSE(now.empty());
  EXPECT_GT(now.front(), before_second);
  const std::vector<std::uint64_t> suffix(std::lower_bound(all.begin(), all.end(), now.front()),
                                          all.end());
  EXPECT_EQ(now, suffix);
  std::vector<std::uint64_t> of_key;
  for (const auto& [rev, key] : written) {
    if (key == "/h/2/4") of_key.push_back(rev);
  }
  ASSERT_FALSE(of_key.empty());
  EXPECT_EQ(revisions(one_key), of_key);
  for (const WatchEvent& ev : from_start) {
    ASSERT_EQ(ev.kv.key, written.at(ev.kv.mod_revision));
  }
  e->unwatch(*a);
  e->unwatch(*b);
  e->unwatch(*c);
  EXPECT_TRUE(e->close().ok());
}

// Watch delivery runs on the loop thread that also ticks Raft and sends heartbeats. With
// thousands of watchers on one prefix it once queried the history for each watcher after
// every apply batch, and the leader's followers, hearing no heartbeat, elected another leader
// (issue 16's scale run). The delivery now reads new events once for every watcher and works
// in bounded slices; the leader must keep its term through a stream of writes, and each
// watcher must see every write exactly once, in order.
TEST_F(EngineTest, FiftyThousandWatchersDoNotCostTheLeaderItsLeadership) {
  constexpr int kMembers = 3;
  constexpr int kWatchers = 50'000;
  constexpr int kWrites = 400;
  constexpr int kWriters = 4;
  std::vector<std::string> peers;
  std::string cluster;
  for (int i = 0; i < kMembers; ++i) {
    peers.push_back("127.0.0.1:" + std::to_string(kvc::test::free_port()));
    cluster += (i ? "," : "") + std::string(1, static_cast<char>('a' + i)) + "=" + peers.back();
  }
  // Each watcher's callback runs on the leader's loop thread only.
  struct Seen {
    std::uint64_t count = 0;
    std::uint64_t last = 0;
    std::uint64_t sum = 0;
    bool out_of_order = false;
  };
  std::vector<Seen> seen(kWatchers);
  std::atomic<std::uint64_t> delivered{0};
  std::vector<std::unique_ptr<Engine>> members;
  for (int i = 0; i < kMembers; ++i) {
    EngineOptions o;
    o.name = std::string(1, static_cast<char>('a' + i));
    o.data_dir = dir_.path() + "/" + o.name;
    o.listen_peer = peers[static_cast<std::size_t>(i)];
    o.listen_client = "127.0.0.1:" + std::to_string(kvc::test::free_port());
    o.initial_cluster = cluster;
    o.tick_ms = 10;  // an election timeout of 100 to 200 ms
    Result<std::unique_ptr<Engine>> e = Engine::open(o);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    members.push_back(std::move(*e));
  }
  Engine* leader = nullptr;
  ASSERT_TRUE(wait_until(
      [&] {
        for (auto& m : members) {
          if (m->is_ready() && m->leader().id == m->id()) leader = m.get();
        }
        return leader != nullptr;
      },
      20s, "a leader"));
  const std::uint64_t term = leader->leader().term;
  // Callbacks stay registered until the members close: they share what they count.
  auto leader_changes = std::make_shared<std::atomic<int>>(0);
  for (auto& m : members) {
    m->on_leader_change([leader_changes, id = leader->id(), term](const LeaderInfo& l) {
      if (l.id != id || l.term != term) ++*leader_changes;
    });
  }

  std::vector<std::uint64_t> handles;
  for (int i = 0; i < kWatchers; ++i) {
    Seen* s = &seen[static_cast<std::size_t>(i)];
    Result<std::uint64_t> h = leader->watch("/w/", true, 0, [s, &delivered](const WatchEvent& ev) {
      if (ev.kv.mod_revision <= s->last) s->out_of_order = true;
      s->last = ev.kv.mod_revision;
      s->sum += ev.kv.mod_revision;
      ++s->count;
      delivered.fetch_add(1, std::memory_order_relaxed);
    });
    ASSERT_TRUE(h.ok()) << h.status().to_string();
    handles.push_back(*h);
  }

  // A bounded stream of writes from kWriters threads (so that apply batches follow each other
  // closely): each stops at its first failure (a lost leadership fails writes), once the
  // leader changed, or after 20 s.
  std::mutex mu;
  std::uint64_t sum = 0;
  int written = 0;
  std::atomic<int> next{0};
  const auto until = std::chrono::steady_clock::now() + 20s;
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (int i = next++; i < kWrites; i = next++) {
        if (leader_changes->load() != 0 || std::chrono::steady_clock::now() >= until) return;
        Result<std::uint64_t> rev = leader->set("/w/" + std::to_string(t), std::to_string(i));
        std::lock_guard<std::mutex> lock(mu);
        if (!rev.ok()) {
          ADD_FAILURE() << "write " << i << ": " << rev.status().to_string();
          return;
        }
        sum += *rev;
        ++written;
      }
    });
  }
  for (std::thread& w : writers) w.join();
  EXPECT_EQ(written, kWrites);
  EXPECT_EQ(leader_changes->load(), 0) << "the leader lost its leadership under the watch load";
  EXPECT_EQ(leader->leader().term, term);
  const std::uint64_t want = static_cast<std::uint64_t>(written) * kWatchers;
  EXPECT_TRUE(wait_until([&] { return delivered.load() >= want; }, 20s,
                         "every write to reach every watcher"));
  // Let a (wrong) extra delivery show: the leader's loop answers a read after its queued work.
  ASSERT_TRUE(leader->get("/w/0", {.serializable = true}).ok());
  for (std::uint64_t h : handles) leader->unwatch(h);
  ASSERT_TRUE(leader->get("/w/0", {.serializable = true}).ok());
  EXPECT_EQ(delivered.load(), want);
  int wrong = 0;
  for (const Seen& s : seen) {
    if (s.count != static_cast<std::uint64_t>(written) || s.sum != sum || s.out_of_order) {
      ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0) << "watchers that missed, repeated or reordered an event";
}

}  // namespace
}  // namespace kvc::server
