// The chaos harness's own parts, without a cluster: the fault proxy (against a fake member on
// loopback), the seeded schedule, the mapping of client answers to history outcomes, the
// end-of-run checks (each with a planted bug it must catch) and the slow-disk shim.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "checks.h"
#include "fault_proxy.h"
#include "nemesis.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "workload.h"

#ifndef KVC_SLOWFS_LIBRARY
#error "KVC_SLOWFS_LIBRARY must be defined by the build"
#endif

namespace kvc::chaos {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
constexpr milliseconds kPollEvery{5};

// ---------------------------------------------------------------------------------------------
// A fake member behind the proxy: accepts connections and records every frame it receives.

std::string frame(const std::string& payload) {
  std::string out(4, '\0');
  const std::uint32_t n = static_cast<std::uint32_t>(payload.size());
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  return out + payload;
}

std::string hello_frame(const std::string& name) {
  std::string out;
  wire::append_hello(out,
                     {.role = wire::Role::kPeer, .cluster_id = 7, .member_id = 1, .name = name});
  return out;
}

class FakeMember {
 public:
  FakeMember() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeMember() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  std::uint16_t port() const { return port_; }

  struct Received {
    std::string payload;
    SteadyClock::time_point at;
  };
  std::vector<Received> frames() const {
    std::lock_guard<std::mutex> lock(mu_);
    return frames_;
  }
  int connections() const { return connections_.load(); }
  // Waits (bounded) until `n` frames arrived.
  bool wait_frames(std::size_t n, int timeout_ms = 5000) const {
    return test::wait_until([&] { return frames().size() >= n; }, milliseconds(timeout_ms),
                            std::to_string(n) + " frames", kPollEvery)
        .ok();
  }

 private:
  void run() {
    std::vector<int> conns;
    std::vector<std::string> bufs;
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (int c : conns) fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          conns.push_back(c);
          bufs.emplace_back();
          ++connections_;
          const std::string hi = "reply";  // what goes back to the sender
          (void)!::send(c, hi.data(), hi.size(), MSG_NOSIGNAL);
        }
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        char buf[4096];
        const ssize_t n = ::recv(conns[i - 1], buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(conns[i - 1]);
          conns[i - 1] = -1;
          continue;
        }
        std::string& b = bufs[i - 1];
        b.append(buf, static_cast<std::size_t>(n));
        while (b.size() >= 4) {
          const auto* h = reinterpret_cast<const unsigned char*>(b.data());
          const std::size_t len = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                                  (std::size_t{h[2]} << 8) | h[3];
          if (b.size() < 4 + len) break;
          std::lock_guard<std::mutex> lock(mu_);
          frames_.push_back({b.substr(4, len), SteadyClock::now()});
          b.erase(0, 4 + len);
        }
      }
      for (std::size_t i = 0; i < conns.size();) {
        if (conns[i] < 0) {
          conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
          bufs.erase(bufs.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
          ++i;
        }
      }
    }
    for (int c : conns) ::close(c);
  }

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<Received> frames_;
  std::thread thread_;
};

int dial(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void send_all(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// True when the peer closed the connection (read returns 0 or an error) within the timeout.
bool closed_by_peer(int fd) {
  char buf[64];
  for (int i = 0; i < 10; ++i) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
  return false;
}

struct ProxyFixture {
  ProxyFixture() : proxy(42) {
    EXPECT_TRUE(proxy.start().ok());
    // m1 (index 0) is the sender in these tests; its own proxy port is not used.
    EXPECT_TRUE(proxy.add_member(0, "m1", member.port()).ok());
    Result<std::uint16_t> p = proxy.add_member(1, "m2", member.port());
    EXPECT_TRUE(p.ok());
    port = *p;
  }
  FakeMember member;
  FaultProxy proxy;
  std::uint16_t port = 0;
};

TEST(FaultProxyTest, ForwardsWholeFramesInOrderAndTheRepliesBack) {
  ProxyFixture f;
  const int fd = dial(f.port);
  send_all(fd, hello_frame("m1"));
  std::string burst;
  for (int i = 0; i < 200; ++i) burst += frame("message-" + std::to_string(i));
  send_all(fd, burst);
  ASSERT_TRUE(f.member.wait_frames(201));
  const auto frames = f.member.frames();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(frames[1 + i].payload, "message-" + std::to_string(i));
  char buf[16];
  ASSERT_EQ(::recv(fd, buf, 5, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf, 5), "reply");
  EXPECT_EQ(f.proxy.stats().frames_forwarded, 201u);
  ::close(fd);
}

TEST(FaultProxyTest, CutClosesTheLinkRefusesItAndLeavesOtherSendersAlone) {
  ProxyFixture f;
  const int from_m1 = dial(f.port);
  send_all(from_m1, hello_frame("m1"));
  ASSERT_TRUE(f.member.wait_frames(1));
  f.proxy.set_fault(0, 1, {.cut = true});
  EXPECT_TRUE(closed_by_peer(from_m1)) << "an open connection on a cut link must be closed";
  ::close(from_m1);
  // A redial on the cut link is closed once its Hello names the sender.
  const int again = dial(f.port);
  send_all(again, hello_frame("m1"));
  EXPECT_TRUE(closed_by_peer(again));
  ::close(again);
  // Another sender (m3, index 2) reaches the member as before; so would an unknown one.
  (void)f.proxy.add_member(2, "m3", 1);  // registers the name; its own port is not used here
  const int from_m3 = dial(f.port);
  send_all(from_m3, hello_frame("m3") + frame("through"));
  ASSERT_TRUE(f.member.wait_frames(3));
  EXPECT_EQ(f.member.frames().back().payload, "through");
  EXPECT_GE(f.proxy.stats().connections_cut, 2u);
  // Healed: m1 gets through again.
  f.proxy.heal_all();
  const int healed = dial(f.port);
  send_all(healed, hello_frame("m1") + frame("back"));
  ASSERT_TRUE(f.member.wait_frames(5));
  EXPECT_EQ(f.member.frames().back().payload, "back");
  ::close(from_m3);
  ::close(healed);
}

TEST(FaultProxyTest, BlackholeDropsMessagesButKeepsTheStreamFramed) {
  ProxyFixture f;
  const int fd = dial(f.port);
  send_all(fd, hello_frame("m1"));
  ASSERT_TRUE(f.member.wait_frames(1));
  f.proxy.set_fault(0, 1, {.drop = 1});
  for (int i = 0; i < 50; ++i) send_all(fd, frame("lost-" + std::to_string(i)));
  // The proxy has read them all once it counts them dropped.
  (void)test::wait_until([&] { return f.proxy.stats().frames_dropped >= 50; }, milliseconds(5000),
                         "50 dropped frames", kPollEvery);
  EXPECT_EQ(f.proxy.stats().frames_dropped, 50u);
  EXPECT_EQ(f.member.frames().size(), 1u);
  f.proxy.set_fault(0, 1, {});
  send_all(fd, frame("after"));
  ASSERT_TRUE(f.member.wait_frames(2));
  EXPECT_EQ(f.member.frames()[1].payload, "after");
  EXPECT_EQ(f.member.connections(), 1) << "a black hole keeps the connection open";
  ::close(fd);
}

TEST(FaultProxyTest, LossyLinkDropsSomeAndDeliversTheRestWholeAndInOrder) {
  ProxyFixture f;
  f.proxy.set_fault(0, 1, {.drop = 0.5});
  const int fd = dial(f.port);
  send_all(fd, hello_frame("m1"));  // a Hello is never dropped
  std::string burst;
  for (int i = 0; i < 400; ++i) burst += frame(std::to_string(i));
  send_all(fd, burst);
  (void)test::wait_until(
      [&] { return f.proxy.stats().frames_dropped + f.proxy.stats().frames_forwarded >= 401; },
      milliseconds(5000), "401 frames read", kPollEvery);
  const ProxyStats st = f.proxy.stats();
  ASSERT_EQ(st.frames_dropped + st.frames_forwarded, 401u);
  EXPECT_GT(st.frames_dropped, 100u);
  EXPECT_GT(st.frames_forwarded, 100u);
  ASSERT_TRUE(f.member.wait_frames(st.frames_forwarded));
  const auto frames = f.member.frames();
  int last = -1;
  for (std::size_t i = 1; i < frames.size(); ++i) {
    const int v = std::stoi(frames[i].payload);
    EXPECT_GT(v, last);
    last = v;
  }
  ::close(fd);
}

TEST(FaultProxyTest, DelayHoldsEveryMessageAtLeastThatLongAndKeepsOrder) {
  ProxyFixture f;
  f.proxy.set_fault(0, 1, {.delay_ms = 150, .jitter_ms = 50});
  const int fd = dial(f.port);
  const auto sent = SteadyClock::now();
  std::string burst = hello_frame("m1");
  for (int i = 0; i < 20; ++i) burst += frame(std::to_string(i));
  send_all(fd, burst);
  ASSERT_TRUE(f.member.wait_frames(21));
  const auto frames = f.member.frames();
  for (std::size_t i = 1; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].payload, std::to_string(i - 1));
    EXPECT_GE(frames[i].at - sent, milliseconds(150));
  }
  EXPECT_EQ(f.proxy.stats().frames_delayed, 21u);
  EXPECT_EQ(f.proxy.fault(0, 1).to_string(), "delay=150ms+50ms");
  ::close(fd);
}

TEST(FaultProxyTest, MemberThatIsDownLooksLikeAClosedConnection) {
  FaultProxy proxy(1);
  ASSERT_TRUE(proxy.start().ok());
  std::uint16_t dead_port = 0;
  {
    FakeMember gone;  // bound, then closed: nothing listens there any more
    dead_port = gone.port();
  }
  Result<std::uint16_t> p = proxy.add_member(1, "m2", dead_port);
  ASSERT_TRUE(p.ok());
  const int fd = dial(*p);
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
}

TEST(LinkFaultTest, DescribesItself) {
  EXPECT_EQ(LinkFault{}.to_string(), "healthy");
  EXPECT_EQ(LinkFault{.cut = true}.to_string(), "cut");
  EXPECT_EQ(LinkFault{.drop = 1}.to_string(), "blackhole");
  EXPECT_EQ((LinkFault{.drop = 0.25, .delay_ms = 10}).to_string(), "drop=25% delay=10ms");
}

// ---------------------------------------------------------------------------------------------
// The schedule

TEST(ScheduleTest, SameSeedGivesTheSameScheduleAndOtherSeedsOthers) {
  auto text = [](std::uint64_t seed) {
    std::string s;
    for (const FaultStep& st : make_schedule(seed, 30000, all_fault_kinds())) {
      s += st.to_string() + "|";
      for (std::uint64_t p : st.picks) s += std::to_string(p) + ",";
    }
    return s;
  };
  EXPECT_EQ(text(7), text(7));
  EXPECT_NE(text(7), text(8));
}

TEST(ScheduleTest, StepsStayInsideTheRunAndEveryKindComesUp) {
  std::set<FaultKind> seen;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    const std::vector<FaultStep> steps = make_schedule(seed, 20000, all_fault_kinds());
    ASSERT_FALSE(steps.empty()) << "seed " << seed;
    std::uint64_t last = 0;
    for (const FaultStep& s : steps) {
      EXPECT_GE(s.at_ms, 1500u);
      EXPECT_LT(s.at_ms + 1000, 20000u);
      EXPECT_GE(s.at_ms, last);
      last = s.at_ms;
      EXPECT_EQ(s.picks.size(), 8u);
      seen.insert(s.kind);
    }
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kFaultKindCount));
}

TEST(ScheduleTest, FaultMixNamesKindsAndGroups) {
  const struct {
    const char* text;
    std::vector<FaultKind> want;
  } cases[] = {
      {"none", {}},
      {"kill", {FaultKind::kKill, FaultKind::kKillLeader, FaultKind::kKillMajority}},
      {"pause-leader,slow-disk", {FaultKind::kPauseLeader, FaultKind::kSlowDisk}},
      {"net", {FaultKind::kLossyLinks, FaultKind::kSlowLinks}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    Result<std::vector<FaultKind>> got = parse_fault_mix(c.text);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(*got, c.want);
  }
  EXPECT_EQ(parse_fault_mix("all")->size(), static_cast<std::size_t>(kFaultKindCount));
  EXPECT_EQ(parse_fault_mix("kill,bogus").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_fault_mix("").status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(make_schedule(1, 20000, {}).empty());
}

// ---------------------------------------------------------------------------------------------
// A membership change whose answer was lost

// A cluster of m1..m3 led by m1 whose "remove m3" answer was lost: the removal is in the
// leader's log (or not), and the next `stuck_barriers` barriers time out (it waits for a paused
// member) before the quorum is back and the barrier commits, and the removal with it.
struct LostAnswerCluster {
  bool removal_in_log = true;
  bool removal_applied = false;  // already applied when the resolver first looks
  int stuck_barriers = 0;
  int leaderless_looks = 0;  // find_leader answers -1 this many times first
  std::vector<wire::MemberInfo> members{
      {.id = 1, .name = "m1"}, {.id = 2, .name = "m2"}, {.id = 3, .name = "m3"}};
  int barriers = 0, lists = 0, idles = 0;
  std::uint64_t now = 0;

  void apply_removal() {
    members.erase(std::remove_if(members.begin(), members.end(),
                                 [](const wire::MemberInfo& m) { return m.id == 3; }),
                  members.end());
  }
  ChangeProbe probe() {
    if (removal_applied) apply_removal();
    ChangeProbe p;
    p.find_leader = [this] { return leaderless_looks-- > 0 ? -1 : 0; };
    p.call = [this](int member, wire::Request req, std::uint64_t) {
      EXPECT_EQ(member, 0) << "the resolver asks the leader";
      wire::Response r;
      if (req.op == wire::Op::kMemberList) {
        ++lists;
        r.members = members;
      } else if (req.op == wire::Op::kHash && req.start_revision == 0) {
        ++barriers;
        if (stuck_barriers > 0) {
          --stuck_barriers;
          r.code = Code::kTimeout;
          r.message = "request timed out; it may or may not have been applied";
        } else {
          if (removal_in_log) apply_removal();  // committed before the barrier
          r.revision = 42;
        }
      } else {
        ADD_FAILURE() << "unexpected request " << wire::op_name(req.op);
        r.code = Code::kInternal;
      }
      return r;
    };
    p.idle = [this] {
      ++idles;
      now += 250;
    };
    p.now_ms = [this] { return now; };
    return p;
  }
};

bool m3_removed(const std::vector<wire::MemberInfo>& ms) {
  return std::none_of(ms.begin(), ms.end(), [](const wire::MemberInfo& m) { return m.id == 3; });
}

TEST(ResolveChangeTest, TimedOutRemovalThatWasAppliedIsSeenAsApplied) {
  // The chaos.seed3 failure: "remove m3" timed out while the leader waited for a paused member,
  // and was applied once it came back. The harness must find that out, not count a skip.
  LostAnswerCluster c;
  c.stuck_barriers = 3;
  const ChangeResolution r = resolve_change(c.probe(), m3_removed, 30000);
  EXPECT_EQ(r.outcome, ChangeOutcome::kApplied) << r.how;
  EXPECT_TRUE(m3_removed(r.members));
  EXPECT_EQ(c.barriers, 4);
  EXPECT_GE(c.idles, 3) << "faults must be able to heal while the resolver waits";
  EXPECT_NE(r.how.find("applied"), std::string::npos) << r.how;
}

TEST(ResolveChangeTest, TimedOutRemovalThatNeverReachedTheLogIsSeenAsNotApplied) {
  // The membership still lists m3 after a barrier committed: the removal will never apply.
  LostAnswerCluster c;
  c.removal_in_log = false;
  c.stuck_barriers = 1;
  const ChangeResolution r = resolve_change(c.probe(), m3_removed, 30000);
  EXPECT_EQ(r.outcome, ChangeOutcome::kNotApplied) << r.how;
  EXPECT_EQ(r.members.size(), 3u);
  EXPECT_NE(r.how.find("not applied"), std::string::npos) << r.how;
}

TEST(ResolveChangeTest, AListThatShowsTheChangeDecidesWithoutABarrier) {
  LostAnswerCluster c;
  c.removal_applied = true;
  c.stuck_barriers = 100;  // would never commit: not needed
  const ChangeResolution r = resolve_change(c.probe(), m3_removed, 30000);
  EXPECT_EQ(r.outcome, ChangeOutcome::kApplied) << r.how;
  EXPECT_EQ(c.barriers, 0);
}

TEST(ResolveChangeTest, NoLeaderForAWhileIsWaitedOut) {
  LostAnswerCluster c;
  c.leaderless_looks = 5;
  const ChangeResolution r = resolve_change(c.probe(), m3_removed, 30000);
  EXPECT_EQ(r.outcome, ChangeOutcome::kApplied) << r.how;
  EXPECT_EQ(c.idles, 5);
}

TEST(ResolveChangeTest, AnOutcomeThatStaysUnknownIsReportedAsUnresolvedInBoundedTime) {
  // Never assumed either way: a cluster that commits nothing leaves the outcome unknown.
  LostAnswerCluster c;
  c.stuck_barriers = 1000000;
  const ChangeResolution r = resolve_change(c.probe(), m3_removed, 30000);
  EXPECT_EQ(r.outcome, ChangeOutcome::kUnresolved) << r.how;
  EXPECT_LE(c.now, 30000u + 250u);
  EXPECT_LE(c.idles, 121);
  EXPECT_NE(r.how.find("still unknown"), std::string::npos) << r.how;
  EXPECT_NE(r.how.find("timed out"), std::string::npos) << "names the last answer: " << r.how;
}

// ---------------------------------------------------------------------------------------------
// Client answers as history outcomes

TEST(RecordResponseTest, MapsAnswersByTheClientsOutcomeRules) {
  auto resp = [](Code code) {
    wire::Response r;
    r.code = code;
    return r;
  };
  wire::Response got_value = resp(Code::kOk);
  got_value.found = true;
  got_value.kvs.push_back({.key = "k", .value = "v", .mod_revision = 12});
  wire::Response put_ok = resp(Code::kOk);
  put_ok.revision = 15;
  wire::Response del_found = resp(Code::kOk);
  del_found.found = true;
  del_found.revision = 16;
  const struct {
    const char* name;
    check::OpKind kind;
    wire::Response r;
    check::Outcome outcome;
    bool found;
    std::string read_value;
    std::uint64_t revision;
  } cases[] = {
      {"get found", check::OpKind::kGet, got_value, check::Outcome::kOk, true, "v", 12},
      {"get absent", check::OpKind::kGet, resp(Code::kOk), check::Outcome::kOk, false, "", 0},
      {"get not found code", check::OpKind::kGet, resp(Code::kNotFound), check::Outcome::kOk, false,
       "", 0},
      {"put ok", check::OpKind::kPut, put_ok, check::Outcome::kOk, false, "", 15},
      {"cas ok", check::OpKind::kCas, put_ok, check::Outcome::kOk, true, "", 15},
      {"cas compare failed", check::OpKind::kCas, resp(Code::kCompareFailed), check::Outcome::kOk,
       false, "", 0},
      {"delete found", check::OpKind::kDelete, del_found, check::Outcome::kOk, true, "", 16},
      {"delete absent", check::OpKind::kDelete, resp(Code::kOk), check::Outcome::kOk, false, "", 0},
      {"timeout", check::OpKind::kPut, resp(Code::kTimeout), check::Outcome::kUnknown, false, "",
       0},
      {"not leader", check::OpKind::kPut, resp(Code::kNotLeader), check::Outcome::kFailed, false,
       "", 0},
      {"unavailable", check::OpKind::kCas, resp(Code::kUnavailable), check::Outcome::kFailed, false,
       "", 0},
      {"shutting down", check::OpKind::kDelete, resp(Code::kShuttingDown), check::Outcome::kFailed,
       false, "", 0},
      {"put compare failed is not a cas", check::OpKind::kPut, resp(Code::kCompareFailed),
       check::Outcome::kFailed, false, "", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    check::Operation op;
    op.kind = c.kind;
    op.invoke_time = 5;
    record_response(op, c.r, 9);
    EXPECT_EQ(op.outcome, c.outcome);
    EXPECT_EQ(op.found, c.found);
    EXPECT_EQ(op.read_value, c.read_value);
    EXPECT_EQ(op.revision, c.revision);
    EXPECT_EQ(op.response_time, c.outcome == check::Outcome::kUnknown ? check::kNever : 9u);
  }
}

TEST(RecorderTest, OperationsInFlightAreUnknownInASnapshot) {
  Recorder rec(SteadyClock::now());
  check::Operation a;
  a.kind = check::OpKind::kPut;
  a.key = "k";
  a.value = "v1";
  const std::size_t ha = rec.begin(a);
  check::Operation b = a;
  b.value = "v2";
  const std::size_t hb = rec.begin(b);
  wire::Response ok;
  ok.revision = 3;
  rec.complete(ha, ok);
  const check::History h = rec.snapshot();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[ha].outcome, check::Outcome::kOk);
  EXPECT_EQ(h[ha].revision, 3u);
  EXPECT_LT(h[ha].invoke_time, h[ha].response_time);
  EXPECT_EQ(h[hb].outcome, check::Outcome::kUnknown);
  EXPECT_EQ(h[hb].response_time, check::kNever);
  EXPECT_LE(h[ha].invoke_time, h[hb].invoke_time);
}

// ---------------------------------------------------------------------------------------------
// End-of-run checks, each with a planted bug

check::Operation write_op(check::OpKind kind, const std::string& key, const std::string& value,
                          check::Outcome outcome, std::uint64_t revision, bool found = true) {
  check::Operation op;
  op.kind = kind;
  op.key = key;
  op.value = value;
  op.outcome = outcome;
  op.revision = revision;
  op.found = found;
  return op;
}

wire::Event put_event(const std::string& key, const std::string& value, std::uint64_t rev) {
  return {wire::EventType::kPut, {.key = key, .value = value, .mod_revision = rev}};
}
wire::Event delete_event(const std::string& key, std::uint64_t rev) {
  return {wire::EventType::kDelete, {.key = key, .mod_revision = rev}};
}

struct WriteCase {
  check::History history;
  std::vector<wire::Event> events;
};

WriteCase clean_writes() {
  WriteCase c;
  c.history = {write_op(check::OpKind::kPut, "k1", "a", check::Outcome::kOk, 2),
               write_op(check::OpKind::kCas, "k1", "b", check::Outcome::kOk, 3),
               write_op(check::OpKind::kDelete, "k1", "", check::Outcome::kOk, 5),
               write_op(check::OpKind::kPut, "k2", "c", check::Outcome::kUnknown, 0),
               write_op(check::OpKind::kPut, "k2", "d", check::Outcome::kFailed, 0)};
  c.events = {put_event("k1", "a", 2), put_event("k1", "b", 3), put_event("k2", "c", 4),
              delete_event("k1", 5), put_event("other/key", "x", 6)};
  return c;
}

TEST(AcknowledgedWritesTest, ACleanHistoryPasses) {
  const WriteCase c = clean_writes();
  const WriteCheck w = check_acknowledged_writes(c.history, c.events, 1, "m1");
  EXPECT_TRUE(w.problems.empty()) << w.problems.front();
  EXPECT_EQ(w.acknowledged_checked, 3u);
  EXPECT_EQ(w.events, 4u);  // the key no client uses is ignored
}

TEST(AcknowledgedWritesTest, EachPlantedBugIsReported) {
  const struct {
    const char* name;
    std::function<void(WriteCase&)> plant;
    const char* want;
  } cases[] = {
      {"lost put", [](WriteCase& c) { c.events.erase(c.events.begin()); },
       "acknowledged write lost: c0 put(k1, a)"},
      {"lost delete", [](WriteCase& c) { c.events.erase(c.events.begin() + 3); },
       "acknowledged write lost"},
      {"other value at the revision", [](WriteCase& c) { c.events[1].kv.value = "z"; },
       "but at revision 3"},
      {"failed write applied", [](WriteCase& c) { c.events.push_back(put_event("k2", "d", 7)); },
       "was told failed"},
      {"phantom", [](WriteCase& c) { c.events.push_back(put_event("k2", "nobody", 7)); },
       "phantom write"},
      {"applied twice", [](WriteCase& c) { c.events.push_back(put_event("k1", "a", 8)); },
       "write applied twice"},
      {"two changes at a revision", [](WriteCase& c) { c.events.push_back(delete_event("k2", 3)); },
       "two changes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    WriteCase w = clean_writes();
    c.plant(w);
    const WriteCheck got = check_acknowledged_writes(w.history, w.events, 1, "m1");
    ASSERT_FALSE(got.problems.empty());
    bool found = false;
    for (const std::string& p : got.problems) found |= p.find(c.want) != std::string::npos;
    EXPECT_TRUE(found) << got.problems.front();
  }
}

TEST(AcknowledgedWritesTest, WritesBelowTheHistorysStartAreCountedNotChecked) {
  WriteCase c = clean_writes();
  c.events.erase(c.events.begin(), c.events.begin() + 2);  // revisions 2 and 3 compacted
  const WriteCheck w = check_acknowledged_writes(c.history, c.events, 4, "m1");
  EXPECT_TRUE(w.problems.empty()) << w.problems.front();
  EXPECT_EQ(w.acknowledged_compacted, 2u);
  EXPECT_EQ(w.acknowledged_checked, 1u);
}

TEST(RevisionsUniqueTest, DistinctRevisionsPassAndASharedOneIsReported) {
  WriteCase c = clean_writes();
  // Answers that did not change anything may share revisions (they report the store's).
  c.history.push_back(write_op(check::OpKind::kDelete, "k2", "", check::Outcome::kOk, 5, false));
  EXPECT_TRUE(check_revisions_unique(c.history).empty());
  c.history.push_back(write_op(check::OpKind::kPut, "k2", "e", check::Outcome::kOk, 3));
  const std::vector<std::string> p = check_revisions_unique(c.history);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p.front().find("two writes acknowledged at revision 3"), std::string::npos)
      << p.front();
}

TEST(CompareStatesTest, IdenticalStatesPassAndEveryDifferenceIsNamed) {
  MemberState a{
      "m1",
      10,
      {{.key = "k1", .value = "a", .create_revision = 2, .mod_revision = 4, .version = 2},
       {.key = "k2", .value = "b", .create_revision = 5, .mod_revision = 5, .version = 1}}};
  EXPECT_TRUE(compare_states({a, a, a}).empty());
  MemberState value = a;
  value.name = "m2";
  value.kvs[0].value = "x";
  MemberState missing = a;
  missing.name = "m3";
  missing.kvs.pop_back();
  MemberState behind = a;
  behind.name = "m4";
  behind.applied_index = 9;
  const std::vector<std::string> d = compare_states({a, value, missing, behind});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_NE(d[0].find("key k1: m1 'a'"), std::string::npos) << d[0];
  EXPECT_NE(d[1].find("m3 absent"), std::string::npos) << d[1];
  EXPECT_NE(d[2].find("m4 is at applied index 9"), std::string::npos) << d[2];
}

TEST(HistoryExcerptTest, ShowsTheCulpritsTheirKeyAndWhatTheHarnessDid) {
  check::History h;
  auto op = [&](std::uint64_t client, check::OpKind kind, const std::string& key,
                const std::string& v, std::uint64_t rev, std::uint64_t t0, std::uint64_t t1) {
    check::Operation o = write_op(kind, key, v, check::Outcome::kOk, rev);
    o.client = client;
    o.invoke_time = t0;
    o.response_time = t1;
    if (kind == check::OpKind::kGet) {
      o.read_value = v;
      o.value.clear();
    }
    h.push_back(o);
  };
  op(1, check::OpKind::kPut, "k", "a", 3, 1'000'000, 1'100'000);
  op(2, check::OpKind::kPut, "k", "b", 9, 2'000'000, 2'100'000);
  op(3, check::OpKind::kGet, "k", "a", 3, 2'500'000, 2'600'000);  // stale
  op(4, check::OpKind::kPut, "other", "c", 10, 2'500'000, 2'600'000);
  op(5, check::OpKind::kPut, "k", "z", 30, 9'000'000, 9'100'000);  // far away
  const check::CheckResult r = check::check_history(h);
  ASSERT_EQ(r.verdict, check::Verdict::kNotLinearizable);
  const std::string text =
      history_excerpt(h, r, {{2'300'000, "pause-leader SIGSTOP m1"}, {8'000'000, "late"}});
  EXPECT_NE(text.find(">> c3 get(k)"), std::string::npos) << text;
  EXPECT_NE(text.find("c2 put(k, b)"), std::string::npos) << text;
  EXPECT_EQ(text.find("other"), std::string::npos) << text;
  EXPECT_EQ(text.find("c5 "), std::string::npos) << text;
  EXPECT_NE(text.find("pause-leader SIGSTOP m1"), std::string::npos) << text;
  EXPECT_EQ(text.find("late"), std::string::npos) << text;
}

// ---------------------------------------------------------------------------------------------
// The slow-disk shim, in a child process

TEST(SlowfsTest, FsyncSleepsForWhatTheControlFileSays) {
  const test::ScopedTempDir tmp("kvc-slowfs-test");
  const std::string& dir = tmp.path();
  const std::string control = dir + "/delay";
  auto timed_dd = [&](const char* delay) {  // nullptr: no control file at all
    if (delay == nullptr) {
      std::filesystem::remove(control);
    } else {
      std::ofstream f(control);
      f << delay;
    }
    const auto t0 = SteadyClock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("LD_PRELOAD", KVC_SLOWFS_LIBRARY, 1);
      ::setenv("KVC_SLOWFS_CONTROL", control.c_str(), 1);
      const char* asan = std::getenv("ASAN_OPTIONS");
      const std::string opts =
          std::string(asan != nullptr ? asan : "") + ":verify_asan_link_order=0";
      ::setenv("ASAN_OPTIONS", opts.c_str(), 1);
      const std::string of = "of=" + dir + "/out";
      ::execlp("dd", "dd", "if=/dev/zero", of.c_str(), "bs=512", "count=1", "conv=fsync",
               "status=none", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return SteadyClock::now() - t0;
  };
  EXPECT_GE(timed_dd("300"), milliseconds(300)) << "the fsync did not wait";
  // "0", garbage and a missing file mean no delay; the call still succeeds.
  (void)timed_dd("0");
  (void)timed_dd("not a number");
  (void)timed_dd(nullptr);
}

}  // namespace
}  // namespace kvc::chaos
