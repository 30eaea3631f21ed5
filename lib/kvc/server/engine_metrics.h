// The metrics one member exports (GET /metrics on --listen-http). Counters and histograms are
// recorded where things happen (any thread: they are atomics); gauges that are cheaper to read
// than to keep current are filled by a collector the Engine installs, which runs on the loop
// thread when the HTTP server exposes the registry. The list, with meanings, is in kvc-node(1).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "kvc/common/metrics.h"
#include "kvc/wire/messages.h"

namespace kvc::server {

class EngineMetrics {
 public:
  EngineMetrics(const std::string& name, const std::string& id_hex);

  metrics::Registry registry;

  // Raft.
  metrics::Gauge& term;
  metrics::Gauge& is_leader;
  metrics::Gauge& has_leader;
  metrics::Counter& leader_changes;
  metrics::Gauge& commit_index;
  metrics::Gauge& applied_index;
  metrics::Gauge& last_index;
  // Proposals (writes and membership changes this member proposed as leader), by outcome.
  metrics::Counter& proposals_committed;
  metrics::Counter& proposals_dropped;    // lost to a leader change: never applied
  metrics::Counter& proposals_timed_out;  // outcome unknown to the client
  metrics::Gauge& proposals_pending;

  // Storage.
  metrics::Histogram& wal_fsync;  // seconds per WAL sync
  metrics::Histogram& apply;      // seconds per batch of committed entries applied
  metrics::Counter& entries_applied;
  metrics::Counter& entry_bytes_applied;
  metrics::Gauge& wal_bytes;
  metrics::Gauge& state_bytes;
  metrics::Histogram& state_flush;  // seconds per state flush (LMDB commit + sync)
  metrics::Counter& state_flush_bytes;
  metrics::Counter& state_flush_pages;
  metrics::Gauge& state_flushed_index;
  metrics::Gauge& state_unflushed_bytes;
  metrics::Gauge& state_mapped_bytes;
  metrics::Counter& flush_ticks;  // flush-timer ticks (on_flush_timer)
  metrics::Counter& heap_trims;
  metrics::Gauge& heap_trim_released;
  metrics::Gauge& storage_bytes_written;
  metrics::Gauge& write_amplification;
  metrics::Counter& snapshots_created;
  metrics::Histogram& snapshot_create;  // seconds to write a snapshot file
  metrics::Counter& snapshots_installed;
  metrics::Histogram& snapshot_install;  // seconds from the first chunk to the state live
  metrics::Counter& snapshots_sent;      // to a follower, complete
  metrics::Counter& snapshots_refused;   // received whole from a leader, damaged, refused

  // Integrity (issue 14): damage found, repairs, the scrubber, cross-member hash checks.
  metrics::Gauge& state_damaged;          // 1 while the state is damaged and being repaired
  metrics::Counter& damage_found;         // checksum mismatches and hash disagreements seen
  metrics::Counter& repairs_completed;    // the state replaced by a snapshot from the leader
  metrics::Gauge& raft_repairing;         // 1 while this member may not vote (any repair)
  metrics::Gauge& lost_entries_detected;  // leader: followers that lost acknowledged entries
  metrics::Counter& scrub_records;
  metrics::Counter& scrub_bytes;
  metrics::Counter& scrub_passes;
  metrics::Counter& scrub_damaged;
  metrics::Counter& hash_checks_agreed;
  metrics::Counter& hash_checks_disagreed;
  metrics::Counter& hash_checks_failed;

  // Network.
  metrics::Gauge& client_connections;
  metrics::Gauge& peers_connected;
  metrics::Gauge& watchers;      // key and prefix watches: client protocol, HTTP, embedded
  metrics::Gauge& watch_groups;  // watchers_: a shared group counts once

  // Client requests (client protocol and HTTP key-value API), by operation.
  metrics::Histogram& request(wire::Op op);
  metrics::Counter& request_error(wire::Op op, Code code);
  // Requests refused by authentication or the permissions file (client port and HTTP), by
  // code (permission_denied, unauthenticated) and operation ("hello" and "http" for a refused
  // client-port hello and HTTP request).
  metrics::Counter& access_refused(Code code, std::string_view op);
  // Heartbeat round trip to a peer (leader only), labelled with the peer's name.
  metrics::Histogram& peer_round_trip(const std::string& peer_name);

 private:
  std::array<metrics::Histogram*, 32> requests_{};
  std::mutex mu_;  // guards the lazily registered series below
  std::map<std::pair<int, int>, metrics::Counter*> request_errors_;
  std::map<std::string, metrics::Histogram*> peer_rtt_;
  std::map<std::pair<int, std::string>, metrics::Counter*, std::less<>> access_refused_;
};

}  // namespace kvc::server
