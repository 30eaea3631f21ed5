// The settings of one kvc member: the same for kvc-node's flags and for an application that
// embeds an Engine. Plain values; validate() checks them before anything is opened.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/net/tls.h"

namespace kvc::server {

struct EngineOptions {
  std::string name;              // this member's name, unique in the cluster
  std::string data_dir;          // DATA_DIR (wal/, snap/, state/, identity, lock)
  std::string listen_peer;       // HOST:PORT other members connect to
  std::string listen_client;     // HOST:PORT clients connect to ("" = no client listener)
  std::string listen_http;       // HOST:PORT of the HTTP endpoint ("" = none)
  std::string advertise_client;  // what members tell clients (default: listen_client)
  std::string initial_cluster;   // name=HOST:PORT,... (peer addresses)
  std::string initial_cluster_state = "new";  // new | existing
  std::string cluster_token = "kvc-cluster";

  std::uint64_t tick_ms = 100;  // Raft's logical clock
  int election_ticks = 10;      // election timeout, in ticks
  int heartbeat_ticks = 1;
  std::uint64_t flush_interval_ms = 1000;           // applied state -> LMDB at least this often
  std::uint64_t flush_bytes = 16ull << 20;          // ... or once this much is applied in memory
  std::uint64_t retained_entries = 10000;           // log entries kept for slow followers
  std::uint64_t max_request_bytes = 1536ull << 10;  // the largest key + value accepted
  // A txn: at most this many ops in each branch (and compares); its keys and values together
  // at most max_request_bytes.
  std::uint64_t max_txn_ops = 128;
  std::uint64_t max_frame_bytes = 16ull << 20;
  std::uint64_t max_inflight_requests = 4096;  // per client connection, then reads pause
  std::uint64_t max_client_connections = 4096;
  // From one IP address (all ports), on the client port; 0: no limit but the one above.
  std::uint64_t max_client_connections_per_address = 0;
  std::uint64_t max_peer_connections = 256;  // incoming, on the peer port
  // A connection on the client or peer port that has not completed its handshake (TLS, when
  // the port speaks it, and the hello) this long after it was accepted is closed: a client or peer
  // that connects and sends nothing, or a byte at a time, cannot hold a connection slot.
  std::uint64_t handshake_timeout_ms = 5000;
  std::uint64_t request_timeout_ms = 5000;  // the default when a request names none
  std::uint64_t wal_segment_bytes = 64ull << 20;
  std::uint64_t state_map_size = 8ull << 30;
  std::uint64_t snapshots_kept = 3;
  // Watch history kept in the state (storage::StateOptions): the newest history_revisions
  // revisions, and at most history_bytes of events; a watch from an older revision fails with
  // the oldest one still available.
  std::uint64_t history_revisions = 100000;
  std::uint64_t history_bytes = 64ull << 20;
  std::uint64_t join_timeout_ms = 60000;  // a member being added waits this long for its id
  // Integrity (kvc-node(1), "INTEGRITY"). The scrubber re-reads every stored record in the
  // background at about this many bytes a second and verifies its checksum, so damage in cold
  // keys is found before a read or a snapshot needs them (0: off).
  std::uint64_t scrub_bytes_per_second = 4ull << 20;
  // Every this often the leader compares the state hashes of all members at one index and
  // makes a member whose state disagrees with the majority repair itself (0: off).
  std::uint64_t hash_check_interval_ms = 5 * 60 * 1000;
  // Shared-secret authentication of peers, joining members and clients (kvc(7), "SECURITY"):
  // the secret keys TLS 1.3 (an external pre-shared key) on every port without certificates.
  // Engine::start moves it out of these options into memory kept out of core dumps. `secret` is the
  // secret itself (for an embedding application); `secret_file` names a file holding it (mode 600,
  // one trailing newline stripped). At most one may be set; neither means no authentication.
  std::string secret;
  std::string secret_file;
  // TLS with certificates (docs/security.md), flags named as etcd's. `client_tls`: the client
  // port (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth). `peer_tls`: the
  // peer port (--peer-cert-file, ...), and the certificate this member presents when it dials
  // a peer, which it verifies against --peer-trusted-ca-file and the peer address it dialled.
  // A port without certificates uses the shared secret, when there is one, as a TLS 1.3
  // pre-shared key; with neither it speaks plaintext.
  net::TlsConfig client_tls;
  net::TlsConfig peer_tls;
  // Identities and what they may do (kvc-permissions(5)): named tokens, read/readwrite grants
  // on key prefixes, admin. Empty: every identity the ports accept may do everything. Read at
  // start (a bad file fails the start) and again by reload_permissions() (kvc-node: SIGHUP).
  std::string permissions_file;
  // HTTP paths served without authentication when the HTTP API requires it (a secret or
  // --client-cert-auth): comma-separated; empty closes every path.
  std::string http_open_paths = "/health,/ready,/metrics";
  // Disaster recovery: restart this member as the only member of its cluster, keeping every
  // entry its log holds (see kvc-node(1), "DISASTER RECOVERY").
  bool force_new_cluster = false;

  // Test-only deliberately broken behaviour, honoured only by builds with KVC_MUTATIONS (the
  // kvc-node-unsafe test binary); production builds refuse a non-empty value. It proves the
  // process-level fault tests catch a member that breaks its promises:
  //   "ack-before-commit"  a leader answers a write as soon as it is proposed
  //   "local-reads"        linearizable reads are served from local state without ReadIndex
  //   "diverge-apply"      a put of a key under "/diverge" stores another value than it was
  //                        given (a state that differs from the others, checksums intact)
  //   "unverified-reads"   stored state records are not checked against their checksums when
  //                        read (storage's kReadsSkipChecksum): a damaged value is served
  //   "ack-before-apply"   a write is answered when its entry commits, before it is applied
  //                        (its result guessed: a cas or delete as if it succeeded)
  //   "read-before-applied" a linearizable read is served once its read index is known,
  //                        without waiting for the state to apply up to it
  //   "skip-wal-replay"    on restart the committed WAL entries after the state's flushed
  //                        index are not applied again (their writes are lost to the state)
  //   "persist-without-fsync" a Ready counts as persisted without its fdatasync
  //   "marker-before-flush" the WAL records a state flush (its snapshot marker, and the release
  //                        of the log below it) before LMDB has committed the flush
  // All but diverge-apply and unverified-reads are caught by kvc-sim --server
  // (docs/simulator.md, "The server simulation").
  std::string test_mutation;
  // Tests only: storage::StateOptions::test_hook of the member's state machine.
  std::function<void(std::string_view point)> state_test_hook;

  Status validate() const;
  // The effective secret: `secret`, else the contents of `secret_file`, else "". Fails with a
  // message naming the file when it cannot be used (see net::load_secret_file).
  Result<std::string> load_secret() const;
  // Resolves (blocking) every host name the member needs at start: --listen-peer,
  // --listen-client, --listen-http, --advertise-client and, when DATA_DIR holds no member yet
  // (it is being created or added), the peer addresses in --initial-cluster. Fails with
  // kInvalidArgument naming the flag, the name and the resolver's answer, so that a typo stops
  // the start instead of leaving the member dialling nowhere. (A restarted member does not
  // need its peers' names at start: they are looked up on every reconnect.)
  Status check_host_names() const;
  // Warnings to log at start: listeners on a non-loopback address without a secret.
  std::vector<std::string> exposure_warnings() const;
  // Whether this build honours test_mutation.
  static bool mutations_compiled_in();
  // The names test_mutation accepts.
  static const std::vector<std::string>& test_mutations();
};

// Checks one port's certificate flags fit together (`prefix`: "" for the client port, "peer-"
// for the peer port, as the flags are named): a cert file needs its key file, a trusted CA file
// and client-cert-auth need both, and client-cert-auth needs a trusted CA file.
Status check_tls_flags(const net::TlsConfig& config, const std::string& prefix);

// Checks the setting names of a kvc-node --config file: `text` is the file's contents, `path`
// its name for messages, `known` the long option names (without "--"). The file is CLI11's
// TOML-like format: `name = value` lines (a bare `name` sets a flag), `#` or `;` comments,
// blank lines, arrays in [ ] that may span lines, and `[default]`, the only section kvc-node
// has. Fails with kInvalidArgument naming the file, the line and the first unknown name, and
// the nearest known name when one is close enough to be a typo; a section other than
// [default] is refused the same way (kvc-node has no subcommands).
Status check_config_keys(std::string_view text, const std::string& path,
                         const std::vector<std::string>& known);

}  // namespace kvc::server
