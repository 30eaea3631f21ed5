// Hardening of the TLS ports with real kvc-node processes (issue 18, sections 4 and 5; see
// docs/security.md): bad input against the client and peer ports when they speak TLS (garbage
// before the handshake, TLS record garbage and well-formed records carrying garbage frames after
// it, a client that connects and sends nothing) closes that connection promptly, is logged and
// leaves the member serving; and the shared secret, and the key derived from it, appear in no
// log line, `kvc-ctl status` output or /metrics page, and the secret is not in memory a core
// dump would hold.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kvc/net/tls.h"
#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"
#include "support/ports.h"
#include "support/text.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// As `openssl rand -hex 32` makes one (a weak secret is refused at start-up).
constexpr const char* kSecret = "3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";

// The local "127.0.0.1:PORT" of a connected socket: the from= a member logs for it.
std::string local_address(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

void send_all(int fd, const std::string& bytes) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return;  // the member may already have closed: what matters is that it does
    at += static_cast<std::size_t>(n);
  }
}

// Reads (and drops) what the member sends until it closes the connection; how long that took,
// or -1 ms when it was still open after `limit`.
std::chrono::milliseconds time_to_hang_up(int fd, std::chrono::milliseconds limit) {
  const auto start = Clock::now();
  char buf[4096];
  for (;;) {
    const auto left =
        limit - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (left <= 0ms) return -1ms;
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }
  }
}

// A TLS client (the shared secret as the pre-shared key) over a blocking socket, driven by hand
// so that a test can put any bytes on the wire before, inside or beside its records.
class RawTlsClient {
 public:
  explicit RawTlsClient(const std::string& addr) : fd_(raw_connect(addr)) {}
  ~RawTlsClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawTlsClient(const RawTlsClient&) = delete;
  RawTlsClient& operator=(const RawTlsClient&) = delete;

  int fd() const { return fd_; }

  Status handshake() {
    if (fd_ < 0) return Status::unavailable("cannot connect");
    Result<std::shared_ptr<const net::TlsContext>> ctx =
        net::TlsContext::create(net::TlsRole::kClient, {.secret = kSecret});
    KVC_RETURN_IF_ERROR(ctx.status());
    Result<std::unique_ptr<net::TlsSession>> s = net::TlsSession::create(*ctx);
    KVC_RETURN_IF_ERROR(s.status());
    session_ = std::move(*s);
    send_all(fd_, session_->take_output());
    char buf[4096];
    for (int reads = 0; !session_->handshake_done() && reads < 100; ++reads) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return Status::unavailable("closed during the TLS handshake");
      const Status fed = session_->feed(std::string_view(buf, static_cast<std::size_t>(n)));
      send_all(fd_, session_->take_output());
      KVC_RETURN_IF_ERROR(fed);
    }
    return session_->handshake_done() ? Status() : Status::timeout("no TLS handshake");
  }

  // `plain` inside well-formed TLS records.
  void send_in_records(const std::string& plain) {
    ASSERT_TRUE(session_->write(plain).ok());
    send_all(fd_, session_->take_output());
  }

 private:
  int fd_;
  std::unique_ptr<net::TlsSession> session_;
};

std::string hex_of(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// The key a member derives from kSecret (net/tls.cc: HMAC-SHA-256 over the label), computed
// here independently so that a leak of the derived key is looked for too.
std::string derived_psk_hex() {
  const std::string_view label = "kvc tls external psk v1";
  unsigned char key[32];
  std::size_t n = 0;
  EXPECT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, kSecret,
                      std::string_view(kSecret).size(),
                      reinterpret_cast<const unsigned char*>(label.data()), label.size(), key,
                      sizeof key, &n),
            nullptr);
  return hex_of(std::string_view(reinterpret_cast<const char*>(key), n));
}

ClusterOptions secret_cluster(const std::string& secret_path) {
  ClusterOptions o;
  o.secret_file = secret_path;
  // Short enough for the silent client's case, long enough that every other case is closed for
  // what it sent, well before it.
  o.extra_flags = {"--handshake-timeout", "3s"};
  return o;
}

TEST(TlsBadInputProcessTest, BadInputAtTlsPortsClosesTheConnectionNotTheMember) {
  ScopedTempDir dir("kvc-tls-bad-input");
  const std::string secret = dir.file("secret");
  ASSERT_TRUE(write_secret_file(secret, std::string(kSecret) + "\n").ok());
  ProcessCluster cluster("tls-bad-input", secret_cluster(secret));
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());

  std::string hello;
  wire::append_hello(hello, {.role = wire::Role::kClient});
  std::string garbage_frame;
  wire::append_frame(garbage_frame, std::string("\xc1\xc1\xc1", 3));
  const std::string huge_header("\x7f\xff\xff\xff", 4);
  // A TLS record header (handshake, TLS 1.2) whose body is not a ClientHello, and an
  // application-data record that no key of this session sealed.
  const std::string bogus_handshake_record =
      std::string("\x16\x03\x01\x00\x08", 5) + std::string(8, '\x5a');
  const std::string forged_app_record =
      std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, '\xa5');

  enum class When { kBeforeHandshake, kAfterHandshake, kInRecords };
  const struct {
    const char* name;
    When when;
    std::string bytes;
  } cases[] = {
      {"garbage before the handshake", When::kBeforeHandshake, "GET / HTTP/1.1\r\n\r\n"},
      {"a kvc hello in plaintext", When::kBeforeHandshake, hello},
      {"binary garbage before the handshake", When::kBeforeHandshake,
       std::string("\x00\x01\x02\xff\xfe\xfd", 6)},
      {"a TLS record that is not a ClientHello", When::kBeforeHandshake, bogus_handshake_record},
      {"record-layer garbage after the handshake", When::kAfterHandshake, std::string(40, '\x42')},
      {"a forged application record after the handshake", When::kAfterHandshake, forged_app_record},
      {"malformed msgpack inside TLS records", When::kInRecords, garbage_frame},
      {"an oversized frame inside TLS records", When::kInRecords, huge_header},
      {"a hello then malformed msgpack inside TLS records", When::kInRecords,
       hello + garbage_frame},
  };
  std::vector<std::string> client_port_from;
  for (const auto& c : cases) {
    for (const bool peer_port : {false, true}) {
      SCOPED_TRACE(std::string(c.name) + (peer_port ? " (peer port)" : " (client port)"));
      const int m = peer_port ? 1 : 0;
      const std::string addr = peer_port ? cluster.peer_addr(m) : cluster.client_addr(m);
      RawTlsClient tls(addr);
      ASSERT_GE(tls.fd(), 0);
      if (c.when == When::kBeforeHandshake) {
        send_all(tls.fd(), c.bytes);
      } else {
        ASSERT_TRUE(tls.handshake().ok());
        if (c.when == When::kAfterHandshake) {
          send_all(tls.fd(), c.bytes);
        } else {
          tls.send_in_records(c.bytes);
        }
      }
      // Closed for what it sent, well before the 3 s handshake deadline.
      const std::chrono::milliseconds took = time_to_hang_up(tls.fd(), 10s);
      EXPECT_GE(took.count(), 0) << "the member kept the connection open";
      EXPECT_LT(took.count(), 2000) << "closed only at the handshake deadline?";
      if (!peer_port) client_port_from.push_back(local_address(tls.fd()));
    }
  }

  // A client that completes the TCP connect and sends nothing: closed by the handshake
  // deadline (3 s; the deadline is checked every quarter of it), on both ports.
  for (const bool peer_port : {false, true}) {
    SCOPED_TRACE(peer_port ? "silent client (peer port)" : "silent client (client port)");
    const int fd = raw_connect(peer_port ? cluster.peer_addr(0) : cluster.client_addr(0));
    ASSERT_GE(fd, 0);
    const std::chrono::milliseconds took = time_to_hang_up(fd, 15s);
    ::close(fd);
    EXPECT_GE(took.count(), 2500) << "closed before its deadline";
    EXPECT_LT(took.count(), 8000) << "not closed by the handshake deadline";
  }

  // Every member still serves, over TLS with the secret.
  for (int i = 0; i < cluster.size(); ++i) EXPECT_TRUE(cluster.running(i)) << "member " << i;
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto client = cluster.client();
  wire::Response r = client->put("/tls-bad/still", "serving");
  EXPECT_EQ(r.code, Code::kOk) << r.message;

  // A clear log line for each: the client port logs every closed connection with its address
  // and the reason; the peer port logs TLS refusals (at most one a second), the connections
  // that sent garbage inside TLS, and the one that timed out.
  const std::string log0 = read_file(cluster.log_path(0));
  for (const std::string& from : client_port_from) {
    EXPECT_TRUE(contains(log0, "client connection closed from=" + from + " reason="))
        << from << "\n"
        << log0;
  }
  EXPECT_TRUE(contains(log0, "reason=tls: this port speaks TLS: the client sent plaintext"))
      << log0;
  EXPECT_TRUE(contains(log0, "reason=no handshake within 3000 ms (--handshake-timeout)")) << log0;
  const std::string log1 = read_file(cluster.log_path(1));
  EXPECT_TRUE(contains(log1, "refusing peer from=127.0.0.1:")) << log1;
  EXPECT_TRUE(contains(log1, "peer connection closed before handshake from=127.0.0.1:")) << log1;
}

// The regions of process `pid` that a core dump holds by default (/proc/PID/coredump_filter
// 0x33: anonymous memory; file mappings are left out, among them LMDB's large map): readable,
// anonymous ([heap], [stack] or no path), not marked "dd" by MADV_DONTDUMP. [start, end) pairs.
std::vector<std::pair<std::uint64_t, std::uint64_t>> dumpable_regions(pid_t pid) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::ifstream smaps("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  std::uint64_t start = 0, end = 0;
  bool readable = false, special = false;
  while (std::getline(smaps, line)) {
    unsigned long long a = 0, b = 0;
    char perms[8] = {};
    char path[256] = {};
    const int fields =
        std::sscanf(line.c_str(), "%llx-%llx %4s %*s %*s %*s %255s", &a, &b, perms, path);
    if (fields >= 3) {  // a mapping's header line: "start-end perms offset dev inode [path]"
      start = a;
      end = b;
      readable = perms[0] == 'r';
      const std::string p = fields == 4 ? path : "";
      special = !(p.empty() || p == "[heap]" || p == "[stack]");
      continue;
    }
    if (line.rfind("VmFlags:", 0) == 0) {
      const bool dontdump = contains(line + " ", " dd ");
      if (readable && !special && !dontdump) out.emplace_back(start, end);
    }
  }
  return out;
}

// Whether `needle` occurs in the memory of `pid` that a core dump would hold.
bool in_dumpable_memory(pid_t pid, const std::string& needle, std::string* where) {
  std::ifstream mem("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
  if (!mem) {
    *where = "cannot open /proc/PID/mem";
    return false;
  }
  std::string buf;
  for (const auto& [start, end] : dumpable_regions(pid)) {
    buf.assign(end - start, '\0');
    mem.clear();
    mem.seekg(static_cast<std::streamoff>(start));
    mem.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    buf.resize(static_cast<std::size_t>(mem.gcount()));
    if (buf.find(needle) != std::string::npos) {
      char range[64];
      std::snprintf(range, sizeof range, "%llx-%llx", static_cast<unsigned long long>(start),
                    static_cast<unsigned long long>(end));
      *where = range;
      return true;
    }
  }
  return false;
}

TEST(AuthProcessTest, TheSecretAppearsInNoLogStatusMetricsOrDumpableMemory) {
  ScopedTempDir dir("kvc-secret-leak");
  const std::string secret = dir.file("secret");
  ASSERT_TRUE(write_secret_file(secret, std::string(kSecret) + "\n").ok());
  const std::string wrong = dir.file("wrong");
  ASSERT_TRUE(
      write_secret_file(wrong, "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\n")
          .ok());
  ClusterOptions o;
  o.secret_file = secret;
  o.log_level = "debug";  // the most a member ever says
  ProcessCluster cluster("secret-leak", o);
  std::vector<std::string> http;
  for (int i = 0; i < cluster.size(); ++i) {
    http.push_back("127.0.0.1:" + std::to_string(free_port()));
    cluster.mutable_spec(i).extra_flags = {"--listen-http", http.back()};
  }
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());

  // Some use of the secret: writes, a refused client with another secret, status.
  ProcessCluster::CtlResult put = cluster.ctl({"--secret-file", secret, "put", "/leak/a", "1"});
  ASSERT_EQ(put.status, 0) << put.out;
  ProcessCluster::CtlResult refused =
      cluster.ctl({"--timeout", "2s", "--secret-file", wrong, "get", "/leak/a"});
  EXPECT_NE(refused.status, 0);
  std::string outputs = put.out + refused.out;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--secret-file", secret, "status", "-o", "json"},
        std::vector<std::string>{"--secret-file", secret, "member", "list", "-o", "json"},
        std::vector<std::string>{"--secret-file", secret, "--help"}}) {
    ProcessCluster::CtlResult r = cluster.ctl(args);
    EXPECT_EQ(r.status, 0) << r.out;
    outputs += r.out;
  }
  EXPECT_TRUE(contains(outputs, "\"raft_term\"") || contains(outputs, "term")) << outputs;
  for (const std::string& h : http) {
    FILE* p = ::popen(("curl -s --max-time 10 http://" + h + "/metrics").c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[4096];
    std::string page;
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) page.append(buf, n);
    ::pclose(p);
    EXPECT_TRUE(contains(page, "kvc_")) << "no metrics from " << h;
    outputs += page;
  }
  std::string logs;
  for (int i = 0; i < cluster.size(); ++i) logs += read_file(cluster.log_path(i));
  EXPECT_TRUE(contains(logs, "secret")) << "the log names the secret's file, at least";

  const std::string psk_hex = derived_psk_hex();
  std::string psk_upper = psk_hex;
  std::transform(psk_upper.begin(), psk_upper.end(), psk_upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  for (const std::string& needle : {std::string(kSecret), psk_hex, psk_upper}) {
    SCOPED_TRACE(needle);
    EXPECT_FALSE(contains(logs, needle));
    EXPECT_FALSE(contains(outputs, needle));
    // A quarter of it, in case something logs a prefix.
    EXPECT_FALSE(contains(logs, needle.substr(0, 16)));
    EXPECT_FALSE(contains(outputs, needle.substr(0, 16)));
  }

  // In memory: the secret is nowhere a core dump would hold (kvc's copies were wiped, the
  // Engine's own lives in MADV_DONTDUMP pages). The derived key is not checked here: kvc's copy
  // is in such pages too, but OpenSSL keeps one in each connection's TLS session (ordinary heap)
  // for the connection's life (docs/security.md, "Secrets").
  for (int i = 0; i < cluster.size(); ++i) {
    std::string where;
    EXPECT_FALSE(in_dumpable_memory(cluster.pid(i), kSecret, &where))
        << "member " << i << ": the secret at " << where;
    EXPECT_NE(where, "cannot open /proc/PID/mem");
  }
}

}  // namespace
}  // namespace kvc::test
