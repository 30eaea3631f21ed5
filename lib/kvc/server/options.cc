#include "kvc/server/options.h"

#include <filesystem>

#include "kvc/net/address.h"
#include "kvc/storage/membership.h"
#include "kvc/wire/auth.h"

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
    return Status::invalid_argument("--heartbeat-ticks must be at least 1 and below --election-ticks");
  }
  if (max_request_bytes == 0 || max_request_bytes + 4096 > max_frame_bytes) {
    return Status::invalid_argument("--max-request-bytes must be positive and leave room in "
                                    "--max-frame-bytes");
  }
  if (flush_interval_ms == 0) return Status::invalid_argument("--flush-interval must be positive");
  if (!test_mutation.empty()) {
    if (!mutations_compiled_in()) {
      return Status::invalid_argument("test mutations are not compiled into this build");
    }
    if (test_mutation != "ack-before-commit" && test_mutation != "local-reads") {
      return Status::invalid_argument("unknown test mutation '" + test_mutation +
                                      "' (ack-before-commit, local-reads)");
    }
  }
  if (!secret.empty() && !secret_file.empty()) {
    return Status::invalid_argument("give the shared secret or a secret file, not both");
  }
  if (max_inflight_requests == 0 || max_client_connections == 0 || max_peer_connections == 0) {
    return Status::invalid_argument("connection limits must be positive");
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
  std::error_code ec;
  if (initial_cluster.empty() || std::filesystem::exists(data_dir + "/identity", ec)) {
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
  return wire::load_secret_file(secret_file);
}

std::vector<std::string> EngineOptions::exposure_warnings() const {
  std::vector<std::string> out;
  if (!secret.empty() || !secret_file.empty()) return out;
  const struct {
    const char* flag;
    const std::string& value;
  } listeners[] = {{"--listen-peer", listen_peer}, {"--listen-client", listen_client}};
  for (const auto& l : listeners) {
    if (l.value.empty()) continue;
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
          "listening on a non-loopback address without a shared secret: anyone who "
          "can reach " +
          a->to_string() + " (" + l.flag + ") can act as a member or client; set --secret-file");
    }
  }
  return out;
}

bool EngineOptions::mutations_compiled_in() {
#ifdef KVC_MUTATIONS
  return true;
#else
  return false;
#endif
}

}  // namespace kvc::server
