#include "kvc/server/engine_metrics.h"

#include "kvc/common/version.h"

namespace kvc::server {

namespace {
constexpr auto& kLat = metrics::kLatencyBuckets;
constexpr auto& kLong = metrics::kLongDurationBuckets;
}  // namespace

// Long on purpose: the list of every metric the member exports, one registration each.
EngineMetrics::EngineMetrics(const std::string& name, const std::string& id_hex)
    : term(registry.gauge("kvc_raft_term", "The current Raft term.")),
      is_leader(registry.gauge("kvc_raft_is_leader", "1 when this member is the leader.")),
      has_leader(registry.gauge("kvc_raft_has_leader", "1 when this member knows a leader.")),
      leader_changes(registry.counter("kvc_raft_leader_changes_total",
                                      "Leader changes seen by this member (to no leader too).")),
      commit_index(
          registry.gauge("kvc_raft_commit_index", "The highest log index known committed.")),
      applied_index(
          registry.gauge("kvc_raft_applied_index", "The highest log index applied to the state.")),
      last_index(registry.gauge("kvc_raft_last_index", "The index of the last log entry.")),
      proposals_committed(registry.counter("kvc_proposals_total", "Proposals by outcome.",
                                           {{"outcome", "committed"}})),
      proposals_dropped(registry.counter("kvc_proposals_total", "Proposals by outcome.",
                                         {{"outcome", "dropped"}})),
      proposals_timed_out(registry.counter("kvc_proposals_total", "Proposals by outcome.",
                                           {{"outcome", "timed_out"}})),
      proposals_pending(registry.gauge("kvc_proposals_pending",
                                       "Proposals waiting to be committed and applied.")),
      wal_fsync(
          registry.histogram("kvc_wal_fsync_seconds", "Latency of a WAL sync (fdatasync).", kLat)),
      apply(registry.histogram("kvc_apply_seconds",
                               "Time to apply one batch of committed entries to the state.", kLat)),
      entries_applied(
          registry.counter("kvc_entries_applied_total", "Log entries applied to the state.")),
      entry_bytes_applied(registry.counter("kvc_entries_applied_bytes_total",
                                           "Bytes of log entry data applied to the state.")),
      wal_bytes(registry.gauge("kvc_wal_bytes", "Size of the WAL segments on disk.")),
      state_bytes(registry.gauge("kvc_state_bytes", "Size of the LMDB state on disk.")),
      state_flush(registry.histogram("kvc_state_flush_seconds",
                                     "Time to flush applied writes into LMDB (commit and sync).",
                                     kLong)),
      state_flush_bytes(registry.counter(
          "kvc_state_flush_bytes_total",
          "Bytes the state flushes caused to be written to storage (the flush thread's "
          "write_bytes in /proc: pages LMDB dirtied, each counted once while it stays dirty).")),
      state_flush_pages(registry.counter(
          "kvc_state_flush_pages_total",
          "Pages of the state database the flushes wrote (kvc_state_flush_bytes_total / the "
          "page size).")),
      state_flushed_index(registry.gauge(
          "kvc_state_flushed_index",
          "The highest applied index the state database holds durably (the WAL replays the "
          "rest after a restart).")),
      state_unflushed_bytes(registry.gauge(
          "kvc_state_unflushed_bytes",
          "Approximate memory held by what is applied and not yet flushed into the state "
          "database (the overlay being filled and the one a flush is writing).")),
      state_mapped_bytes(registry.gauge(
          "kvc_state_mapped_bytes",
          "Bytes of the state database file mapped into the member's page tables ahead of the "
          "reads (it catches up with the file after a start, an install or growth).")),
      flush_ticks(registry.counter(
          "kvc_flush_ticks_total",
          "Flush-timer ticks (every half --flush-interval): each may start a state flush, a "
          "map-in step or a heap trim.")),
      heap_trims(registry.counter(
          "kvc_heap_trims_total",
          "Times the member gave the memory of flushed writes back to the system once the "
          "writes stopped (malloc_trim).")),
      heap_trim_released(registry.gauge(
          "kvc_heap_trim_released_bytes",
          "How much the last of those trims lowered the member's anonymous resident memory.")),
      storage_bytes_written(registry.gauge(
          "kvc_storage_written_bytes",
          "Bytes this member has caused to be written to storage since it started (WAL, state, "
          "snapshots; write_bytes in /proc/self/io).")),
      write_amplification(registry.gauge(
          "kvc_write_amplification",
          "kvc_storage_written_bytes divided by kvc_entries_applied_bytes_total: bytes written "
          "to storage per byte of log entry applied, since start (updated after each flush).")),
      snapshots_created(registry.counter("kvc_snapshots_created_total",
                                         "Snapshot files written by this member.")),
      snapshot_create(registry.histogram("kvc_snapshot_create_seconds",
                                         "Time to write a snapshot file.", kLong)),
      snapshots_installed(registry.counter("kvc_snapshots_installed_total",
                                           "Snapshots received from a leader and installed.")),
      snapshot_install(registry.histogram(
          "kvc_snapshot_install_seconds",
          "Time from receiving a whole snapshot to its state being live.", kLong)),
      snapshots_sent(
          registry.counter("kvc_snapshots_sent_total", "Snapshots sent completely to a follower.")),
      snapshots_refused(registry.counter(
          "kvc_snapshots_refused_total",
          "Snapshots received whole from a leader that failed their checks and were refused "
          "(the leader makes a new one).")),
      state_damaged(registry.gauge(
          "kvc_state_damaged",
          "1 while this member's state is damaged: it serves no reads, does not vote, and is "
          "being repaired with a snapshot from the leader.")),
      damage_found(registry.counter(
          "kvc_state_damage_found_total",
          "Damage found in the state: checksum mismatches (reads, apply, snapshots, hashes, the "
          "scrubber) and state hashes that disagree with the cluster's majority.")),
      repairs_completed(registry.counter("kvc_state_repairs_total",
                                         "Damaged states replaced by a snapshot from the leader.")),
      raft_repairing(registry.gauge(
          "kvc_raft_repairing",
          "1 while this member is being repaired (lost acknowledged entries or a damaged state) "
          "and may not vote or count toward a quorum.")),
      lost_entries_detected(registry.gauge(
          "kvc_raft_lost_entries_detected",
          "Leader: followers found (since this member started) to have lost log entries they "
          "had acknowledged.")),
      scrub_records(registry.counter("kvc_scrub_records_total",
                                     "State records whose checksum the scrubber verified.")),
      scrub_bytes(registry.counter("kvc_scrub_bytes_total", "Bytes the scrubber verified.")),
      scrub_passes(registry.counter("kvc_scrub_passes_total",
                                    "Complete passes of the scrubber over the state.")),
      scrub_damaged(
          registry.counter("kvc_scrub_damaged_total", "Damaged records the scrubber found.")),
      hash_checks_agreed(registry.counter("kvc_hash_checks_total",
                                          "Periodic cross-member state hash checks, by result.",
                                          {{"result", "agreed"}})),
      hash_checks_disagreed(registry.counter("kvc_hash_checks_total",
                                             "Periodic cross-member state hash checks, by result.",
                                             {{"result", "disagreed"}})),
      hash_checks_failed(registry.counter("kvc_hash_checks_total",
                                          "Periodic cross-member state hash checks, by result.",
                                          {{"result", "failed"}})),
      client_connections(
          registry.gauge("kvc_client_connections", "Open client-protocol connections.")),
      peers_connected(registry.gauge("kvc_peers_connected", "Peers with a live outgoing link.")),
      watchers(registry.gauge("kvc_watchers",
                              "Key and prefix watches served (client protocol, HTTP, embedded).")),
      watch_groups(registry.gauge("kvc_watch_groups",
                                  "Watches served as one (shared watch responses) or alone: "
                                  "what each applied batch is matched against.")) {
  registry
      .gauge("kvc_member_info", "Constant 1, labelled with this member's identity.",
             {{"name", name}, {"id", id_hex}, {"version", std::string(kvc::version())}})
      .set(1);
}

metrics::Histogram& EngineMetrics::request(wire::Op op) {
  const auto i = static_cast<std::size_t>(op);
  if (i < requests_.size()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (requests_[i] == nullptr) {
      requests_[i] = &registry.histogram("kvc_client_request_seconds",
                                         "Client request latency by operation (receipt to answer).",
                                         kLat, {{"op", std::string(wire::op_name(op))}});
    }
    return *requests_[i];
  }
  return registry.histogram("kvc_client_request_seconds",
                            "Client request latency by operation (receipt to answer).", kLat,
                            {{"op", "unknown"}});
}

metrics::Counter& EngineMetrics::request_error(wire::Op op, Code code) {
  std::lock_guard<std::mutex> lock(mu_);
  metrics::Counter*& c = request_errors_[{static_cast<int>(op), static_cast<int>(code)}];
  if (c == nullptr) {
    c = &registry.counter(
        "kvc_client_request_errors_total",
        "Client requests answered with an error, by operation and code.",
        {{"op", std::string(wire::op_name(op))}, {"code", std::string(code_name(code))}});
  }
  return *c;
}

metrics::Counter& EngineMetrics::access_refused(Code code, std::string_view op) {
  std::lock_guard<std::mutex> lock(mu_);
  metrics::Counter*& c = access_refused_[{static_cast<int>(code), std::string(op)}];
  if (c == nullptr) {
    c = &registry.counter(
        "kvc_access_refused_total",
        "Requests refused by authentication or the permissions file, by code and operation.",
        {{"code", std::string(code_name(code))}, {"op", std::string(op)}});
  }
  return *c;
}

metrics::Histogram& EngineMetrics::peer_round_trip(const std::string& peer_name) {
  std::lock_guard<std::mutex> lock(mu_);
  metrics::Histogram*& h = peer_rtt_[peer_name];
  if (h == nullptr) {
    h = &registry.histogram("kvc_peer_round_trip_seconds",
                            "Heartbeat round trip from the leader to a peer.", kLat,
                            {{"peer", peer_name}});
  }
  return *h;
}

}  // namespace kvc::server
