// TLS on the client and peer ports with real kvc-node processes (docs/security.md): a mutual-TLS
// cluster serves kvc-ctl with a certificate; a client without one, a plaintext client and a
// client that trusts another CA are refused with the documented messages; a member whose peer
// certificate is from another CA, expired or names another address is refused and the other
// two keep serving; a TLS client at a plaintext member learns why; the shared secret as a TLS
// pre-shared key; a weak secret refused at start-up; SIGHUP reloads certificates for new
// connections and keeps the old ones when a file does not load; the HTTP port speaks HTTPS with
// the client port's certificates (curl --cacert, forwarded writes, plain HTTP refused with 400);
// a client certificate's subject is the identity a permissions file grants to. Certificates are
// made at test time.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "curl.h"
#include "kvc/server/permissions.h"
#include "process_cluster.h"
#include "support/child_process.h"
#include "support/ports.h"
#include "support/test_pki.h"
#include "support/text.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using kvc::test::issue;
using kvc::test::Issued;
using kvc::test::write_cert;
using kvc::test::write_key;

// A CA, a member certificate naming 127.0.0.1 (every member's peer and client address), a
// client certificate; a second CA with a member certificate; an expired member certificate;
// a member certificate that names another address.
struct Certificates {
  ScopedTempDir dir{"kvc-tls-pki"};
  std::string ca, member, member_key, client, client_key;
  std::string other_ca, other_member, other_member_key;
  std::string expired, expired_key, wrong_san, wrong_san_key;

  Certificates() {
    Issued ca_i = issue("kvc test CA", nullptr, "", 1, 3650);
    Issued member_i = issue("member", &ca_i, "IP:127.0.0.1,DNS:localhost", 2);
    Issued client_i = issue("operator", &ca_i, "DNS:operator.example", 3);
    Issued other_ca_i = issue("other CA", nullptr, "", 4, 3650);
    Issued other_i = issue("impostor", &other_ca_i, "IP:127.0.0.1", 5);
    Issued expired_i = issue("old member", &ca_i, "IP:127.0.0.1", 6, -2);
    Issued wrong_i = issue("elsewhere", &ca_i, "IP:10.9.9.9", 7);
    auto both = [this](const Issued& i, const std::string& name, std::string* cert,
                       std::string* key) {
      *cert = dir.file(name + ".pem");
      *key = dir.file(name + "-key.pem");
      write_cert(*cert, i);
      write_key(*key, i);
    };
    ca = dir.file("ca.pem");
    write_cert(ca, ca_i);
    other_ca = dir.file("other-ca.pem");
    write_cert(other_ca, other_ca_i);
    both(member_i, "member", &member, &member_key);
    both(client_i, "client", &client, &client_key);
    both(other_i, "other-member", &other_member, &other_member_key);
    both(expired_i, "expired", &expired, &expired_key);
    both(wrong_i, "wrong-san", &wrong_san, &wrong_san_key);
  }

  // A member's flags: mutual TLS on both ports with `cert`/`key`, trusting `trusted`.
  std::vector<std::string> member_flags(const std::string& cert, const std::string& key,
                                        const std::string& trusted = {}) const {
    const std::string& t = trusted.empty() ? ca : trusted;
    return {"--cert-file",
            cert,
            "--key-file",
            key,
            "--trusted-ca-file",
            t,
            "--client-cert-auth",
            "--peer-cert-file",
            cert,
            "--peer-key-file",
            key,
            "--peer-trusted-ca-file",
            t,
            "--peer-client-cert-auth"};
  }
  std::vector<std::string> ctl_flags() const {
    return {"--cacert", ca, "--cert", client, "--key", client_key};
  }
};

const Certificates& pki() {
  static const Certificates* c = new Certificates();
  return *c;
}

// curl as an operator with the CA and the client certificate.
HttpAnswer curl_tls(std::vector<std::string> args) {
  std::vector<std::string> all = {"--cacert",   pki().ca, "--cert",
                                  pki().client, "--key",  pki().client_key};
  all.insert(all.end(), args.begin(), args.end());
  return curl(all);
}

// The cluster's own clients (wait_for_leader, status) use the client certificate. Each member
// gets its flags in its spec (give_certificates), so that one can differ.
ClusterOptions tls_cluster() {
  ClusterOptions o;
  o.client_tls = {
      .cert_file = pki().client, .key_file = pki().client_key, .trusted_ca_file = pki().ca};
  return o;
}

void give_certificates(ProcessCluster& cluster) {
  for (int i = 0; i < cluster.size(); ++i) {
    cluster.mutable_spec(i).extra_flags = pki().member_flags(pki().member, pki().member_key);
  }
}

std::vector<std::string> with(std::vector<std::string> flags,
                              const std::vector<std::string>& args) {
  flags.insert(flags.end(), args.begin(), args.end());
  return flags;
}

TEST(TlsProcessTest, MutualTlsClusterServesClientsWithCertificatesOnly) {
  ProcessCluster cluster("tls-mutual", tls_cluster());
  give_certificates(cluster);
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());  // the peers linked over mutual TLS

  ProcessCluster::CtlResult put =
      cluster.ctl_with(cluster.client_addr(0), with(pki().ctl_flags(), {"put", "/tls/a", "1"}));
  ASSERT_EQ(put.status, 0) << put.out;
  for (int i : {1, 2}) {
    ProcessCluster::CtlResult get =
        cluster.ctl_with(cluster.client_addr(i), with(pki().ctl_flags(), {"get", "/tls/a"}));
    EXPECT_EQ(get.status, 0) << get.out;
    EXPECT_EQ(get.out, "1");
  }

  // No client certificate: refused by the member, and kvc-ctl says what to give.
  ProcessCluster::CtlResult no_cert = cluster.ctl_with(
      cluster.client_addr(0), {"--timeout", "2s", "--cacert", pki().ca, "get", "/tls/a"});
  EXPECT_EQ(no_cert.status, 1) << no_cert.out;
  EXPECT_TRUE(contains(no_cert.out,
                       "tls: tlsv13 alert certificate required: the server requires a client "
                       "certificate: give --cert and --key"))
      << no_cert.out;

  // Plaintext at a TLS port.
  ProcessCluster::CtlResult plain =
      cluster.ctl_with(cluster.client_addr(0), {"--timeout", "2s", "get", "/tls/a"});
  EXPECT_EQ(plain.status, 1) << plain.out;
  EXPECT_TRUE(contains(plain.out, "tls: the server speaks TLS and this side sent plaintext"))
      << plain.out;

  // A client that trusts another CA refuses the member.
  ProcessCluster::CtlResult other = cluster.ctl_with(
      cluster.client_addr(0), {"--timeout", "2s", "--cacert", pki().other_ca, "--cert",
                               pki().client, "--key", pki().client_key, "get", "/tls/a"});
  EXPECT_EQ(other.status, 1) << other.out;
  EXPECT_TRUE(contains(other.out, "the server's certificate is not signed by a CA we trust"))
      << other.out;

  // The member logged the refusals with their reasons.
  const std::string log = read_file(cluster.log_path(0));
  EXPECT_TRUE(contains(log, "this port speaks TLS: the client sent plaintext (a kvc frame)"));
  EXPECT_TRUE(contains(log, "the client sent no certificate and this side requires one"));
}

// Member 2 presents a bad peer certificate: the other two refuse it, log why, and serve.
void expect_refused_peer(const std::string& name, const std::string& cert, const std::string& key,
                         const std::string& trusted, const std::string& logged) {
  SCOPED_TRACE(name);
  ProcessCluster cluster("tls-" + name, tls_cluster());
  give_certificates(cluster);
  cluster.mutable_spec(2).extra_flags = pki().member_flags(cert, key, trusted);
  ASSERT_TRUE(cluster.start_all().ok());
  EXPECT_TRUE(wait_until(
                  [&] {
                    return contains(read_file(cluster.log_path(0)), logged) ||
                           contains(read_file(cluster.log_path(1)), logged);
                  },
                  std::chrono::milliseconds(5000), "the refusal in a log")
                  .ok())
      << "no log line with: " << logged << "\n"
      << read_file(cluster.log_path(0));
  // The other two elect a leader between them and serve (wait_for_leader would wait for
  // member 2 to agree, which it cannot).
  const std::string two = cluster.client_addr(0) + "," + cluster.client_addr(1);
  ProcessCluster::CtlResult put =
      cluster.ctl_with(two, with(pki().ctl_flags(), {"--timeout", "8s", "put", "/tls/k", "v"}));
  EXPECT_EQ(put.status, 0) << put.out;
  ProcessCluster::CtlResult get =
      cluster.ctl_with(cluster.client_addr(1), with(pki().ctl_flags(), {"get", "/tls/k"}));
  EXPECT_EQ(get.status, 0) << get.out;
  EXPECT_EQ(get.out, "v");
}

TEST(TlsProcessTest, PeerWithCertificateFromAnotherCaIsRefused) {
  expect_refused_peer("other-ca", pki().other_member, pki().other_member_key, pki().other_ca,
                      "the server's certificate is not signed by a CA we trust");
}

TEST(TlsProcessTest, PeerWithExpiredCertificateIsRefused) {
  expect_refused_peer("expired", pki().expired, pki().expired_key, "",
                      "certificate verify failed (certificate has expired)");
}

TEST(TlsProcessTest, PeerWhoseCertificateNamesAnotherAddressIsRefused) {
  expect_refused_peer("wrong-san", pki().wrong_san, pki().wrong_san_key, "", "IP address mismatch");
}

TEST(TlsProcessTest, TlsClientAtAPlaintextMemberLearnsWhy) {
  ClusterOptions o;
  o.members = 1;
  ProcessCluster cluster("tls-plain-member", o);
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  // The member answers the handshake with a plaintext refusal, so the client fails at once
  // (exit 1) naming the mismatch, rather than retrying until its deadline (exit 5).
  ProcessCluster::CtlResult r = cluster.ctl_with(
      cluster.client_addr(0), {"--timeout", "30s", "--cacert", pki().ca, "get", "/tls/a"});
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out,
                       "tls: the server does not speak TLS: it sent plaintext (a kvc frame); is "
                       "it a member without TLS, or another port?"))
      << r.out;
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)),
                       "tls: this port does not speak TLS: the client sent a TLS handshake"));
}

// The HTTP port of a mutual-TLS cluster speaks HTTPS with the client port's certificates and
// requires a client certificate too: curl --cacert --cert --key writes on the leader and on a
// follower (which forwards to the leader through its own TLS client), reads everywhere, /health;
// curl without a certificate is refused; plain HTTP at the port gets 400 naming the mismatch.
TEST(TlsProcessTest, HttpPortSpeaksHttpsWithTheClientPortCertificates) {
  ASSERT_FALSE(curl_path().empty()) << "curl is not installed (scripts/install-deps installs it)";
  ProcessCluster cluster("tls-https", tls_cluster());
  give_certificates(cluster);
  std::vector<std::string> http;
  for (int i = 0; i < cluster.size(); ++i) {
    http.push_back("127.0.0.1:" + std::to_string(free_port()));
    cluster.mutable_spec(i).extra_flags.push_back("--listen-http");
    cluster.mutable_spec(i).extra_flags.push_back(http.back());
  }
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();
  const int follower = (*leader + 1) % cluster.size();
  auto url = [&](int i, const std::string& path) { return "https://" + http[i] + path; };

  HttpAnswer put = curl_tls({"-X", "PUT", "--data-binary", "v1", url(*leader, "/v1/kv/x")});
  ASSERT_EQ(put.status, 200) << put.body << put.err;
  // Through a follower: forwarded to the leader (the follower's client presents its member
  // certificate to the leader's --client-cert-auth client port).
  HttpAnswer fput = curl_tls({"-X", "PUT", "--data-binary", "v2", url(follower, "/v1/kv/y")});
  ASSERT_EQ(fput.status, 200) << fput.body << fput.err;
  for (int i = 0; i < cluster.size(); ++i) {
    HttpAnswer x = curl_tls({url(i, "/v1/kv/x")});
    EXPECT_EQ(x.status, 200) << x.body << x.err;
    EXPECT_TRUE(contains(x.body, R"("value":"v1")")) << x.body;
    HttpAnswer y = curl_tls({url(i, "/v1/kv/y")});
    EXPECT_EQ(y.status, 200) << y.body << y.err;
    EXPECT_TRUE(contains(y.body, R"("value":"v2")")) << y.body;
    HttpAnswer health = curl_tls({url(i, "/health")});
    EXPECT_EQ(health.status, 200) << health.body << health.err;
  }

  // --client-cert-auth on the HTTP port: a client certificate is asked for and verified when
  // sent; /v1 needs one (or a Bearer token), the open paths (the probes, /metrics) need none.
  HttpAnswer anonymous = curl({"--cacert", pki().ca, url(follower, "/v1/kv/x")});
  EXPECT_EQ(anonymous.status, 401) << anonymous.body << anonymous.err;
  EXPECT_TRUE(contains(anonymous.body, "authentication required")) << anonymous.body;
  for (const char* open : {"/health", "/ready", "/metrics"}) {
    HttpAnswer probe = curl({"--cacert", pki().ca, url(follower, open)});
    EXPECT_EQ(probe.status, 200) << open << ": " << probe.body << probe.err;
  }
  // A token on a member without a permissions file names no one: 401, nothing read.
  HttpAnswer token =
      curl({"--cacert", pki().ca, "-H", "Authorization: Bearer abc", url(follower, "/v1/kv/x")});
  EXPECT_EQ(token.status, 401) << token.body << token.err;
  // A certificate that does not verify ends the handshake: no answer at all, on any path.
  for (const char* path : {"/health", "/v1/kv/x"}) {
    HttpAnswer other = curl({"--cacert", pki().ca, "--cert", pki().other_member, "--key",
                             pki().other_member_key, url(follower, path)});
    EXPECT_NE(other.exit_status, 0) << path;
    EXPECT_EQ(other.status, 0) << path << ": " << other.body;
  }
  // Plain HTTP at the HTTPS port: answered in plain HTTP, naming the mismatch.
  HttpAnswer plain = curl({"http://" + http[follower] + "/v1/kv/x"});
  EXPECT_EQ(plain.status, 400) << plain.body << plain.err;
  EXPECT_TRUE(contains(plain.body,
                       "this port speaks HTTPS: the request was sent in plain HTTP; "
                       "use https://"))
      << plain.body;
  EXPECT_TRUE(wait_until(
                  [&] {
                    return contains(read_file(cluster.log_path(follower)),
                                    "https connection refused from=127.0.0.1:");
                  },
                  std::chrono::seconds(10), "the refusal in the follower's log")
                  .ok());
  HttpAnswer metrics = curl_tls({url(follower, "/metrics")});
  EXPECT_TRUE(
      contains(metrics.body, R"(kvc_http_tls_handshake_failures_total{reason="plain_http"} 1)"))
      << metrics.body;
}

constexpr const char* kSecret = "9c1e4f7a2b8d3e6f0a5c9b2d7e4f1a8c3b6d9e2f5a8c1b4d7e0f3a6c9b2e5d8f";
constexpr const char* kOtherSecret =
    "1f4a7c0e3b6d9f2a5c8e1b4d7f0a3c6e9b2d5f8a1c4e7b0d3f6a9c2e5b8d1f4a";

TEST(TlsProcessTest, SharedSecretIsAPreSharedKeyOnBothPorts) {
  ScopedTempDir dir("kvc-tls-psk");
  const std::string good = dir.file("secret"), other = dir.file("other");
  ASSERT_TRUE(write_secret_file(good, std::string(kSecret) + "\n").ok());
  ASSERT_TRUE(write_secret_file(other, std::string(kOtherSecret) + "\n").ok());
  ClusterOptions o;
  o.secret_file = good;
  ProcessCluster cluster("tls-psk", o);
  // A secret and no certificates: the HTTP port stays plain HTTP, and says so at start-up.
  const std::string http0 = "127.0.0.1:" + std::to_string(free_port());
  cluster.mutable_spec(0).extra_flags = {"--listen-http", http0};
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ProcessCluster::CtlResult put = cluster.ctl({"--secret-file", good, "put", "/psk/a", "1"});
  ASSERT_EQ(put.status, 0) << put.out;
  ProcessCluster::CtlResult get =
      cluster.ctl_with(cluster.client_addr(2), {"--secret-file", good, "get", "/psk/a"});
  EXPECT_EQ(get.status, 0) << get.out;
  EXPECT_EQ(get.out, "1");

  ProcessCluster::CtlResult wrong =
      cluster.ctl({"--timeout", "2s", "--secret-file", other, "get", "/psk/a"});
  EXPECT_EQ(wrong.status, 1) << wrong.out;
  EXPECT_TRUE(contains(wrong.out,
                       "tls handshake failed: sslv3 alert illegal parameter: the server refused "
                       "our shared secret: both sides must have the same secret"))
      << wrong.out;
  ProcessCluster::CtlResult none = cluster.ctl({"--timeout", "2s", "get", "/psk/a"});
  EXPECT_EQ(none.status, 1) << none.out;
  EXPECT_TRUE(contains(none.out, "tls: the server speaks TLS and this side sent plaintext"))
      << none.out;
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)),
                       "binder does not verify: the client's shared secret differs"));
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)),
                       "(--listen-http) speaks plain HTTP: the shared secret cannot protect it"));
  HttpAnswer health = curl({"http://" + http0 + "/ready"});
  EXPECT_EQ(health.status, 200) << health.body << health.err;
}

TEST(TlsProcessTest, WeakSecretIsRefusedAtStartUp) {
  ScopedTempDir dir("kvc-tls-weak");
  const std::string weak = dir.file("secret");
  ASSERT_TRUE(write_secret_file(weak, "password123\n").ok());
  ClusterOptions o;
  o.members = 1;
  o.secret_file = weak;
  ProcessCluster cluster("tls-weak", o);
  ASSERT_TRUE(cluster.start(0).ok());
  Result<int> rc = cluster.wait_exit(0, 5000);
  ASSERT_TRUE(rc.ok()) << rc.status().to_string();
  EXPECT_EQ(*rc, 2);
  const std::string log = read_file(cluster.log_path(0));
  EXPECT_TRUE(contains(log, "the shared secret is too weak")) << log;
  EXPECT_TRUE(contains(log, "openssl rand -hex 32")) << log;
}

// Member 0's client port serves a certificate from files the test then replaces: SIGHUP makes
// new connections see the new one (a client trusting the new CA gets in, one trusting only the
// old is refused), a SIGHUP with a file that does not load changes nothing and is logged, and
// the cluster never stops serving (its peer links use the unchanged peer certificate).
TEST(TlsProcessTest, SighupReloadsCertificatesForNewConnectionsAndKeepsTheCluster) {
  ScopedTempDir dir("kvc-tls-reload");
  const std::string cert = dir.file("client-port.pem"), key = dir.file("client-port-key.pem");
  auto install = [](const std::string& from, const std::string& to) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  };
  install(pki().member, cert);
  install(pki().member_key, key);
  ProcessCluster cluster("tls-reload", tls_cluster());
  give_certificates(cluster);
  const std::string http0 = "127.0.0.1:" + std::to_string(free_port());
  cluster.mutable_spec(0).extra_flags = {"--listen-http",
                                         http0,
                                         "--cert-file",
                                         cert,
                                         "--key-file",
                                         key,
                                         "--trusted-ca-file",
                                         pki().ca,
                                         "--client-cert-auth",
                                         "--peer-cert-file",
                                         pki().member,
                                         "--peer-key-file",
                                         pki().member_key,
                                         "--peer-trusted-ca-file",
                                         pki().ca,
                                         "--peer-client-cert-auth"};
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const std::vector<std::string> trust_old = pki().ctl_flags();
  const std::vector<std::string> trust_new = {"--cacert",   pki().other_ca, "--cert",
                                              pki().client, "--key",        pki().client_key};
  ProcessCluster::CtlResult put =
      cluster.ctl_with(cluster.client_addr(0), with(trust_old, {"put", "/reload/a", "1"}));
  ASSERT_EQ(put.status, 0) << put.out;

  // Waits (bounded) until member 0's log holds `n` copies of `line`.
  auto logged = [&](const std::string& line, std::size_t n) {
    return wait_until([&] { return count_of(read_file(cluster.log_path(0)), line) >= n; },
                      std::chrono::seconds(10), "member 0 to log: " + line)
        .ok();
  };

  // A certificate file that does not load: the member says so and keeps the old certificate.
  {
    std::ofstream garbage(cert, std::ios::trunc);
    garbage << "not a certificate\n";
  }
  ASSERT_EQ(kill(cluster.pid(0), SIGHUP), 0);
  ASSERT_TRUE(logged("tls reload failed, the old certificates stay in use", 1))
      << read_file(cluster.log_path(0));
  EXPECT_TRUE(contains(read_file(cluster.log_path(0)), "--cert-file"));
  ProcessCluster::CtlResult still =
      cluster.ctl_with(cluster.client_addr(0), with(trust_old, {"get", "/reload/a"}));
  EXPECT_EQ(still.status, 0) << still.out;

  // The new certificate (another CA), not yet loaded: new connections still get the old one.
  install(pki().other_member, cert);
  install(pki().other_member_key, key);
  ProcessCluster::CtlResult before =
      cluster.ctl_with(cluster.client_addr(0), with(trust_old, {"get", "/reload/a"}));
  EXPECT_EQ(before.status, 0) << before.out;

  ASSERT_EQ(kill(cluster.pid(0), SIGHUP), 0);
  ASSERT_TRUE(logged("tls reloaded cert_file=", 1)) << read_file(cluster.log_path(0));
  ProcessCluster::CtlResult after_new =
      cluster.ctl_with(cluster.client_addr(0), with(trust_new, {"get", "/reload/a"}));
  EXPECT_EQ(after_new.status, 0) << after_new.out;
  EXPECT_EQ(after_new.out, "1");
  ProcessCluster::CtlResult after_old = cluster.ctl_with(
      cluster.client_addr(0), with(trust_old, {"--timeout", "2s", "get", "/reload/a"}));
  EXPECT_EQ(after_old.status, 1) << after_old.out;
  EXPECT_TRUE(contains(after_old.out, "the server's certificate is not signed by a CA we trust"))
      << after_old.out;
  // The HTTP port follows the client port's certificates.
  HttpAnswer https_new = curl({"--cacert", pki().other_ca, "--cert", pki().client, "--key",
                               pki().client_key, "https://" + http0 + "/v1/kv/%2Freload%2Fa"});
  EXPECT_EQ(https_new.status, 200) << https_new.body << https_new.err;
  HttpAnswer https_old = curl_tls({"https://" + http0 + "/v1/kv/%2Freload%2Fa"});
  EXPECT_EQ(https_old.exit_status, 60) << https_old.err;  // the server is not trusted

  // The member is still in its cluster: a write through the leader reaches member 0. Whichever
  // leads: each member is asked with the CA its client port now needs (members 1 and 2 kept the
  // old certificate); a follower redirects to the leader, which may need the other CA, so at
  // least the leader's own answer is a success (the same put twice leaves the same key).
  bool written = false;
  std::string outs;
  for (int i = 0; i < cluster.size(); ++i) {
    ProcessCluster::CtlResult put2 = cluster.ctl_with(
        cluster.client_addr(i),
        with(i == 0 ? trust_new : trust_old, {"--timeout", "3s", "put", "/reload/b", "2"}));
    written = written || put2.status == 0;
    outs += put2.out + "\n";
  }
  ASSERT_TRUE(written) << outs;
  ProcessCluster::CtlResult get2;
  EXPECT_TRUE(wait_until(
                  [&] {
                    get2 =
                        cluster.ctl_with(cluster.client_addr(0),
                                         with(trust_new, {"get", "--serializable", "/reload/b"}));
                    return get2.status == 0 && get2.out == "2";
                  },
                  std::chrono::seconds(10), "member 0 to apply /reload/b")
                  .ok())
      << get2.out;
}

// The verified client certificate's subject is the identity (kvc-permissions(5)); a member's
// certificate (it names a member's peer address) lets a follower forward an HTTP write with the
// caller's identity, which the leader honours.
TEST(TlsProcessTest, ClientCertificateSubjectIsTheIdentityForPermissions) {
  ProcessCluster cluster("tls-perms", tls_cluster());
  give_certificates(cluster);
  ScopedTempDir dir("kvc-tls-perms");
  const std::string perms = dir.file("perms");
  const std::string token = "f00dfeedc0ffee00112233445566778899";
  {
    std::ofstream out(perms);
    out << "token web " << server::token_digest(token) << "\n"
        << "grant \"CN=operator,O=kvc test\" readwrite /tls/\n"
        << "grant web readwrite /web/\n";
  }
  std::vector<std::string> http;
  for (int i = 0; i < cluster.size(); ++i) {
    http.push_back("127.0.0.1:" + std::to_string(free_port()));
    std::vector<std::string>& f = cluster.mutable_spec(i).extra_flags;
    f.insert(f.end(), {"--permissions-file", perms, "--listen-http", http.back()});
  }
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();

  ProcessCluster::CtlResult r =
      cluster.ctl_with(cluster.endpoints(), with(pki().ctl_flags(), {"auth", "whoami"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "CN=operator,O=kvc test\nreadwrite \"/tls/\"\n");
  r = cluster.ctl_with(cluster.endpoints(), with(pki().ctl_flags(), {"put", "/tls/a", "1"}));
  EXPECT_EQ(r.status, 0) << r.out;
  r = cluster.ctl_with(cluster.endpoints(), with(pki().ctl_flags(), {"put", "/x", "1"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "permission denied: CN=operator,O=kvc test may not put /x")) << r.out;
  // Another certificate is another identity, with no grants here.
  const std::vector<std::string> as_member = {"--cacert",   pki().ca, "--cert",
                                              pki().member, "--key",  pki().member_key};
  r = cluster.ctl_with(cluster.endpoints(), with(as_member, {"get", "/tls/a"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "permission denied: CN=member,O=kvc test may not get /tls/a"))
      << r.out;

  // HTTPS (the client port's certificates, --client-cert-auth too): the certificate is the
  // identity there as well, whatever token comes with it; a follower forwards the write over its
  // client connection, authenticated by its member certificate, and the leader checks the
  // caller's identity, not the follower's.
  const std::string fh = http[static_cast<std::size_t>((*leader + 1) % 3)];
  auto https = [&](const std::string& path) { return "https://" + fh + path; };
  HttpAnswer a = curl_tls({"-H", "Authorization: Bearer " + token, "-X", "PUT", "--data-binary",
                           "w", https("/v1/kv/%2Ftls%2Fh")});
  EXPECT_EQ(a.status, 200) << a.body << a.err;
  a = curl_tls({"-H", "Authorization: Bearer " + token, "-X", "PUT", "--data-binary", "w",
                https("/v1/kv/%2Fweb%2Fa")});
  EXPECT_EQ(a.status, 403) << a.body << a.err;
  EXPECT_TRUE(contains(a.body, "permission denied: CN=operator,O=kvc test may not put /web/a"))
      << a.body;
  a = curl_tls({https("/v1/kv/%2Ftls%2Fh")});
  EXPECT_EQ(a.status, 200) << a.body << a.err;
}

// Every member's certificates (client, peer and HTTP ports) and the client's are replaced with
// ones from a new CA and every member gets SIGHUP; the leader then moves, so the follower whose
// HTTP port forwards writes must dial a leader that now presents the new certificate and
// trusts only the new CA. The forwarder made before the reload would dial with the old files
// and be refused; it is made again after the reload, so the write goes through.
TEST(TlsProcessTest, WritesForwardedByAFollowerSurviveACertificateRotationOnEveryMember) {
  ScopedTempDir dir("kvc-tls-rotate");
  const std::string ca = dir.file("ca.pem"), cert = dir.file("member.pem"),
                    key = dir.file("member-key.pem");
  auto install = [&](const std::string& from_ca, const std::string& from_cert,
                     const std::string& from_key) {
    const auto over = std::filesystem::copy_options::overwrite_existing;
    std::filesystem::copy_file(from_ca, ca, over);
    std::filesystem::copy_file(from_cert, cert, over);
    std::filesystem::copy_file(from_key, key, over);
  };
  install(pki().ca, pki().member, pki().member_key);
  // The test's own clients use the member certificate too (it allows client authentication),
  // so that replacing the three files moves them to the new CA with the members.
  ClusterOptions o;
  o.client_tls = {.cert_file = cert, .key_file = key, .trusted_ca_file = ca};
  ProcessCluster cluster("tls-rotate", o);
  std::vector<std::string> http;
  for (int i = 0; i < cluster.size(); ++i) {
    http.push_back("127.0.0.1:" + std::to_string(free_port()));
    cluster.mutable_spec(i).extra_flags =
        with(pki().member_flags(cert, key, ca),
             {"--listen-http", http.back(), "--hash-check-interval", "1s"});
  }
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();
  // A hash check that agreed, after `last`: the leader's hash-check client reached every member.
  auto hash_check_agreed_after = [&](int i, std::uint64_t last) {
    const wire::Response r = cluster.status(i);
    return r.code == Code::kOk && r.status.hash_check_result == "agreed" &&
           r.status.hash_check_index > last;
  };
  // The leader's hash-check client is made now, with the old certificates.
  ASSERT_TRUE(wait_until([&] { return hash_check_agreed_after(*leader, 0); },
                         std::chrono::seconds(20), "a hash check to agree")
                  .ok());
  const int follower = (*leader + 1) % cluster.size();
  const int next_leader = (*leader + 2) % cluster.size();
  const std::vector<std::string> as_member = {"--cacert", ca, "--cert", cert, "--key", key};
  auto put_via_follower = [&](const std::string& key_path, const std::string& value) {
    return curl(with(as_member, {"-X", "PUT", "--data-binary", value,
                                 "https://" + http[follower] + "/v1/kv/" + key_path}));
  };
  // The follower's forwarder is made now, with the old certificates.
  HttpAnswer before = put_via_follower("%2Frotate%2Fa", "1");
  ASSERT_EQ(before.status, 200) << before.body << before.err;

  install(pki().other_ca, pki().other_member, pki().other_member_key);
  for (int i = 0; i < cluster.size(); ++i) ASSERT_EQ(kill(cluster.pid(i), SIGHUP), 0);
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_TRUE(wait_until([&] { return contains(read_file(cluster.log_path(i)), "tls reloaded"); },
                           std::chrono::seconds(10), "member " + std::to_string(i) + " reloaded")
                    .ok())
        << read_file(cluster.log_path(i));
  }
  // A new leader: peer links and the forwarder's connection are made afresh, with the new CA.
  ProcessCluster::CtlResult t = cluster.ctl_with(
      cluster.client_addr(next_leader),
      with(as_member, {"--timeout", "8s", "transfer-leader", cluster.spec(next_leader).name}));
  ASSERT_EQ(t.status, 0) << t.out;
  Result<int> now = cluster.wait_for_leader();
  ASSERT_TRUE(now.ok()) << now.status().to_string();
  ASSERT_EQ(*now, next_leader);

  HttpAnswer after = put_via_follower("%2Frotate%2Fb", "2");
  EXPECT_EQ(after.status, 200) << after.body << after.err;
  EXPECT_TRUE(contains(read_file(cluster.log_path(follower)), "write forwarder made"))
      << read_file(cluster.log_path(follower));
  HttpAnswer get = curl(with(as_member, {"https://" + http[next_leader] + "/v1/kv/%2Frotate%2Fb"}));
  EXPECT_EQ(get.status, 200) << get.body << get.err;
  EXPECT_TRUE(contains(get.body, R"("value":"2")")) << get.body;

  // The first leader's hash-check client was made with the old CA too. Lead again, and restart
  // a follower so that its connection to that member must be dialled afresh: the next checks
  // agree only if the client was made again with the new files.
  t = cluster.ctl_with(
      cluster.client_addr(*leader),
      with(as_member, {"--timeout", "8s", "transfer-leader", cluster.spec(*leader).name}));
  ASSERT_EQ(t.status, 0) << t.out;
  now = cluster.wait_for_leader();
  ASSERT_TRUE(now.ok()) << now.status().to_string();
  ASSERT_EQ(*now, *leader);
  ASSERT_TRUE(cluster.stop(next_leader).ok());
  ASSERT_TRUE(cluster.start(next_leader).ok());
  const wire::Response st = cluster.status(*leader);
  ASSERT_EQ(st.code, Code::kOk) << st.message;
  const std::uint64_t since = st.status.commit_index;
  EXPECT_TRUE(wait_until([&] { return hash_check_agreed_after(*leader, since); },
                         std::chrono::seconds(20), "a hash check after the rotation to agree")
                  .ok())
      << cluster.status(*leader).status.hash_check_result << "\n"
      << read_file(cluster.log_path(*leader));
}

}  // namespace
}  // namespace kvc::test
