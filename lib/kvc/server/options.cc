#include "kvc/server/options.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "kvc/common/text.h"
#include "kvc/net/address.h"
#include "kvc/net/secret.h"
#include "kvc/storage/command.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/membership.h"

namespace kvc::server {

Status EngineOptions::validate() const {
  if (name.empty()) return Status::invalid_argument("--name is required");
  if (name.find_first_of(",= \t\n") != std::string::npos) {
    return Status::invalid_argument("--name must not contain ',', '=' or whitespace");
  }
  if (data_dir.empty()) return Status::invalid_argument("--data-dir is required");
  if (listen_peer.empty()) return Status::invalid_argument("--listen-peer is required");
  if (initial_cluster_state != "new" && initial_cluster_state != "existing") {
    return Status::invalid_argument("--initial-cluster-state must be new or existing");
  }
  if (cluster_token.empty()) return Status::invalid_argument("--cluster-token must not be empty");
  if (tick_ms == 0) return Status::invalid_argument("--tick must be positive");
  if (election_ticks < 2) return Status::invalid_argument("--election-ticks must be at least 2");
  if (heartbeat_ticks < 1 || heartbeat_ticks >= election_ticks) {
    return Status::invalid_argument(
        "--heartbeat-ticks must be at least 1 and below --election-ticks");
  }
  if (max_request_bytes == 0 || max_request_bytes + 4096 > max_frame_bytes) {
    return Status::invalid_argument(
        "--max-request-bytes must be positive and leave room in "
        "--max-frame-bytes");
  }
  if (flush_interval_ms == 0) return Status::invalid_argument("--flush-interval must be positive");
  if (max_txn_ops == 0 || max_txn_ops > storage::kMaxTxnOps) {
    return Status::invalid_argument("--max-txn-ops must be from 1 to " +
                                    std::to_string(storage::kMaxTxnOps));
  }
  if (!test_mutation.empty()) {
    if (!mutations_compiled_in()) {
      return Status::invalid_argument("test mutations are not compiled into this build");
    }
    const std::vector<std::string>& known = test_mutations();
    if (std::find(known.begin(), known.end(), test_mutation) == known.end()) {
      std::string names;
      for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
      return Status::invalid_argument("unknown test mutation '" + test_mutation + "' (" + names +
                                      ")");
    }
  }
  if (!secret.empty() && !secret_file.empty()) {
    return Status::invalid_argument("give the shared secret or a secret file, not both");
  }
  KVC_RETURN_IF_ERROR(check_tls_flags(client_tls, ""));
  KVC_RETURN_IF_ERROR(check_tls_flags(peer_tls, "peer-"));
  if (!peer_tls.cert_file.empty() && peer_tls.trusted_ca_file.empty()) {
    return Status::invalid_argument(
        "--peer-cert-file needs --peer-trusted-ca-file: members verify each other's "
        "certificates against it");
  }
  if (!client_tls.cert_file.empty() && !peer_tls.cert_file.empty() &&
      (!secret.empty() || !secret_file.empty())) {
    return Status::invalid_argument(
        "--secret-file has no use when both ports have certificates: give one or the other");
  }
  if (max_inflight_requests == 0 || max_client_connections == 0 || max_peer_connections == 0) {
    return Status::invalid_argument("connection limits must be positive");
  }
  if (handshake_timeout_ms == 0) {
    return Status::invalid_argument("--handshake-timeout must be positive");
  }
  if (history_revisions == 0) {
    return Status::invalid_argument("--history-revisions must be positive");
  }
  if (history_bytes == 0) return Status::invalid_argument("--history-bytes must be positive");
  return Status();
}

Status check_tls_flags(const net::TlsConfig& c, const std::string& prefix) {
  const std::string p = "--" + prefix;
  if (c.cert_file.empty() != c.key_file.empty()) {
    return Status::invalid_argument(p + "cert-file and " + p + "key-file go together");
  }
  if (c.cert_file.empty() && (!c.trusted_ca_file.empty() || c.client_cert_auth)) {
    return Status::invalid_argument(p + "trusted-ca-file and " + p + "client-cert-auth need " + p +
                                    "cert-file and " + p + "key-file");
  }
  if (c.client_cert_auth && c.trusted_ca_file.empty()) {
    return Status::invalid_argument(
        p + "client-cert-auth needs " + p +
        "trusted-ca-file: the CA that signs the certificates to accept");
  }
  return Status();
}

Status EngineOptions::check_host_names() const {
  auto check = [](const std::string& flag, const std::string& value,
                  const std::string& what) -> Status {
    Result<net::Address> a = net::parse_address(value);
    if (!a.ok()) return a.status().with_context(flag);
    if (a->is_ip()) return Status();
    Result<net::Resolved> r = net::resolve_now(*a);
    if (!r.ok()) return Status::invalid_argument(flag + ": " + what + r.status().message());
    return Status();
  };
  const struct {
    const char* flag;
    const std::string& value;
  } own[] = {{"--listen-peer", listen_peer},
             {"--listen-client", listen_client},
             {"--listen-http", listen_http},
             {"--advertise-client", advertise_client}};
  for (const auto& f : own) {
    if (f.value.empty()) continue;
    KVC_RETURN_IF_ERROR(check(f.flag, f.value, ""));
  }
  // The identity file (storage/data_dir.h) says DATA_DIR already holds a member, which takes
  // its peers from its own state, not from --initial-cluster.
  if (initial_cluster.empty() || storage::path_exists(data_dir + "/identity")) {
    return Status();
  }
  Result<storage::Membership> m = storage::parse_initial_cluster(cluster_token, initial_cluster);
  if (!m.ok()) return m.status().with_context("--initial-cluster");
  for (const storage::Member& mem : m->members) {
    KVC_RETURN_IF_ERROR(check("--initial-cluster", mem.peer_addr,
                              "member " + mem.name + "'s peer address " + mem.peer_addr + ": "));
  }
  return Status();
}

Result<std::string> EngineOptions::load_secret() const {
  if (!secret.empty()) return secret;
  if (secret_file.empty()) return std::string();
  return net::load_secret_file(secret_file);
}

std::vector<std::string> EngineOptions::exposure_warnings() const {
  std::vector<std::string> out;
  if (!secret.empty() || !secret_file.empty()) return out;
  const struct {
    const char* flag;
    const std::string& value;
    bool authenticated;  // it requires client certificates
  } listeners[] = {{"--listen-peer", listen_peer, peer_tls.client_cert_auth},
                   {"--listen-client", listen_client, client_tls.client_cert_auth}};
  for (const auto& l : listeners) {
    if (l.value.empty() || l.authenticated) continue;
    Result<net::Address> a = net::parse_address(l.value);
    if (!a.ok()) continue;
    bool loopback = a->is_loopback();
    if (!a->is_ip()) {
      // A name is judged by what it resolves to (as the listener will bind).
      Result<net::Resolved> r = net::resolve_now(*a);
      loopback = r.ok();
      if (r.ok()) {
        for (const sockaddr_storage& ss : *r) {
          Result<net::Address> ip =
              net::parse_address(net::sockaddr_to_string(reinterpret_cast<const sockaddr*>(&ss)));
          loopback = loopback && ip.ok() && ip->is_loopback();
        }
      }
    }
    if (!loopback) {
      out.push_back(
          "listening on a non-loopback address without a shared secret or client "
          "certificates: anyone who can reach " +
          a->to_string() + " (" + l.flag +
          ") can act as a member or client; set --secret-file or --client-cert-auth "
          "(--peer-client-cert-auth)");
    }
  }
  return out;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view unquote(std::string_view s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

}  // namespace

Status check_config_keys(std::string_view text, const std::string& path,
                         const std::vector<std::string>& known) {
  // Reads lines the way CLI11's config reader (CLI::ConfigBase::from_config) does, so that
  // every name it would look up is checked here first.
  std::size_t line_no = 0;
  bool in_array = false;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (in_array) {
      if (!line.empty() && line.back() == ']') in_array = false;
      continue;
    }
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (line.size() >= 2 && line.front() == '[' && line.back() == ']') {
      std::string section(line.substr(1, line.size() - 2));
      if (section.size() > 1 && section.front() == '[' && section.back() == ']') {
        section = section.substr(1, section.size() - 2);
      }
      std::string lower = section;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "default") continue;
      return Status::invalid_argument(where + "unknown section [" + section +
                                      "]: kvc-node settings go at the top level, without a "
                                      "section");
    }
    std::string_view key;
    const std::size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      key = trim(line.substr(0, eq));
      std::string_view value = trim(line.substr(eq + 1));
      value = trim(value.substr(0, value.find('#')));
      in_array = value.size() > 1 && value.front() == '[' && value.back() != ']';
    } else {
      key = trim(line.substr(0, line.find('#')));  // a bare name sets a flag
    }
    key = unquote(key);
    std::string_view name = key;
    while (!name.empty() && name.front() == '-') name.remove_prefix(1);
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string msg = where + "unknown setting '" + std::string(key) + "'";
    const std::string near = nearest_name(name, known);
    msg += near.empty() ? " (the settings are kvc-node's long option names; see kvc-node --help)"
                        : " (did you mean " + near + "?)";
    return Status::invalid_argument(msg);
  }
  return Status();
}

bool EngineOptions::mutations_compiled_in() {
#ifdef KVC_MUTATIONS
  return true;
#else
  return false;
#endif
}

const std::vector<std::string>& EngineOptions::test_mutations() {
  static const std::vector<std::string> kNames = {
      "ack-before-commit",   "local-reads",          "diverge-apply",    "unverified-reads",
      "ack-before-apply",    "read-before-applied",  "skip-wal-replay",  "persist-without-fsync",
      "marker-before-flush", "follower-lease-clock", "no-lease-grace",   "txn-applies-half",
      "txn-wrong-branch",    "txn-torn-read",        "diverge-every-put"};
  return kNames;
}

}  // namespace kvc::server
