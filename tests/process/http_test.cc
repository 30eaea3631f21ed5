// The HTTP endpoint of real kvc-node members (--listen-http), driven with curl: health and
// readiness as the cluster loses and regains its quorum, the JSON key-value API across members
// (a write on a follower goes to the leader), agreement with the client protocol, a malformed
// request that must not hurt the member, /metrics read by a Prometheus text-format parser,
// watch streams (JSON lines and Server-Sent Events) read over plain sockets, /v1/leader, and
// leases and txns sent to a follower.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "curl.h"
#include "kvc/common/json.h"
#include "kvc/common/text.h"
#include "process_cluster.h"
#include "prom_text.h"
#include "support/http_stream.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

class HttpCluster {
 public:
  explicit HttpCluster(const std::string& name, ClusterOptions options = {})
      : cluster_(name, std::move(options)) {
    for (int i = 0; i < cluster_.size(); ++i) {
      http_.push_back("127.0.0.1:" + std::to_string(free_port()));
      cluster_.mutable_spec(i).extra_flags = {"--listen-http", http_.back()};
    }
  }
  ProcessCluster& cluster() { return cluster_; }
  const std::string& http(int i) const { return http_[static_cast<std::size_t>(i)]; }

 private:
  ProcessCluster cluster_;
  std::vector<std::string> http_;
};

// Polls `path` on member `i` until it answers `status` (bounded).
bool wait_status(const std::string& http_addr, const std::string& path, int status) {
  return wait_until([&] { return curl({url(http_addr, path)}).status == status; },
                    std::chrono::seconds(15), path + " answering " + std::to_string(status),
                    std::chrono::milliseconds(100))
      .ok();
}

// The JSON messages of a JSON-lines body (keep-alive empty lines left out).
std::vector<JsonValue> json_lines(const std::string& body) {
  std::vector<JsonValue> out;
  std::size_t at = 0;
  for (std::size_t nl; (nl = body.find('\n', at)) != std::string::npos; at = nl + 1) {
    if (nl == at) continue;
    Result<JsonValue> v = parse_json(body.substr(at, nl - at));
    if (v.ok()) out.push_back(*v);
  }
  return out;
}

std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = s.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

// kvc_watchers on a member (NaN when it cannot be read).
double watchers_on(const std::string& http_addr) {
  HttpAnswer m = curl({url(http_addr, "/metrics")});
  Result<std::map<std::string, http::testing::PromFamily>> fams =
      http::testing::parse_prometheus_text(m.body);
  if (m.status != 200 || !fams.ok() || fams->count("kvc_watchers") == 0) return std::nan("");
  return fams->at("kvc_watchers").value("kvc_watchers", {});
}

TEST(HttpProcessTest, KeyValueApiAcrossMembersAgreesWithTheClientProtocol) {
  HttpCluster hc("http-kv");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  const int follower = (*leader + 1) % 3;
  const int other = (*leader + 2) % 3;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_status(hc.http(i), "/ready", 200)) << i;

  // A binary value with a newline, written through a follower (forwarded to the leader).
  HttpAnswer put = curl(
      {"-X", "PUT", "--data-binary", "hello\nworld", url(hc.http(follower), "/v1/kv/svc%2Fa")});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_NE(put.body.find("\"revision\":"), std::string::npos) << put.body;

  HttpAnswer get = curl({url(hc.http(other), "/v1/kv/svc/a")});
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_NE(get.body.find("\"value\":\"hello\\nworld\""), std::string::npos) << get.body;
  // The client protocol sees the same key and value.
  auto c = cluster.client();
  wire::Response r = c->get("svc/a");
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  ASSERT_TRUE(r.found);
  EXPECT_EQ(r.kvs[0].value, "hello\nworld");
  const std::uint64_t mod = r.kvs[0].mod_revision;

  // Compare-and-set: a stale revision is refused with 409, the current one succeeds.
  HttpAnswer stale =
      curl({"-X", "PUT", "--data-binary", "x",
            url(hc.http(other), "/v1/kv/svc/a?expect_revision=" + std::to_string(mod + 100))});
  EXPECT_EQ(stale.status, 409) << stale.body;
  EXPECT_NE(stale.body.find("compare_failed"), std::string::npos) << stale.body;
  HttpAnswer cas = curl(
      {"-X", "PUT", "-H", "Content-Type: application/json", "--data-binary", "{\"value\":\"v2\"}",
       url(hc.http(*leader), "/v1/kv/svc/a?expect_revision=" + std::to_string(mod))});
  EXPECT_EQ(cas.status, 200) << cas.body;
  EXPECT_EQ(c->get("svc/a").kvs.at(0).value, "v2");

  // Listing with a limit and continuation.
  ASSERT_EQ(c->put("svc/b", "2").code, Code::kOk);
  ASSERT_EQ(c->put("svc/c", "3").code, Code::kOk);
  HttpAnswer page = curl({url(hc.http(follower), "/v1/kv?prefix=svc%2F&limit=2")});
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("\"count\":2"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("\"more\":true"), std::string::npos) << page.body;
  HttpAnswer rest = curl({url(hc.http(follower), "/v1/kv?prefix=svc%2F&limit=2&after=svc%2Fb")});
  ASSERT_EQ(rest.status, 200) << rest.body;
  EXPECT_NE(rest.body.find("\"key\":\"svc/c\""), std::string::npos) << rest.body;
  EXPECT_NE(rest.body.find("\"more\":false"), std::string::npos) << rest.body;

  // Delete, then the key is gone for both protocols.
  HttpAnswer del = curl({"-X", "DELETE", url(hc.http(follower), "/v1/kv/svc/a")});
  EXPECT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(curl({url(hc.http(other), "/v1/kv/svc/a")}).status, 404);
  EXPECT_FALSE(c->get("svc/a").found);

  // A malformed request gets a 4xx and the member keeps serving.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  const std::string& addr = hc.http(other);
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(addr.find(':') + 1))));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string junk = "GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: zz\r\n\r\n";
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  char buf[512];
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  ASSERT_GT(n, 12);
  EXPECT_EQ(std::string(buf, 12), "HTTP/1.1 400");
  EXPECT_EQ(curl({url(hc.http(other), "/health")}).status, 200);
  EXPECT_TRUE(cluster.running(other));
}

TEST(HttpProcessTest, HealthAndReadinessFollowTheQuorum) {
  HttpCluster hc("http-health");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(wait_status(hc.http(i), "/ready", 200)) << i;
    HttpAnswer h = curl({url(hc.http(i), "/health")});
    EXPECT_EQ(h.status, 200) << h.body;
    EXPECT_EQ(h.body, "{\"health\":true}\n");
  }
  // One member down: the others stay healthy.
  ASSERT_TRUE(cluster.kill(2, SIGKILL).ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  EXPECT_EQ(curl({url(hc.http(0), "/health")}).status, 200);
  EXPECT_EQ(curl({url(hc.http(1), "/health")}).status, 200);
  // Two down: no quorum, the survivor is neither healthy nor ready.
  ASSERT_TRUE(cluster.kill(1, SIGKILL).ok());
  EXPECT_TRUE(wait_status(hc.http(0), "/ready", 503));
  HttpAnswer sick = curl({url(hc.http(0), "/health")});
  EXPECT_EQ(sick.status, 503) << sick.body;
  EXPECT_NE(sick.body.find("\"health\":false"), std::string::npos) << sick.body;
  // Back: healthy again.
  ASSERT_TRUE(cluster.start(1).ok());
  ASSERT_TRUE(cluster.start(2).ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(wait_status(hc.http(i), "/health", 200)) << i;
}

TEST(HttpProcessTest, MetricsParseAndReflectTheWork) {
  HttpCluster hc("http-metrics");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(c->put("m/" + std::to_string(i), "v").code, Code::kOk);
  ASSERT_EQ(c->get("m/1").code, Code::kOk);
  ASSERT_EQ(curl({url(hc.http(*leader), "/v1/kv/m/2")}).status, 200);

  double leaders = 0;
  for (int i = 0; i < 3; ++i) {
    HttpAnswer m;
    Result<std::map<std::string, http::testing::PromFamily>> fams =
        Status::unavailable("not scraped");
    auto value = [&](const std::string& fam, const std::string& sample,
                     const std::map<std::string, std::string>& labels = {}) {
      auto it = fams->find(fam);
      return it == fams->end() ? std::nan("") : it->second.value(sample, labels);
    };
    // Scraped until a timed flush (--flush-interval, 1s by default) holds the 20 puts, and
    // nothing applied is left in memory only.
    ASSERT_TRUE(wait_until(
                    [&] {
                      m = curl({url(hc.http(i), "/metrics")});
                      fams = http::testing::parse_prometheus_text(m.body);
                      return m.status == 200 && fams.ok() &&
                             value("kvc_state_flushed_index", "kvc_state_flushed_index") >= 20 &&
                             value("kvc_state_unflushed_bytes", "kvc_state_unflushed_bytes") == 0;
                    },
                    std::chrono::seconds(15), "a state flush of the 20 puts",
                    std::chrono::milliseconds(100))
                    .ok())
        << m.body;
    EXPECT_GE(value("kvc_state_flush_seconds", "kvc_state_flush_seconds_count"), 1) << i;
    EXPECT_GT(value("kvc_state_flush_bytes_total", "kvc_state_flush_bytes_total"), 0) << i;
    EXPECT_GE(value("kvc_entries_applied_bytes_total", "kvc_entries_applied_bytes_total"), 20 * 5)
        << i;
    EXPECT_GT(value("kvc_storage_written_bytes", "kvc_storage_written_bytes"), 0) << i;
    EXPECT_GT(value("kvc_write_amplification", "kvc_write_amplification"), 0) << i;
    EXPECT_GE(value("kvc_raft_term", "kvc_raft_term"), 1) << i;
    EXPECT_GE(value("kvc_raft_applied_index", "kvc_raft_applied_index"), 20) << i;
    EXPECT_GE(value("kvc_raft_commit_index", "kvc_raft_commit_index"),
              value("kvc_raft_applied_index", "kvc_raft_applied_index"))
        << i;
    EXPECT_GE(value("kvc_wal_fsync_seconds", "kvc_wal_fsync_seconds_count"), 1) << i;
    EXPECT_GE(value("kvc_apply_seconds", "kvc_apply_seconds_count"), 1) << i;
    EXPECT_EQ(value("kvc_raft_has_leader", "kvc_raft_has_leader"), 1) << i;
    EXPECT_EQ(fams->at("kvc_wal_fsync_seconds").type, "histogram");
    leaders += value("kvc_raft_is_leader", "kvc_raft_is_leader");
    if (i == *leader) {
      EXPECT_GE(value("kvc_proposals_total", "kvc_proposals_total", {{"outcome", "committed"}}),
                20);
      EXPECT_GE(value("kvc_peer_round_trip_seconds", "kvc_peer_round_trip_seconds_count",
                      {{"peer", cluster.spec((*leader + 1) % 3).name}}),
                1)
          << m.body;
      EXPECT_GE(
          value("kvc_client_request_seconds", "kvc_client_request_seconds_count", {{"op", "get"}}),
          1);
      EXPECT_GE(value("kvc_http_responses_total", "kvc_http_responses_total", {{"code", "2xx"}}),
                1);
    }
  }
  EXPECT_EQ(leaders, 1);
}

TEST(HttpProcessTest, WatchStreamsDeliverInOrderResumeKeepAliveAndEndWithTheConnection) {
  HttpCluster hc("http-watch");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  const int follower = (*leader + 1) % 3;
  const int other = (*leader + 2) % 3;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_status(hc.http(i), "/ready", 200)) << i;
  const std::string& fh = hc.http(follower);
  ASSERT_EQ(watchers_on(fh), 0);

  // A JSON-lines watch of a prefix on a follower; writes go through the client protocol.
  HttpStream live(fh, "/v1/watch/w%2F?prefix=true");
  ASSERT_TRUE(live.head_read());
  ASSERT_EQ(live.status(), 200) << live.head();
  EXPECT_NE(live.head().find("Content-Type: application/x-ndjson"), std::string::npos);
  auto c = cluster.client();
  ASSERT_EQ(c->put("w/a", "1").code, Code::kOk);
  ASSERT_EQ(c->put("other", "x").code, Code::kOk);  // not under the prefix
  ASSERT_EQ(c->put("w/b", "2").code, Code::kOk);
  ASSERT_EQ(c->put("w/a", "3").code, Code::kOk);
  ASSERT_EQ(c->del("w/b").code, Code::kOk);
  ASSERT_TRUE(live.read_until([](const std::string& b) { return json_lines(b).size() >= 4; }))
      << live.body();
  std::vector<JsonValue> got = json_lines(live.body());
  ASSERT_EQ(got.size(), 4u) << live.body();
  const struct {
    const char* type;
    const char* key;
    const char* value;
    std::uint64_t version;
  } want[] = {{"put", "w/a", "1", 1},
              {"put", "w/b", "2", 1},
              {"put", "w/a", "3", 2},
              {"delete", "w/b", nullptr, 0}};
  std::vector<std::uint64_t> revs;
  for (std::size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    revs.push_back(got[i].find("revision")->as_uint64().value_or(0));
    if (i > 0) {
      EXPECT_GT(revs[i], revs[i - 1]);
    }
    ASSERT_EQ(got[i].find("events")->array.size(), 1u);
    const JsonValue& e = got[i].find("events")->array[0];
    EXPECT_EQ(e.find("type")->text, want[i].type);
    EXPECT_EQ(e.find("key")->text, want[i].key);
    EXPECT_EQ(e.find("mod_revision")->as_uint64(), revs[i]);
    EXPECT_EQ(e.find("version")->as_uint64(), want[i].version);
    if (want[i].value != nullptr) {
      EXPECT_EQ(e.find("value")->text, want[i].value);
    }
  }

  // From a revision: the history replays from there, on any member.
  HttpStream replay(hc.http(other),
                    "/v1/watch/w/?prefix=1&start_revision=" + std::to_string(revs[1]));
  ASSERT_TRUE(replay.read_until([](const std::string& b) { return json_lines(b).size() >= 3; }))
      << replay.head() << replay.body();
  got = json_lines(replay.body());
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i].find("revision")->as_uint64(), revs[i + 1]);

  // Server-Sent Events resumed by Last-Event-ID: what follows that revision, each with its id.
  HttpStream sse(fh, "/v1/watch/w/?prefix=true&start_revision=1",
                 {"Accept: text/event-stream", "Last-Event-ID: " + std::to_string(revs[2])});
  ASSERT_TRUE(sse.read_until([](const std::string& b) { return count_of(b, "\n\n") >= 1; }))
      << sse.head() << sse.body();
  EXPECT_NE(sse.head().find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_TRUE(sse.body().starts_with("id: " + std::to_string(revs[3]) + "\ndata: {\"revision\":" +
                                     std::to_string(revs[3]) + ",\"events\":[{\"type\":\"delete\""))
      << sse.body();
  EXPECT_EQ(watchers_on(fh), 2);  // live and sse

  // Idle: keep-alives (an empty line; an SSE comment) every 5 s keep the streams open.
  const std::size_t before = live.body().size();
  ASSERT_TRUE(live.read_until(
      [before](const std::string& b) { return b.size() > before && b.ends_with("\n\n"); },
      std::chrono::seconds(12)))
      << live.body();
  EXPECT_EQ(json_lines(live.body()).size(), 4u);
  EXPECT_FALSE(live.ended());
  ASSERT_TRUE(sse.read_until(
      [](const std::string& b) { return b.find(": keep-alive\n\n") != std::string::npos; },
      std::chrono::seconds(12)));
  // Still live after the quiet spell.
  ASSERT_EQ(c->put("w/c", "4").code, Code::kOk);
  ASSERT_TRUE(live.read_until([](const std::string& b) { return json_lines(b).size() >= 5; }));
  EXPECT_EQ(json_lines(live.body()).back().find("events")->array[0].find("key")->text, "w/c");

  // Closing the connections frees the member's watchers.
  live.close();
  sse.close();
  EXPECT_TRUE(wait_until([&] { return watchers_on(fh) == 0; }, std::chrono::seconds(10),
                         "the follower's watchers to go", std::chrono::milliseconds(100))
                  .ok())
      << watchers_on(fh);
  replay.close();
  EXPECT_TRUE(wait_until([&] { return watchers_on(hc.http(other)) == 0; }, std::chrono::seconds(10),
                         "the other member's watcher to go", std::chrono::milliseconds(100))
                  .ok());
}

TEST(HttpProcessTest, LeaderRouteNamesTheSameLeaderOnEveryMember) {
  HttpCluster hc("http-leader");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_status(hc.http(i), "/ready", 200)) << i;
  std::set<std::string> members;
  std::string leader_id;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    HttpAnswer a = curl({url(hc.http(i), "/v1/leader")});
    ASSERT_EQ(a.status, 200) << a.body;
    Result<JsonValue> v = parse_json(a.body);
    ASSERT_TRUE(v.ok()) << a.body;
    const JsonValue& l = *v->find("leader");
    EXPECT_EQ(l.find("name")->text, cluster.spec(*leader).name);
    EXPECT_FALSE(l.find("client_addr")->text.empty());
    if (leader_id.empty()) leader_id = l.find("id")->text;
    EXPECT_EQ(l.find("id")->text, leader_id);
    members.insert(v->find("member_id")->text);
    // A member knows its own HTTP address only.
    if (i == *leader) {
      ASSERT_NE(l.find("http_addr"), nullptr) << a.body;
      EXPECT_EQ(l.find("http_addr")->text, hc.http(i));
    } else {
      EXPECT_EQ(l.find("http_addr"), nullptr) << a.body;
    }
  }
  EXPECT_EQ(members.size(), 3u);
  EXPECT_EQ(members.count(leader_id), 1u);
  // Alone, a member soon knows no leader: 503 with the error object.
  const int survivor = (*leader + 1) % 3;
  ASSERT_TRUE(cluster.kill(*leader, SIGKILL).ok());
  ASSERT_TRUE(cluster.kill((*leader + 2) % 3, SIGKILL).ok());
  ASSERT_TRUE(wait_status(hc.http(survivor), "/v1/leader", 503));
  HttpAnswer none = curl({url(hc.http(survivor), "/v1/leader")});
  EXPECT_NE(none.body.find("\"code\":\"unavailable\""), std::string::npos) << none.body;
}

// A watch from a revision the history no longer holds: 410 naming the oldest one there is,
// from which a watch works.
TEST(HttpProcessTest, AWatchFromACompactedRevisionIsGone) {
  HttpCluster hc(
      "http-gone",
      {.members = 1, .extra_flags = {"--history-revisions", "10", "--flush-interval", "50ms"}});
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto c = cluster.client();
  std::uint64_t first = 0;
  for (int i = 0; i < 40; ++i) {
    wire::Response r = c->put("g/" + std::to_string(i), "v");
    ASSERT_EQ(r.code, Code::kOk) << r.message;
    if (first == 0) first = r.revision;
  }
  // Once a flush has trimmed the history.
  const std::string from_first =
      "/v1/watch/g%2F?prefix=true&start_revision=" + std::to_string(first);
  HttpAnswer gone;
  ASSERT_TRUE(wait_until(
                  [&] {
                    gone = curl({"--max-time", "1", url(hc.http(0), from_first)});
                    return gone.status == 410;
                  },
                  std::chrono::seconds(10), "a watch from the first write to be refused",
                  std::chrono::milliseconds(100))
                  .ok())
      << gone.status << " " << gone.body;
  // The oldest revision a 410 names, 0 when the answer does not name one.
  auto oldest_named = [](const std::string& body) -> std::uint64_t {
    Result<JsonValue> v = parse_json(body);
    if (!v.ok() || v->find("error") == nullptr) return 0;
    const JsonValue& e = *v->find("error");
    if (e.find("code") == nullptr || e.find("code")->text != "failed_precondition") return 0;
    const JsonValue* compact = e.find("compact_revision");
    return compact == nullptr ? 0 : compact->as_uint64().value_or(0);
  };
  std::uint64_t oldest = oldest_named(gone.body);
  EXPECT_GT(oldest, first) << gone.body;
  // From the oldest revision named, the history replays. A flush after the first answer (of
  // the last puts) may trim the history again: then the watch is refused naming a newer oldest
  // revision, and a client starts again from there, as this one does (a few times at most:
  // nothing is written any more).
  bool replayed = false;
  for (int attempt = 0; attempt < 5 && !replayed; ++attempt) {
    HttpStream s(hc.http(0), "/v1/watch/g%2F?prefix=true&start_revision=" + std::to_string(oldest));
    ASSERT_TRUE(s.read_until([](const std::string& b) { return json_lines(b).size() >= 1; }))
        << s.head() << s.body();
    if (s.status() == 410) {
      const std::uint64_t newer = oldest_named(s.body());
      ASSERT_GT(newer, oldest) << "a 410 must name a newer oldest revision: " << s.body();
      oldest = newer;
      continue;
    }
    ASSERT_EQ(s.status(), 200) << s.head() << s.body();
    // (Revisions are log indexes: the oldest one may hold no event of these keys.)
    const JsonValue* rev = json_lines(s.body())[0].find("revision");
    ASSERT_NE(rev, nullptr) << s.body();
    EXPECT_GE(rev->as_uint64().value_or(0), oldest);
    replayed = true;
  }
  EXPECT_TRUE(replayed) << "the history kept moving with nothing written";
}

// Leases and txns over HTTP, every request sent to a follower: the writes and the lease ops
// (which only the leader's clock answers) go on to the leader, and the client protocol sees
// the same leases, keys and txn effects. The member's limits are answered 4xx.
TEST(HttpProcessTest, LeasesAndTxnsThroughAFollower) {
  HttpCluster hc("http-coord",
                 {.extra_flags = {"--max-txn-ops", "4", "--max-request-bytes", "4096"}});
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  const int follower = (*leader + 1) % 3;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_status(hc.http(i), "/ready", 200)) << i;
  const std::string fh = hc.http(follower);
  auto json_of = [](const HttpAnswer& a) {
    Result<JsonValue> v = parse_json(a.body);
    return v.ok() ? *v : JsonValue{};
  };
  auto post = [&](const std::string& path, const std::string& body) {
    return curl({"-X", "POST", "--data-binary", body, url(fh, path)});
  };

  HttpAnswer g = post("/v1/lease/grant", R"({"ttl":30})");
  ASSERT_EQ(g.status, 200) << g.body;
  const std::string id = json_of(g).find("lease")->text;
  ASSERT_EQ(id.size(), 16u) << g.body;
  EXPECT_EQ(json_of(g).find("ttl")->as_uint64(), 30u);

  HttpAnswer put =
      curl({"-X", "PUT", "--data-binary", "n1", url(fh, "/v1/kv/nodes%2Fn1?lease=" + id)});
  ASSERT_EQ(put.status, 200) << put.body;
  auto c = cluster.client();
  wire::Response got = c->get("nodes/n1");
  ASSERT_EQ(got.code, Code::kOk) << got.message;
  ASSERT_TRUE(got.found);
  EXPECT_EQ(id_hex(got.kvs[0].lease), id);
  EXPECT_EQ(json_of(curl({url(fh, "/v1/kv/nodes/n1")})).find("kv")->find("lease")->text, id);

  HttpAnswer ttl = curl({url(fh, "/v1/lease/" + id + "?keys=true")});
  ASSERT_EQ(ttl.status, 200) << ttl.body;
  const JsonValue tv = json_of(ttl);
  EXPECT_EQ(tv.find("ttl")->as_uint64(), 30u);
  // At most the ttl, plus the grace a new leader's clock adds (an election timeout, well below
  // 10 s here) when the grant was applied before that clock started.
  EXPECT_GT(tv.find("remaining_ms")->as_uint64().value_or(0), 0u);
  EXPECT_LE(tv.find("remaining_ms")->as_uint64().value_or(UINT64_MAX), 40000u);
  ASSERT_EQ(tv.find("keys")->array.size(), 1u) << ttl.body;
  EXPECT_EQ(tv.find("keys")->array[0].find("key")->text, "nodes/n1");

  HttpAnswer ka = post("/v1/lease/keepalive", R"({"lease":")" + id + R"("})");
  ASSERT_EQ(ka.status, 200) << ka.body;
  EXPECT_EQ(json_of(ka).find("ttl")->as_uint64(), 30u);
  HttpAnswer list = curl({url(fh, "/v1/lease")});
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(json_of(list).find("leases")->array.size(), 1u) << list.body;
  EXPECT_EQ(json_of(list).find("leases")->array[0].find("lease")->text, id);

  // A txn: create-if-absent plus a read, then the same again fails and reads the failure branch.
  const std::string txn = R"({"compares":[{"target":"create","key":"cfg","op":"=","value":"0"}],)"
                          R"("success":[{"op":"put","key":"cfg","value":"v1","lease":")" +
                          id +
                          R"("},{"op":"get","key":"nodes/","prefix":true}],)"
                          R"("failure":[{"op":"get","key":"cfg"}]})";
  HttpAnswer t1 = post("/v1/txn", txn);
  ASSERT_EQ(t1.status, 200) << t1.body;
  const JsonValue t1v = json_of(t1);
  EXPECT_TRUE(t1v.find("succeeded")->boolean) << t1.body;
  ASSERT_EQ(t1v.find("results")->array.size(), 2u) << t1.body;
  EXPECT_EQ(t1v.find("results")->array[1].find("kvs")->array.size(), 1u) << t1.body;
  EXPECT_EQ(c->get("cfg").kvs.at(0).value, "v1");
  HttpAnswer t2 = post("/v1/txn", txn);
  ASSERT_EQ(t2.status, 200) << t2.body;
  EXPECT_FALSE(json_of(t2).find("succeeded")->boolean) << t2.body;
  EXPECT_NE(t2.body.find(R"("value":"v1")"), std::string::npos) << t2.body;

  // Compare-and-delete: a stale revision is 409 naming the current one; the right one deletes.
  const std::uint64_t mod = c->get("cfg").kvs.at(0).mod_revision;
  HttpAnswer stale =
      curl({"-X", "DELETE", url(fh, "/v1/kv/cfg?expect_revision=" + std::to_string(mod + 100))});
  EXPECT_EQ(stale.status, 409) << stale.body;
  EXPECT_EQ(json_of(stale).find("error")->find("mod_revision")->as_uint64(), mod) << stale.body;
  EXPECT_TRUE(c->get("cfg").found);
  HttpAnswer cad =
      curl({"-X", "DELETE", url(fh, "/v1/kv/cfg?expect_revision=" + std::to_string(mod))});
  EXPECT_EQ(cad.status, 200) << cad.body;
  EXPECT_FALSE(c->get("cfg").found);

  // Limits: too many ops (the member's --max-txn-ops) and too many bytes are 4xx, nothing applied.
  HttpAnswer many = post(
      "/v1/txn", R"({"success":[{"op":"put","key":"m1","value":"1"},)"
                 R"({"op":"put","key":"m2","value":"1"},{"op":"put","key":"m3","value":"1"},)"
                 R"({"op":"put","key":"m4","value":"1"},{"op":"put","key":"m5","value":"1"}]})");
  EXPECT_EQ(many.status, 400) << many.body;
  EXPECT_NE(many.body.find("--max-txn-ops"), std::string::npos) << many.body;
  HttpAnswer big = post("/v1/txn", R"({"success":[{"op":"put","key":"big","value":")" +
                                       std::string(5000, 'x') + R"("}]})");
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_FALSE(c->get("m1").found);
  EXPECT_FALSE(c->get("big").found);

  // Revoking deletes the lease's keys at once, for both protocols.
  HttpAnswer rv = curl({"-X", "DELETE", url(fh, "/v1/lease/" + id)});
  ASSERT_EQ(rv.status, 200) << rv.body;
  EXPECT_EQ(json_of(rv).find("deleted")->as_uint64(), 1u) << rv.body;
  EXPECT_FALSE(c->get("nodes/n1").found);
  EXPECT_EQ(curl({url(fh, "/v1/lease/" + id)}).status, 404);
  EXPECT_EQ(post("/v1/lease/keepalive", R"({"lease":")" + id + R"("})").status, 404);
  EXPECT_EQ(post("/v1/lease/revoke", R"({"lease":")" + id + R"("})").status, 404);
}

// Every curl line of docs/http.md, in order, against a real member: each answers 2xx (the
// watch streams are ended by the time limit, after their 200 and head).
TEST(HttpProcessTest, CurlExamplesInTheDocsWork) {
  std::ifstream in(std::string(KVC_SOURCE_DIR) + "/docs/http.md");
  ASSERT_TRUE(in.good());
  std::vector<std::string> examples;
  for (std::string line; std::getline(in, line);) {
    const std::size_t at = line.find_first_not_of(' ');
    if (at != std::string::npos && at >= 4 && line.compare(at, 5, "curl ") == 0) {
      examples.push_back(line.substr(at));
    }
  }
  ASSERT_GE(examples.size(), 9u);
  HttpCluster hc("http-docs");
  ProcessCluster& cluster = hc.cluster();
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ASSERT_TRUE(wait_status(hc.http(0), "/ready", 200));
  for (std::string ex : examples) {
    SCOPED_TRACE(ex);
    for (std::size_t at; (at = ex.find("127.0.0.1:8080")) != std::string::npos;) {
      ex.replace(at, 14, hc.http(0));
    }
    HttpAnswer a = run_curl_line(ex + " --max-time 2 -w '\\n@@%{http_code}'");
    EXPECT_GE(a.status, 200) << a.body;
    EXPECT_LT(a.status, 300) << a.body;
  }
}

}  // namespace
}  // namespace kvc::test
