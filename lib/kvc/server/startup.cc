// Start-up of a member, before its loop runs (calling thread): the data directory and its
// identity, the storage (WAL, snapshots, LMDB state), the bootstrap log of a new cluster or
// disaster recovery (--force-new-cluster), and the Raft core restored from what is on disk.
// The rules are functions in bootstrap.h; this file does the I/O around them.
//
// Invariants kept here:
// - Nothing is served from a state the member cannot vouch for: a damaged identity or state
//   refuses the start (with the rebuild advice), and a state older or newer than the WAL says
//   is refused by storage::check_consistency before the core is made.
// - What bootstrap writes (the initial log, the forced membership) is synced to the WAL before
//   the core sees it, so it is done once.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/bootstrap.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

Status Engine::Impl::open_data_dir() {
  Result<storage::DataDir> dir =
      storage::DataDir::open(options_.data_dir, storage::DataDir::Mode::kReadWrite);
  if (!dir.ok()) return dir.status();
  data_dir_.emplace(std::move(*dir));

  Result<storage::Membership> initial = storage::Membership{};
  if (!options_.initial_cluster.empty()) {
    initial = storage::parse_initial_cluster(options_.cluster_token, options_.initial_cluster);
    if (!initial.ok()) return initial.status().with_context("--initial-cluster");
  }

  if (data_dir_->has_identity()) {
    Result<storage::Identity> id = data_dir_->read_identity();
    if (!id.ok()) return with_rebuild_advice(id.status());
    if (id->name != options_.name || id->cluster_token != options_.cluster_token) {
      return Status::failed_precondition(
          "data directory " + options_.data_dir + " belongs to member '" + id->name +
          "' of the cluster with token '" + id->cluster_token + "', not to member '" +
          options_.name + "' with token '" + options_.cluster_token +
          "': use that member's name and token, or another data directory");
    }
    identity_ = *id;
    if (!identity_.initial_cluster.empty()) {
      Result<storage::Membership> boot =
          storage::parse_initial_cluster(identity_.cluster_token, identity_.initial_cluster);
      if (!boot.ok()) return boot.status().with_context(data_dir_->identity_path());
      bootstrap_membership_ = std::move(*boot);
    }
    if (!initial->empty() && !identity_.initial_cluster.empty() &&
        storage::sorted_initial_cluster(*initial) != identity_.initial_cluster) {
      spdlog::warn(
          "--initial-cluster differs from the cluster this member was created with; "
          "it is ignored on restart flag={} identity={}",
          options_.initial_cluster, identity_.initial_cluster);
    }
    return Status();
  }

  if (!data_dir_->is_empty()) {
    return Status::failed_precondition("data directory " + options_.data_dir +
                                       " holds files but no identity: it is not a kvc member's "
                                       "data directory (or its identity file was removed)");
  }
  if (initial->empty()) {
    return Status::invalid_argument(
        "--initial-cluster is required to create a member (for a member joining a running "
        "cluster: the members' names and peer addresses, as kvc-ctl member add prints them)");
  }
  if (options_.initial_cluster_state == "existing") return join_existing_cluster(*initial);
  if (initial->empty()) {
    return Status::invalid_argument("--initial-cluster is required to create a new member");
  }
  Result<storage::Identity> founder =
      founder_identity(options_.name, options_.cluster_token, *initial);
  if (!founder.ok()) return founder.status();
  identity_ = std::move(*founder);
  bootstrap_membership_ = std::move(*initial);
  KVC_RETURN_IF_ERROR(data_dir_->write_identity(identity_));
  spdlog::info("created member name={} id={} cluster={} members={}", identity_.name,
               hex(identity_.member_id), hex(identity_.cluster_id),
               storage::describe_membership(bootstrap_membership_));
  return Status();
}

// A member added with kvc-ctl member add: the cluster already chose its id, which the members
// it can reach tell it (join_cluster, or the simulator's environment).
Status Engine::Impl::join_existing_cluster(const storage::Membership& initial) {
  std::vector<std::string> peers;
  for (const storage::Member& m : initial.members) {
    if (m.name != options_.name) peers.push_back(m.peer_addr);
  }
  Result<JoinAnswer> join = sim_ != nullptr && sim_->join
                                ? sim_->join(options_.name)
                                : join_cluster(peers, options_.name, options_.cluster_token,
                                               peer_dial_tls_, options_.join_timeout_ms);
  if (!join.ok()) {
    return join.status().with_context("joining the cluster as '" + options_.name + "'");
  }
  identity_.name = options_.name;
  identity_.cluster_token = options_.cluster_token;
  identity_.member_id = join->member_id;
  identity_.cluster_id = join->cluster_id;
  const PeerInfo& by = join->answered_by;
  learned_[by.id] = {by.id, by.name, by.peer_addr, by.client_addr, false};
  KVC_RETURN_IF_ERROR(data_dir_->write_identity(identity_));
  spdlog::info("joined cluster={} as name={} id={} (told by {})", hex(identity_.cluster_id),
               identity_.name, hex(identity_.member_id), by.name);
  return Status();
}

Status Engine::Impl::open_storage() {
  Result<storage::OpenedWal> opened =
      storage::Wal::open(data_dir_->wal_dir(), {.segment_bytes = options_.wal_segment_bytes});
  if (!opened.ok()) return opened.status();
  if (opened->log.report.torn_tail) {
    spdlog::warn("wal: {}", opened->log.report.describe());
  }
  wal_.emplace(std::move(opened->wal));
  Result<std::unique_ptr<storage::StateMachine>> st = storage::StateMachine::open(
      data_dir_->state_dir(), {.map_size = options_.state_map_size,
                               .history_revisions = options_.history_revisions,
                               .history_bytes = options_.history_bytes,
                               .test_hook = options_.state_test_hook});
  if (!st.ok()) return with_rebuild_advice(st.status());
  state_ = std::move(*st);
  // The state and the log must agree before the Raft core sees either (consistency.h): a
  // violation (a state older than the log says, a log missing its newest segments, ...)
  // refuses the start with what is missing and what to do.
  if (Status s = storage::check_consistency(state_->facts(), storage::log_facts(*wal_)).status();
      !s.ok()) {
    return s;
  }
  if (options_.force_new_cluster) {
    KVC_RETURN_IF_ERROR(force_new_cluster(opened->log));
  }
  if (state_->membership().was_removed(identity_.member_id)) {
    return Status::failed_precondition(
        "this member (" + hex(identity_.member_id) +
        ") was removed from the cluster, as its own state records: it must not run again "
        "(to rejoin, add it again with kvc-ctl member add and start it with an empty data "
        "directory)");
  }
  incoming_snapshot_path_ = data_dir_->snap_dir() + "/incoming.tmp";
  // A transfer cut by a crash left a partial file: the leader starts it again.
  KVC_RETURN_IF_ERROR(storage::remove_temp_snapshots(data_dir_->snap_dir()));
  if (Result<std::vector<storage::SnapshotFile>> files =
          storage::list_snapshots(data_dir_->snap_dir());
      files.ok()) {
    for (const storage::SnapshotFile& f : *files) snapshot_files_[f.index] = f.path;
  }
  return make_node(std::move(opened->log));
}

// Disaster recovery (--force-new-cluster), see bootstrap.h: written to the WAL and synced
// before the member starts, so it is done once.
Status Engine::Impl::force_new_cluster(storage::RecoveredLog& log) {
  const ForcedCluster forced = server::force_new_cluster(state_facts(), log, identity_.member_id,
                                                         identity_.name, options_.listen_peer);
  KVC_RETURN_IF_ERROR(wal_->append(forced.hard_state, forced.entries));
  KVC_RETURN_IF_ERROR(wal_->sync());
  spdlog::warn(
      "forced a new cluster: this member is now its only voter; kept every entry up to "
      "index={} and removed {} other member(s); grow it again with kvc-ctl member add",
      forced.last, forced.removed);
  for (const raft::Entry& e : forced.entries) log.entries.push_back(e);
  log.hard_state = forced.hard_state;
  return Status();
}

StateFacts Engine::Impl::state_facts() const {
  return {state_->applied_index(), state_->applied_term(), state_->membership().to_conf_state()};
}

// A new cluster's first log (bootstrap.h), written and synced before the core sees it.
Status Engine::Impl::bootstrap_log(storage::RecoveredLog& log) {
  std::optional<InitialLog> initial =
      initial_log(bootstrap_membership_, log, state_->applied_index());
  if (!initial) return Status();
  KVC_RETURN_IF_ERROR(wal_->append(initial->hard_state, initial->entries));
  KVC_RETURN_IF_ERROR(wal_->sync());
  log.entries = std::move(initial->entries);
  log.hard_state = initial->hard_state;
  return Status();
}

Status Engine::Impl::make_node(storage::RecoveredLog log) {
  KVC_RETURN_IF_ERROR(bootstrap_log(log));
  // The state machine is the snapshot the log starts after: it durably holds everything up to
  // its applied index D (see docs/architecture.md, "Durability"). A new member's membership
  // is empty: the log's first entries (bootstrap_log), or the leader's log or snapshot for a
  // member that joined, bring the members.
  const StateFacts facts = state_facts();
  RestorePlan plan = restore_plan(facts, std::move(log), wal_->last_index());
  if (plan.needs_snapshot_marker) {
    // The state is ahead of the log (restored from a snapshot by kvc-snap restore): the log
    // continues after it, which the WAL records with a snapshot marker.
    KVC_RETURN_IF_ERROR(wal_->save_snapshot(plan.restore.snapshot));
    KVC_RETURN_IF_ERROR(wal_->sync());
  }
  if (plan.dropped_from != 0) {
    spdlog::warn(
        "dropping stale log entries after the state's index index={} term={} "
        "state_term={}",
        plan.dropped_from, plan.dropped_term, facts.applied_term);
  }
  raft::RestoreState& rs = plan.restore;
  synced_hard_state_ = rs.hard_state;
  // A repair that was in progress when the member stopped goes on (raft/node.h, REPAIR).
  repair_path_ = data_dir_->path() + "/repair";
  Result<std::optional<storage::RepairRecord>> repair = storage::load_repair_file(repair_path_);
  if (!repair.ok()) return repair.status();
  if (*repair) {
    rs.repair = (*repair)->state;
    spdlog::warn(
        "resuming a repair: this member will not lead until it is repaired log_to={} "
        "needs_snapshot={} snapshot_from={} reason=\"{}\"",
        rs.repair.log_to, rs.repair.needs_snapshot, rs.repair.snapshot_from, (*repair)->reason);
    if (rs.repair.needs_snapshot) {
      damaged_ = true;
      damage_reason_ =
          (*repair)->reason.empty() ? "damaged before the last restart" : (*repair)->reason;
    }
  }

  rng_ = raft::SplitMix64(next_random());
  raft::Config cfg;
  cfg.id = identity_.member_id;
  cfg.election_ticks = options_.election_ticks;
  cfg.heartbeat_ticks = options_.heartbeat_ticks;
  cfg.rng = &rng_;
  cfg.logger = &raft_logger_;
  // New at every start: lets a leader tell this incarnation from the last one (REPAIR).
  cfg.boot_id = next_random() | 1;
  // Under load a learner is always a few entries behind; the engine's own check (member
  // promote) bounds the lag it accepts, so the core only refuses gross lag.
  cfg.promote_lag_slack = options_.retained_entries / 10 + 100;
  Result<std::unique_ptr<raft::Node>> node = raft::Node::create(cfg, std::move(rs));
  if (!node.ok()) return node.status().with_context("restoring the raft state");
  node_ = std::move(*node);
  // As etcd does by default (--initial-election-tick-advance), a starting member begins one
  // tick short of the shortest election timeout: a restarted cluster elects a leader after
  // [1, election_ticks] ticks instead of [election_ticks, 2 * election_ticks). A live leader
  // is not disturbed: its followers ignore (pre-)votes while they hear from it.
  for (int i = 1; i < options_.election_ticks; ++i) node_->tick();
  replay_to_ = node_->commit();
  for (const storage::Member& mem : state_->membership().members) learned_[mem.id] = mem;
  spdlog::info("restored state applied={} term={} log_last={} commit={}", facts.applied,
               facts.applied_term, plan.last, node_->commit());
  return Status();
}

}  // namespace kvc::server
