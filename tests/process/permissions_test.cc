// Identities and the permissions file (kvc-permissions(5)) with real kvc-node processes: a
// cluster with a secret and a file granting token `ctl` readwrite on /clusters/, token `ro`
// read on /, and `adm` admin. kvc-ctl and curl (Bearer) do what each token allows and get the
// exact refusal for the rest, with nothing written; a write through a follower's HTTP port is
// checked against the caller; SIGHUP reloads the file, and a bad file keeps the old one.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "curl.h"
#include "kvc/client/client.h"
#include "process_cluster.h"
#include "support/http_stream.h"
#include "support/text.h"
#include "support/wait.h"
#include "support/watch_seen.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;

const std::string kSecret = "5d2b8e1f4a7c0d3e6b9f2a5c8d1e4b7a0f3c6e9d2b5a8f1c4e7d0a3b6c9f2e5a\n";
const std::string kCtlToken = "c3f1d0a9e8b7c6d5e4f3a2b1c0d9e8f7";
const std::string kRoToken = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
const std::string kAdmToken = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

class PermissionsCluster {
 public:
  explicit PermissionsCluster(const std::string& name)
      : dir_("kvc-perms-" + name),
        secret_(dir_.file("secret")),
        perms_(dir_.file("perms")),
        cluster_(name, options()) {
    EXPECT_TRUE(write_secret_file(secret_, kSecret).ok());
    for (int i = 0; i < cluster_.size(); ++i) {
      http_.push_back("127.0.0.1:" + std::to_string(free_port()));
      cluster_.mutable_spec(i).extra_flags = {"--listen-http", http_.back(), "--permissions-file",
                                              perms_};
    }
  }
  ClusterOptions options() const {
    ClusterOptions o;
    o.secret_file = secret_;
    return o;
  }
  // The token lines, made with `kvc-ctl auth hash-token` as an operator would.
  std::string token_line(const std::string& name, const std::string& value) {
    RunResult r = cluster_.ctl_run({"auth", "hash-token", name}, 10000, value + "\n");
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  }
  void write_perms(const std::string& grants) {
    std::ofstream out(perms_);
    out << token_line("ctl", kCtlToken) << token_line("ro", kRoToken)
        << token_line("adm", kAdmToken) << grants;
  }
  static std::string default_grants() {
    return "grant ctl readwrite /clusters/\n"
           "grant ro read /\n"
           "admin adm\n";
  }
  // kvc-ctl with the secret and `token` (empty: none).
  RunResult ctl(const std::string& token, std::vector<std::string> args,
                const std::string& input = "") const {
    std::vector<std::string> full = {"--secret-file", secret_};
    if (!token.empty()) full.insert(full.end(), {"--token", token});
    full.insert(full.end(), args.begin(), args.end());
    return cluster_.ctl_run(full, 30000, input);
  }
  ProcessCluster& cluster() { return cluster_; }
  const std::string& http(int i) const { return http_[static_cast<std::size_t>(i)]; }
  const std::string& perms() const { return perms_; }
  const std::string& secret() const { return secret_; }

 private:
  ScopedTempDir dir_;
  std::string secret_, perms_;
  ProcessCluster cluster_;
  std::vector<std::string> http_;
};

HttpAnswer curl_as(const std::string& token, std::vector<std::string> args) {
  if (!token.empty()) args.insert(args.begin(), {"-H", "Authorization: Bearer " + token});
  return curl(args);
}

TEST(PermissionsProcessTest, TokensAreCheckedOnTheClientPortAndOverHttp) {
  PermissionsCluster pc("perms-check");
  pc.write_perms(PermissionsCluster::default_grants());
  ProcessCluster& c = pc.cluster();
  ASSERT_TRUE(c.start_all().ok());
  Result<int> leader = c.wait_for_leader(20000);
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();

  // ctl writes under /clusters/ and nowhere else.
  RunResult r = pc.ctl(kCtlToken, {"put", "/clusters/a", "v1"});
  ASSERT_EQ(r.status, 0) << r.err;
  r = pc.ctl(kCtlToken, {"get", "/clusters/a"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "v1");
  r = pc.ctl(kCtlToken, {"put", "/other", "x"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ctl may not put /other")) << r.err;
  r = pc.ctl(kCtlToken, {"get", "--prefix", "/"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ctl may not range prefix /")) << r.err;
  // A txn (etcdctl's text: compares, a blank line, success ops): every key it touches.
  r = pc.ctl(kCtlToken, {"txn"}, "exists(\"/clusters/a\")\n\nput /clusters/t 1\nput /other 1\n");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ctl may not txn put /other")) << r.err;

  // ro reads everything, writes nothing.
  r = pc.ctl(kRoToken, {"get", "/clusters/a"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "v1");
  r = pc.ctl(kRoToken, {"put", "/clusters/b", "x"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ro may not put /clusters/b")) << r.err;
  r = pc.ctl(kRoToken, {"del", "--prefix", "/clusters/"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ro may not delete prefix /clusters/")) << r.err;
  // Nothing of that was applied.
  r = pc.ctl(kRoToken, {"get", "/clusters/a"});
  EXPECT_EQ(r.out, "v1");
  EXPECT_EQ(pc.ctl(kRoToken, {"get", "/clusters/b"}).status, 3);
  EXPECT_EQ(pc.ctl(kRoToken, {"get", "/clusters/t"}).status, 3);
  EXPECT_EQ(pc.ctl(kRoToken, {"get", "/other"}).status, 3);

  // Admin: refused for both, allowed for adm.
  const std::string snap = c.dir() + "/snap.db";
  r = pc.ctl(kRoToken, {"snapshot", "save", snap});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ro may not snapshot_save (needs admin)"))
      << r.err;
  r = pc.ctl(kCtlToken, {"transfer-leader", c.spec((*leader + 1) % 3).name});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ctl may not transfer_leader (needs admin)"))
      << r.err;
  r = pc.ctl(kCtlToken, {"member", "remove", c.spec(0).name});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ctl may not member_remove (needs admin)"))
      << r.err;
  EXPECT_EQ(pc.ctl(kCtlToken, {"member", "list"}).status, 0);
  r = pc.ctl(kAdmToken, {"snapshot", "save", snap});
  EXPECT_EQ(r.status, 0) << r.err;

  // whoami, and a token the members do not know (refused, never anonymous).
  r = pc.ctl(kCtlToken, {"auth", "whoami"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "ctl\nreadwrite \"/clusters/\"\n");
  r = pc.ctl("", {"auth", "whoami"});
  EXPECT_EQ(r.out, "secret\n(no grants)\n");
  r = pc.ctl("", {"get", "/clusters/a"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: secret may not get /clusters/a")) << r.err;
  r = pc.ctl("not-a-token", {"get", "/clusters/a"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "unknown token")) << r.err;

  // HTTP: /v1 needs a token (the cluster has a secret); the probes stay open.
  const int follower = (*leader + 1) % 3;
  const std::string fh = pc.http(follower);
  HttpAnswer a = curl({url(fh, "/v1/kv/%2Fclusters%2Fa")});
  EXPECT_EQ(a.status, 401);
  EXPECT_TRUE(contains(a.body, "authentication required")) << a.body;
  a = curl({"-o", "/dev/null", "-D", "-", url(fh, "/v1/kv/%2Fclusters%2Fa")});
  EXPECT_TRUE(contains(a.body, "WWW-Authenticate: Bearer")) << a.body;
  EXPECT_EQ(curl({url(fh, "/health")}).status, 200);
  a = curl_as("not-a-token", {url(fh, "/v1/kv/%2Fclusters%2Fa")});
  EXPECT_EQ(a.status, 401);
  EXPECT_TRUE(contains(a.body, "unknown token")) << a.body;
  a = curl_as(kRoToken, {url(fh, "/v1/kv/%2Fclusters%2Fa")});
  EXPECT_EQ(a.status, 200) << a.body;
  a = curl_as(kCtlToken, {url(fh, "/v1/kv?prefix=%2F")});
  EXPECT_EQ(a.status, 403);
  EXPECT_TRUE(contains(a.body, "permission denied: ctl may not range prefix /")) << a.body;
  a = curl_as(kCtlToken, {url(fh, "/v1/auth/whoami")});
  EXPECT_EQ(a.status, 200);
  EXPECT_TRUE(contains(a.body, "\"identity\":\"ctl\"")) << a.body;
  // A write through a follower is checked against the caller: ro is refused (by the follower),
  // ctl's is forwarded with its identity and applied by the leader.
  a = curl_as(kRoToken, {"-X", "PUT", "--data-binary", "x", url(fh, "/v1/kv/%2Fclusters%2Fh")});
  EXPECT_EQ(a.status, 403);
  EXPECT_TRUE(contains(a.body, "permission denied: ro may not put /clusters/h")) << a.body;
  EXPECT_EQ(pc.ctl(kRoToken, {"get", "/clusters/h"}).status, 3);
  a = curl_as(kCtlToken, {"-X", "PUT", "--data-binary", "h1", url(fh, "/v1/kv/%2Fclusters%2Fh")});
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(pc.ctl(kRoToken, {"get", "/clusters/h"}).out, "h1");
  a = curl_as(kCtlToken, {"-X", "PUT", "--data-binary", "x", url(fh, "/v1/kv/%2Fother")});
  EXPECT_EQ(a.status, 403);
  EXPECT_TRUE(contains(a.body, "permission denied: ctl may not put /other")) << a.body;
}

TEST(PermissionsProcessTest, SighupReloadsTheFileAndABadFileKeepsTheOldOne) {
  PermissionsCluster pc("perms-reload");
  pc.write_perms(PermissionsCluster::default_grants());
  ProcessCluster& c = pc.cluster();
  ASSERT_TRUE(c.start_all().ok());
  ASSERT_TRUE(c.wait_for_leader(20000).ok());
  RunResult r = pc.ctl(kRoToken, {"put", "/clusters/r", "x"});
  ASSERT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ro may not put /clusters/r")) << r.err;

  // Grant ro readwrite on /clusters/ and tell every member.
  pc.write_perms(PermissionsCluster::default_grants() + "grant ro readwrite /clusters/\n");
  for (int i = 0; i < c.size(); ++i) ASSERT_TRUE(c.kill(i, SIGHUP).ok());
  ASSERT_TRUE(wait_until(
                  [&] {
                    return pc.ctl(kRoToken, {"put", "/clusters/r", "x"}).status == 0;
                  },
                  15s, "ro may write after the reload", 200ms)
                  .ok());
  EXPECT_TRUE(wait_until([&] { return contains(read_file(c.log_path(0)), "permissions reloaded"); },
                         10s, "the reload in the log")
                  .ok());

  // A file that does not parse: logged, and the old permissions stay.
  {
    std::ofstream out(pc.perms());
    out << "grant anonymous write /\n";
  }
  for (int i = 0; i < c.size(); ++i) ASSERT_TRUE(c.kill(i, SIGHUP).ok());
  for (int i = 0; i < c.size(); ++i) {
    EXPECT_TRUE(wait_until(
                    [&] {
                      return contains(
                          read_file(c.log_path(i)),
                          "permissions reload failed, the old permissions stay in use: " +
                              pc.perms() + ":1: grant: unknown access \"write\"");
                    },
                    10s, "the failed reload in the log")
                    .ok())
        << read_file(c.log_path(i));
  }
  r = pc.ctl(kRoToken, {"put", "/clusters/r", "y"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = pc.ctl(kRoToken, {"put", "/other", "y"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "permission denied: ro may not put /other")) << r.err;
}

// Watches are checked when they start and again when the file is reloaded: a SIGHUP that takes
// away `ro`'s read grant ends its open watches, on the client port (a final permission_denied
// answer) and over HTTP (an error line, then the stream ends), and the member logs each one; a
// watch the new file still allows (`ctl`'s) goes on. Nothing written after the reload reaches
// `ro`.
TEST(PermissionsProcessTest, AReloadThatRemovesAGrantEndsTheOpenWatches) {
  PermissionsCluster pc("perms-watch");
  pc.write_perms(PermissionsCluster::default_grants());
  ProcessCluster& c = pc.cluster();
  ASSERT_TRUE(c.start_all().ok());
  ASSERT_TRUE(c.wait_for_leader(20000).ok());

  using Seen = kvc::test::WatchSeen;
  auto watch = [&](const std::string& token, Seen& seen) {
    client::ClientOptions o;
    o.endpoints.push_back(*net::parse_address(c.client_addr(0)));
    o.timeout_ms = 5000;
    o.secret_file = pc.secret();
    o.token = token;
    Result<std::unique_ptr<client::Client>> cl = client::Client::open(std::move(o));
    EXPECT_TRUE(cl.ok()) << cl.status().to_string();
    (*cl)->stream({.op = wire::Op::kWatch, .key = "/clusters/", .prefix = true}, seen.recorder());
    return std::move(*cl);
  };
  auto keys_of = [](Seen& seen) { return seen.keys_so_far(); };
  Seen ro, ctl;
  std::unique_ptr<client::Client> ro_client = watch(kRoToken, ro);
  std::unique_ptr<client::Client> ctl_client = watch(kCtlToken, ctl);
  for (Seen* seen : {&ro, &ctl}) {
    ASSERT_TRUE(wait_until(
                    [seen] {
                      std::lock_guard<std::mutex> lock(seen->mu);
                      return seen->started;
                    },
                    10s, "the watch to start")
                    .ok());
  }
  HttpStream ro_http(pc.http(0), "/v1/watch/%2Fclusters%2F?prefix=true",
                     {"Authorization: Bearer " + kRoToken});
  ASSERT_TRUE(ro_http.head_read());
  ASSERT_EQ(ro_http.status(), 200) << ro_http.head();

  // Every watch is live: each sees the first write.
  ASSERT_EQ(pc.ctl(kCtlToken, {"put", "/clusters/a", "1"}).status, 0);
  const std::vector<std::string> just_a = {"/clusters/a"};
  ASSERT_TRUE(wait_until([&] { return keys_of(ro) == just_a && keys_of(ctl) == just_a; }, 10s,
                         "both client-port watches to see /clusters/a")
                  .ok());
  ASSERT_TRUE(ro_http.read_until([](const std::string& b) {
    return contains(b, R"("key":"/clusters/a")");
  })) << ro_http.body();

  // The grant goes; ctl keeps its own.
  pc.write_perms("grant ctl readwrite /clusters/\nadmin adm\n");
  for (int i = 0; i < c.size(); ++i) ASSERT_TRUE(c.kill(i, SIGHUP).ok());
  ASSERT_TRUE(wait_until(
                  [&] {
                    std::lock_guard<std::mutex> lock(ro.mu);
                    return !ro.finals.empty();
                  },
                  10s, "ro's client-port watch to end")
                  .ok());
  {
    std::lock_guard<std::mutex> lock(ro.mu);
    ASSERT_EQ(ro.finals.size(), 1u);
    EXPECT_EQ(ro.finals[0].code, Code::kPermissionDenied) << ro.finals[0].message;
    EXPECT_TRUE(contains(ro.finals[0].message, "permission denied: ro may not"))
        << ro.finals[0].message;
  }
  EXPECT_TRUE(ro_http.read_until([](const std::string& b) {
    return contains(b, R"("code":"permission_denied")");
  })) << ro_http.body();
  EXPECT_TRUE(wait_until(
                  [&] {
                    return count_of(
                               read_file(c.log_path(0)),
                               "watch ended by a permissions reload identity=ro key=/clusters/ "
                               "prefix=true") == 2;
                  },
                  10s, "one log line per ended watch")
                  .ok())
      << read_file(c.log_path(0));
  EXPECT_FALSE(contains(read_file(c.log_path(0)), "permissions reload identity=ctl"));

  // After the reload: ctl's watch sees the next write, ro's two saw nothing more.
  ASSERT_EQ(pc.ctl(kCtlToken, {"put", "/clusters/b", "2"}).status, 0);
  const std::vector<std::string> a_b = {"/clusters/a", "/clusters/b"};
  EXPECT_TRUE(
      wait_until([&] { return keys_of(ctl) == a_b; }, 10s, "ctl's watch to see /clusters/b").ok());
  EXPECT_EQ(keys_of(ro), just_a);
  // The HTTP stream's last line is the error: nothing came after it.
  (void)ro_http.read_until([](const std::string&) { return false; }, 1s);
  EXPECT_FALSE(contains(ro_http.body(), "/clusters/b")) << ro_http.body();
  const std::string& body = ro_http.body();
  const std::size_t error = body.rfind(R"({"error")");
  ASSERT_NE(error, std::string::npos) << body;
  EXPECT_EQ(body.find('\n', error), body.size() - 1) << body;
  {
    std::lock_guard<std::mutex> lock(ctl.mu);
    EXPECT_TRUE(ctl.finals.empty());
  }
}

// Refusals are logged at info, naming the code, identity, operation, key and address, at most
// one line a second per code (the next line counts the ones left out), and counted in /metrics
// by code and operation, on the client port and over HTTP.
TEST(PermissionsProcessTest, RefusalsAreLoggedRateLimitedAndCounted) {
  PermissionsCluster pc("perms-refusals");
  pc.write_perms(PermissionsCluster::default_grants());
  ProcessCluster& c = pc.cluster();
  ASSERT_TRUE(c.start_all().ok());
  ASSERT_TRUE(c.wait_for_leader(20000).ok());
  client::ClientOptions o;
  o.endpoints.push_back(*net::parse_address(c.client_addr(0)));
  o.timeout_ms = 5000;
  o.secret_file = pc.secret();
  o.token = kRoToken;
  Result<std::unique_ptr<client::Client>> ro = client::Client::open(std::move(o));
  ASSERT_TRUE(ro.ok()) << ro.status().to_string();

  // Every put goes to member 0 (the client would send writes to the leader by itself).
  auto refused_put = [&] {
    return (*ro)->call_sync({.op = wire::Op::kPut, .key = "/clusters/denied", .value = "x"},
                            {.target = *net::parse_address(c.client_addr(0))});
  };
  // A burst of 20 refused puts on one connection: one line now, the rest suppressed...
  constexpr int kBurst = 20;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kBurst; ++i) {
    wire::Response r = refused_put();
    ASSERT_EQ(r.code, Code::kPermissionDenied) << r.message;
  }
  const auto burst = std::chrono::steady_clock::now() - started;
  const std::string line =
      "access refused code=permission_denied identity=ro op=put key=/clusters/denied "
      "from=127.0.0.1:";
  ASSERT_TRUE(wait_until([&] { return contains(read_file(c.log_path(0)), line); }, 10s,
                         "the refusal in the log")
                  .ok())
      << read_file(c.log_path(0));
  // At most one line per started second of the burst.
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(burst).count();
  EXPECT_LE(count_of(read_file(c.log_path(0)), line), static_cast<std::size_t>(seconds + 1))
      << read_file(c.log_path(0));
  // ...and every refusal of the burst is either logged or counted by a later line's
  // suppressed=N: the first refusal after the window (one second on the member's clock) is
  // logged and counts the rest. Refusals go on until a new line shows up.
  const std::size_t lines = count_of(read_file(c.log_path(0)), line);
  int sent = kBurst;
  ASSERT_TRUE(wait_until(
                  [&] {
                    if (refused_put().code != Code::kPermissionDenied) return false;
                    ++sent;
                    return count_of(read_file(c.log_path(0)), line) > lines;
                  },
                  10s, "a refusal after the window to be logged", 50ms)
                  .ok())
      << read_file(c.log_path(0));
  auto accounted = [&] {
    const std::string log = read_file(c.log_path(0));
    std::size_t total = 0;
    for (std::size_t at = log.find(line); at != std::string::npos; at = log.find(line, at + 1)) {
      const std::size_t end = log.find('\n', at);
      const std::size_t n = log.find("suppressed=", at);
      if (n == std::string::npos || n > end) return std::size_t{0};
      total += 1 + std::stoul(log.substr(n + 11, end - n - 11));
    }
    return total;
  };
  // The burst and the first refusal after it are all accounted for; those sent after that one
  // (while the test waited to see its line) are too once a later line counts them, if any is.
  const std::size_t total = accounted();
  EXPECT_GE(total, std::size_t{kBurst} + 1) << read_file(c.log_path(0));
  EXPECT_LE(total, static_cast<std::size_t>(sent)) << read_file(c.log_path(0));

  // HTTP: an unknown token, and a refused write.
  HttpAnswer a = curl_as("not-a-token", {url(pc.http(0), "/v1/kv/%2Fclusters%2Fa")});
  EXPECT_EQ(a.status, 401) << a.body;
  a = curl_as(kRoToken, {"-X", "PUT", "--data-binary", "x", url(pc.http(0), "/v1/kv/%2Fhttp")});
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(wait_until(
                  [&] {
                    return contains(read_file(c.log_path(0)),
                                    "access refused code=unauthenticated identity=- op=http "
                                    "key=/v1/kv//clusters/a from=127.0.0.1:");
                  },
                  10s, "the unauthenticated request in the log")
                  .ok())
      << read_file(c.log_path(0));

  HttpAnswer m = curl({url(pc.http(0), "/metrics")});
  ASSERT_EQ(m.status, 200);
  EXPECT_TRUE(contains(m.body, "kvc_access_refused_total{code=\"permission_denied\",op=\"put\"} " +
                                   std::to_string(sent + 1)))
      << m.body;
  EXPECT_TRUE(contains(m.body, R"(kvc_access_refused_total{code="unauthenticated",op="http"} 1)"))
      << m.body;
}

TEST(PermissionsProcessTest, BadFileRefusesStartWithFileAndLine) {
  ScopedTempDir dir("kvc-perms-bad");
  const std::string perms = dir.file("perms");
  {
    std::ofstream out(perms);
    out << "# ok\ngrant nobody read /\n";
  }
  RunResult r =
      run_command({binary_path("kvc-node"), "--name", "m1", "--data-dir", dir.file("data"),
                   "--listen-peer", "127.0.0.1:0", "--permissions-file", perms},
                  20000);
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(
      r.err, "kvc-node: --permissions-file: " + perms + ":2: grant: no token named \"nobody\""))
      << r.err;
}

}  // namespace
}  // namespace kvc::test
