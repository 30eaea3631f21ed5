// kvc-node: one member of a kvc cluster. Parses flags (or a config file) into EngineOptions,
// runs an Engine until SIGINT/SIGTERM, and stops it cleanly. No logic lives here.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <future>
#include <iterator>
#include <string_view>
#include <thread>

#include "cli.h"
#include "kvc/common/text.h"
#include "kvc/net/secret.h"
#include "kvc/server/engine.h"
#include "kvc/server/permissions.h"

namespace {

struct Durations {
  std::string tick = "100ms";
  std::string election_timeout = "1s";
  std::string heartbeat_interval = "100ms";
  std::string flush_interval = "1s";
  std::string request_timeout = "5s";
  std::string handshake_timeout = "5s";
};

kvc::Status apply_durations(const Durations& d, kvc::server::EngineOptions& o) {
  auto parse = [](const std::string& flag, const std::string& v) -> kvc::Result<std::uint64_t> {
    kvc::Result<std::uint64_t> ms = kvc::parse_duration_ms(v);
    if (!ms.ok()) return ms.status().with_context(flag);
    if (*ms == 0) return kvc::Status::invalid_argument(flag + " must be positive");
    return *ms;
  };
  auto tick = parse("--tick", d.tick);
  if (!tick.ok()) return tick.status();
  auto election = parse("--election-timeout", d.election_timeout);
  if (!election.ok()) return election.status();
  auto heartbeat = parse("--heartbeat-interval", d.heartbeat_interval);
  if (!heartbeat.ok()) return heartbeat.status();
  auto flush = parse("--flush-interval", d.flush_interval);
  if (!flush.ok()) return flush.status();
  auto request = parse("--request-timeout", d.request_timeout);
  if (!request.ok()) return request.status();
  auto handshake = parse("--handshake-timeout", d.handshake_timeout);
  if (!handshake.ok()) return handshake.status();
  o.tick_ms = *tick;
  o.election_ticks = static_cast<int>(*election / *tick);
  o.heartbeat_ticks = static_cast<int>(*heartbeat / *tick);
  if (o.heartbeat_ticks < 1) o.heartbeat_ticks = 1;
  o.flush_interval_ms = *flush;
  o.request_timeout_ms = *request;
  o.handshake_timeout_ms = *handshake;
  return kvc::Status();
}

// The --config FILE on the command line ("" when none), as CLI11 will read it.
std::string config_path(int argc, char** argv) {
  std::string path;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") break;
    if (a == "--config" && i + 1 < argc) {
      path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      path = std::string(a.substr(9));
    }
  }
  return path;
}

// Refuses a config file that names a setting kvc-node does not have (exit 2).
kvc::Status check_config_file(const CLI::App& app, int argc, char** argv) {
  const std::string path = config_path(argc, argv);
  if (path.empty()) return kvc::Status();
  std::ifstream in(path);
  if (!in) return kvc::Status();  // CLI11 reports the unreadable file
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> known;
  auto take = [&](const CLI::App& from) {
    for (const CLI::Option* opt : from.get_options()) {
      for (const std::string& n : opt->get_lnames()) known.push_back(n);
    }
  };
  take(app);
  for (const CLI::App* group :
       app.get_subcommands([](const CLI::App* sub) { return sub->get_name().empty(); })) {
    take(*group);
  }
  return kvc::server::check_config_keys(text, path, known);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "kvc-node: one member of a kvc cluster: its Raft log (DATA_DIR/wal), snapshots "
      "(DATA_DIR/snap) and LMDB state (DATA_DIR/state). The command line that creates a member "
      "also restarts it.",
      "kvc-node");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  kvc::server::EngineOptions o;
  Durations d;
  app.set_config("--config", "", "Read settings from this file (TOML-like: name = \"m1\")");
  app.add_option("--name", o.name, "This member's name, unique in the cluster")->required();
  app.add_option("--data-dir", o.data_dir, "The member's data directory")->required();
  app.add_option("--listen-peer", o.listen_peer, "HOST:PORT other members connect to")->required();
  app.add_option("--listen-client", o.listen_client, "HOST:PORT clients connect to")
      ->capture_default_str();
  app.add_option("--listen-http", o.listen_http,
                 "HOST:PORT for HTTP: /health, /ready, /metrics and /v1/kv (default: none)");
  app.add_option("--advertise-client", o.advertise_client,
                 "Client address told to clients and peers (default: --listen-client)");
  app.add_option("--initial-cluster", o.initial_cluster,
                 "Every member of a new cluster: NAME=PEER_HOST:PORT,...");
  app.add_option("--initial-cluster-state", o.initial_cluster_state,
                 "new: create the cluster; existing: join a running cluster")
      ->check(CLI::IsMember({"new", "existing"}))
      ->capture_default_str();
  app.add_option("--cluster-token", o.cluster_token,
                 "Names the cluster; members of clusters with other tokens are refused")
      ->capture_default_str();
  app.add_option("--secret-file", o.secret_file,
                 "File holding the cluster's shared secret (mode 600; `openssl rand -hex 32`): "
                 "the key of TLS on both ports for peers, joining members and clients (a port "
                 "with certificates uses those instead)");
  auto* tls = app.add_option_group("TLS (certificates; flags named as etcd's)");
  tls->add_option("--cert-file", o.client_tls.cert_file,
                  "Client port: this member's certificate (PEM; leaf, then intermediates)");
  tls->add_option("--key-file", o.client_tls.key_file, "Client port: the key of --cert-file");
  tls->add_option("--trusted-ca-file", o.client_tls.trusted_ca_file,
                  "Client port: CA certificates that sign the client certificates to accept");
  tls->add_flag("--client-cert-auth", o.client_tls.client_cert_auth,
                "Client port: require a client certificate signed by --trusted-ca-file");
  tls->add_option("--peer-cert-file", o.peer_tls.cert_file,
                  "Peer port: this member's certificate, presented to peers both ways; it must "
                  "name the member's peer address (subjectAltName IP or DNS)");
  tls->add_option("--peer-key-file", o.peer_tls.key_file, "Peer port: the key of --peer-cert-file");
  tls->add_option("--peer-trusted-ca-file", o.peer_tls.trusted_ca_file,
                  "Peer port: CA certificates that sign the other members' certificates");
  tls->add_flag("--peer-client-cert-auth", o.peer_tls.client_cert_auth,
                "Peer port: require a certificate of every connecting peer (mutual TLS), "
                "naming the peer address it claims");
  app.add_option("--permissions-file", o.permissions_file,
                 "Identities and what they may do (kvc-permissions(5)): tokens, read/readwrite "
                 "grants on key prefixes, admin; without it everyone admitted may do "
                 "everything. Reloaded on SIGHUP");
  app.add_option("--http-open-paths", o.http_open_paths,
                 "HTTP paths served without authentication when the HTTP API requires it (a "
                 "secret or --client-cert-auth); comma-separated, empty: none")
      ->capture_default_str();
  app.add_flag("--force-new-cluster", o.force_new_cluster,
               "Disaster recovery: restart this member as the only member of its cluster, "
               "keeping its data (use once, then grow with kvc-ctl member add)");
  auto* tuning = app.add_option_group("Tuning");
  tuning->add_option("--tick", d.tick, "Raft's clock tick")->capture_default_str();
  tuning
      ->add_option("--election-timeout", d.election_timeout,
                   "A follower that hears no leader this long starts an election")
      ->capture_default_str();
  tuning
      ->add_option("--heartbeat-interval", d.heartbeat_interval,
                   "How often the leader tells followers it is alive")
      ->capture_default_str();
  tuning
      ->add_option("--flush-interval", d.flush_interval,
                   "Applied state reaches LMDB at least this often")
      ->capture_default_str();
  tuning
      ->add_option("--flush-bytes", o.flush_bytes,
                   "... or once this many bytes of applied state are held in memory")
      ->capture_default_str();
  tuning
      ->add_option("--retained-entries", o.retained_entries,
                   "Log entries kept for lagging members before they need a snapshot")
      ->capture_default_str();
  tuning
      ->add_option("--request-timeout", d.request_timeout,
                   "Default deadline of a client request that names none")
      ->capture_default_str();
  tuning
      ->add_option("--handshake-timeout", d.handshake_timeout,
                   "A client or peer connection that has not completed its handshake this long "
                   "after it was accepted is closed")
      ->capture_default_str();
  tuning
      ->add_option("--max-request-bytes", o.max_request_bytes,
                   "The largest key plus value accepted")
      ->capture_default_str();
  tuning
      ->add_option("--max-txn-ops", o.max_txn_ops,
                   "The most ops in each branch of a txn (and compares in one)")
      ->capture_default_str();
  tuning
      ->add_option("--max-frame-bytes", o.max_frame_bytes,
                   "The largest wire frame accepted from a peer or client")
      ->capture_default_str();
  tuning
      ->add_option("--max-client-connections", o.max_client_connections,
                   "Client connections beyond this are refused")
      ->capture_default_str();
  tuning
      ->add_option("--max-client-connections-per-address", o.max_client_connections_per_address,
                   "Client connections from one IP address beyond this are refused (0: no limit "
                   "but --max-client-connections)")
      ->capture_default_str();
  tuning
      ->add_option("--max-peer-connections", o.max_peer_connections,
                   "Incoming connections on the peer port beyond this are refused")
      ->capture_default_str();
  tuning
      ->add_option("--max-inflight-requests", o.max_inflight_requests,
                   "Per client connection; beyond it the member stops reading that client")
      ->capture_default_str();
  tuning
      ->add_option("--wal-segment-bytes", o.wal_segment_bytes,
                   "Size WAL segments are preallocated to")
      ->capture_default_str();
  tuning
      ->add_option("--state-map-size", o.state_map_size,
                   "The most the LMDB state may grow to, in bytes (sparse)")
      ->capture_default_str();
  tuning->add_option("--snapshots-kept", o.snapshots_kept, "Snapshot files kept in DATA_DIR/snap")
      ->capture_default_str();
  tuning
      ->add_option("--history-revisions", o.history_revisions,
                   "Watch history: keep the events of this many newest revisions")
      ->capture_default_str();
  tuning
      ->add_option("--history-bytes", o.history_bytes,
                   "Watch history: ... and at most this many bytes of events")
      ->capture_default_str();
  auto* integrity = app.add_option_group("Integrity");
  integrity
      ->add_option("--scrub-rate", o.scrub_bytes_per_second,
                   "Bytes per second the background scrubber re-reads and verifies (0: off)")
      ->capture_default_str();
  std::string hash_check_interval = "5m";
  integrity
      ->add_option("--hash-check-interval", hash_check_interval,
                   "How often the leader compares every member's state hash and has a member "
                   "that disagrees with the majority repair itself (0: off)")
      ->capture_default_str();
#ifdef KVC_MUTATIONS
  app.add_option("--test-mutation", o.test_mutation,
                 "TEST BUILD ONLY: break a promise on purpose (ack-before-commit, local-reads, "
                 "diverge-apply, unverified-reads, ack-before-apply, read-before-applied, "
                 "skip-wal-replay, persist-without-fsync, marker-before-flush, "
                 "follower-lease-clock, no-lease-grace, txn-applies-half, txn-wrong-branch, "
                 "txn-torn-read, diverge-every-put)");
#endif
  app.footer(kvc::cli::exit_code_footer(
      "  kvc-node --name m1 --data-dir /var/lib/kvc/m1 \\\n"
      "    --listen-peer 127.0.0.1:2380 --listen-client 127.0.0.1:2379 \\\n"
      "    --initial-cluster m1=127.0.0.1:2380,m2=127.0.0.1:2382,m3=127.0.0.1:2384",
      "A stop by SIGINT or SIGTERM is clean (exit 0); exit 1 means a fatal error (see the "
      "log).\n"));
  // CLI11 ignores names in a config file that match no option; a misspelt setting must not
  // silently fall back to its default, so the file's names are checked first.
  if (kvc::Status s = check_config_file(app, argc, argv); !s.ok()) {
    std::fprintf(stderr, "kvc-node: %s\n", s.message().c_str());
    return kvc::kExitUsage;
  }
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  if (hash_check_interval == "0") {
    o.hash_check_interval_ms = 0;
  } else if (kvc::Result<std::uint64_t> ms = kvc::parse_duration_ms(hash_check_interval); ms.ok()) {
    o.hash_check_interval_ms = *ms;
  } else {
    std::fprintf(stderr, "kvc-node: --hash-check-interval: %s\n", ms.status().message().c_str());
    return kvc::kExitUsage;
  }
  if (kvc::Status s = apply_durations(d, o); !s.ok()) {
    std::fprintf(stderr, "kvc-node: %s\n", s.message().c_str());
    return kvc::kExitUsage;
  }
  if (kvc::Status s = o.validate(); !s.ok()) {
    std::fprintf(stderr, "kvc-node: %s\n", s.message().c_str());
    return kvc::kExitUsage;
  }
  // A host name that does not resolve is a mistake in the flags: refuse to start over it.
  if (kvc::Status s = o.check_host_names(); !s.ok()) {
    std::fprintf(stderr, "kvc-node: %s\n", s.message().c_str());
    return kvc::kExitUsage;
  }
  // Read the secret once here, so that an unusable file is a usage error before anything opens.
  if (kvc::Result<std::string> secret = o.load_secret(); !secret.ok()) {
    std::fprintf(stderr, "kvc-node: %s\n", secret.status().message().c_str());
    return kvc::kExitUsage;
  } else {
    o.secret = std::move(*secret);
    o.secret_file.clear();
  }
  // A weak secret would let one recorded handshake be guessed offline.
  if (!o.secret.empty()) {
    if (kvc::Status s = kvc::net::check_secret_strength(o.secret); !s.ok()) {
      std::fprintf(stderr, "kvc-node: --secret-file: %s\n", s.message().c_str());
      return kvc::kExitUsage;
    }
  }

  // A permissions file that does not parse is a usage error, before anything opens.
  if (!o.permissions_file.empty()) {
    if (kvc::Result<kvc::server::Permissions> p =
            kvc::server::Permissions::load(o.permissions_file);
        !p.ok()) {
      std::fprintf(stderr, "kvc-node: --permissions-file: %s\n", p.status().message().c_str());
      return kvc::kExitUsage;
    }
  }

  // Signals are taken synchronously by this thread; every thread the Engine starts inherits
  // the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  // SIGHUP reloads the TLS certificates, keys and CAs (Engine::reload_tls) and the permissions
  // file (Engine::reload_permissions); it never stops.
  sigset_t taken = stop_signals;
  sigaddset(&taken, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &taken, nullptr);
  signal(SIGPIPE, SIG_IGN);

  kvc::Result<std::unique_ptr<kvc::server::Engine>> engine = kvc::server::Engine::open(o);
  // The Engine keeps its own copy, out of core dumps; this one is not needed again.
  kvc::net::wipe(o.secret);
  if (!engine.ok()) return kvc::cli::fail("kvc-node", engine.status());
  for (;;) {
    timespec wait{0, 100 * 1000 * 1000};
    const int sig = sigtimedwait(&taken, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) break;
    // The Engine logs what it reloaded, or which file failed (and keeps the old certificates).
    if (sig == SIGHUP) {
      (void)(*engine)->reload_tls();
      (void)(*engine)->reload_permissions();
    }
    if (!(*engine)->failure().ok()) break;
  }
  // Stopping is bounded: close() runs on its own thread while this one keeps listening. A
  // second signal, or a stop that takes longer than kStopBudget (a disk that no longer answers,
  // a fatal error half way through a write), ends the process at once with exit 1: a member
  // that cannot stop cleanly must still stop (what it acknowledged is in its synced WAL).
  constexpr std::int64_t kStopBudgetMs = 10000;
  std::promise<kvc::Status> closed;
  std::future<kvc::Status> done = closed.get_future();
  std::thread closer([&] { closed.set_value((*engine)->close()); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStopBudgetMs);
  while (done.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    timespec wait{0, 50 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &wait);
    const char* why = nullptr;
    if (sig == SIGINT || sig == SIGTERM) why = "a second stop signal";
    if (std::chrono::steady_clock::now() >= deadline) why = "the stop took too long";
    if (why != nullptr) {
      kvc::Status f = (*engine)->failure();
      spdlog::critical("exiting without a clean stop: {}{}", why,
                       f.ok() ? std::string() : " after: " + f.to_string());
      spdlog::default_logger()->flush();
      std::fflush(stderr);
      std::_Exit(kvc::kExitError);
    }
  }
  closer.join();
  kvc::Status s = done.get();
  if (!s.ok()) return kvc::cli::fail("kvc-node", s);
  return kvc::kExitOk;
}
