// Identities and the permissions file (kvc-permissions(5)) with real kvc-node processes: a
// cluster with a secret and a file granting token `ctl` readwrite on /clusters/, token `ro`
// read on /, and `adm` admin. kvc-ctl and curl (Bearer) do what each token allows and get the
// exact refusal for the rest, with nothing written; a write through a follower's HTTP port is
// checked against the caller; SIGHUP reloads the file, and a bad file keeps the old one.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "curl.h"
#include "process_cluster.h"
#include "support/text.h"
#include "support/wait.h"

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
