// The replica: the Ready loop between the Raft core, the disk thread and the network, and the
// flushes of applied state into LMDB.
//
// Invariants kept here (the order of persist, apply and send, kvc-node(1) DURABILITY):
// - Entries, the hard state and a received snapshot are durable (fdatasync returned) before
//   advance() tells the core, and before any message of the same Ready that depends on them is
//   sent (a vote or an append acknowledgement).
// - Committed entries already durable may be applied before the Ready's own entries persist
//   (apply-before-persist is safe: they are committed, so durable on a majority).
// - The LMDB state is flushed only up to entries that are durable in the WAL, and the WAL is
//   compacted only below the newest flushed (and snapshot-marked) index.
// - A received snapshot is installed into the state only once the flush thread is idle, and
//   the WAL is told of it after the state holds it.
#include <fcntl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Membership

const storage::Member* Engine::Impl::member(std::uint64_t id) const {
  auto it = learned_.find(id);
  if (it != learned_.end()) return &it->second;
  if (state_) {
    if (const storage::Member* m = state_->membership().find(id)) return m;
  }
  return bootstrap_membership_.find(id);
}

void Engine::Impl::update_peers() {
  if (stopped_) return;
  const raft::ConfState& conf = node_->conf_state();
  std::map<std::uint64_t, std::string> peers;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id == identity_.member_id) continue;
      const storage::Member* m = member(id);
      if (m != nullptr && !m->peer_addr.empty()) peers[id] = m->peer_addr;
    }
  }
  // Members this one heard from but whose addition it has not seen yet (a joining member
  // answers the leader before the log tells it who the members are).
  for (const auto& [id, m] : learned_) {
    if (id != identity_.member_id && !m.peer_addr.empty() && peers.count(id) == 0 &&
        conf.voters.empty() && conf.learners.empty()) {
      peers[id] = m.peer_addr;
    }
  }
  peers_->set_peers(peers);
  // Removed ids are part of the stored membership (so they survive restarts and arrive with
  // snapshots): their connections are refused with `removed` set, so a removed member stops.
  for (const std::uint64_t id : state_->membership().removed) {
    if (id != identity_.member_id) peers_->mark_removed(id);
  }
}

Result<std::uint64_t> Engine::Impl::lookup_joining(const std::string& name) const {
  const raft::ConfState& conf = node_->conf_state();
  for (const auto& [id, m] : learned_) {
    if (m.name == name && (raft::is_voter(conf, id) || raft::is_learner(conf, id))) return id;
  }
  const storage::Membership cur = current_membership();
  if (const storage::Member* m = cur.find_name(name)) return m->id;
  return Status::not_found("no member named '" + name +
                           "' has been added to the cluster (kvc-ctl member add " + name +
                           " PEER_ADDR)");
}

void Engine::Impl::learn_entries(const std::vector<raft::Entry>& entries) {
  bool changed = false;
  for (const raft::Entry& e : entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
    if (!cc.ok() || cc->context.empty()) continue;
    // An address update takes effect when it is applied (apply_conf_entry), not on append:
    // an update that never commits must not leave this member dialling the wrong address.
    if (cc->type == raft::ConfChangeType::kUpdate) continue;
    Result<storage::Membership> one = storage::decode_membership(cc->context);
    if (!one.ok() || one->members.size() != 1) continue;
    storage::Member& m = learned_[cc->node];
    const storage::Member& from = one->members.front();
    m.id = cc->node;
    if (!from.name.empty()) m.name = from.name;
    if (!from.peer_addr.empty()) m.peer_addr = from.peer_addr;
    if (!from.client_addr.empty()) m.client_addr = from.client_addr;
    changed = true;
  }
  if (changed) update_peers();
}

void Engine::Impl::on_conf_state(const raft::ConfState&) { update_peers(); }

// ---------------------------------------------------------------------------------------------
// Time and the Raft loop

void Engine::Impl::on_tick() {
  if (stopped_) return;
  node_->tick();
  sweep_deadlines();
  retry_backlogged_watchers();
  lease_tick();
}

void Engine::Impl::on_check() {
  if (stopped_) return;
  if (!unsent_reads_.empty()) start_read_batch();
  process_ready();
  if (!snapshot_sends_.empty()) pump_transfers();
}

void Engine::Impl::process_ready() {
  // While this leader's write is in flight, appends of what was proposed since go out now, so
  // followers write in parallel with it rather than after it (raft/node.h, take_messages).
  if (persisting_ && !stopped_ && !failed_) {
    for (raft::Message& m : node_->take_messages()) send_message(std::move(m));
  }
  // After a fatal error nothing more is written: the WAL may be unusable (its errors stick).
  while (!persisting_ && !stopped_ && !failed_ && node_->has_ready()) {
    auto job = std::make_shared<PersistJob>();
    job->rd = node_->ready();
    raft::Ready& rd = job->rd;
    if (rd.soft_state) on_soft_state(*rd.soft_state);
    learn_entries(rd.entries);
    if (rd.conf_state) on_conf_state(*rd.conf_state);
    for (raft::Message& m : rd.messages) send_message(std::move(m));
    rd.messages.clear();
    if (rd.snapshot_wanted) make_snapshot_for_followers();

    const bool disk = rd.hard_state || !rd.entries.empty() || rd.snapshot ||
                      !rd.snapshot_chunks.empty() || rd.repair;
    if (rd.repair) {
      std::string reason = damage_reason_;
      if (rd.repair->log_to != 0) {
        if (!reason.empty()) reason += "; ";
        reason +=
            "the leader found that this member lost log entries it had acknowledged (up "
            "to index " +
            std::to_string(rd.repair->log_to) + ")";
      }
      job->repair = storage::RepairRecord{*rd.repair, rd.repair->active() ? reason : ""};
      metrics_->raft_repairing.set(rd.repair->active() ? 1 : 0);
    }
    // Only a new commit index to write: it waits for the next write with entries (or the final
    // sync at a clean stop), which saves a disk-thread round trip that would also hold back the
    // next Ready's entries. On a leader this is the Ready after most commits.
    const bool commit_only = rd.hard_state && rd.entries.empty() && !rd.snapshot &&
                             rd.snapshot_chunks.empty() && !rd.repair &&
                             rd.hard_state->term == synced_hard_state_.term &&
                             rd.hard_state->vote == synced_hard_state_.vote;
    if (commit_only) {
      unwritten_commit_ = *rd.hard_state;
      complete_ready(rd);
      continue;
    }
    if (!disk) {
      complete_ready(rd);
      continue;
    }
    if (!rd.hard_state) job->held_commit = unwritten_commit_;
    unwritten_commit_.reset();
    // Neither the durable committed entries nor the read states wait for this Ready's write.
    apply_durable_committed(rd);
    note_read_states(rd.read_states);
    rd.read_states.clear();
    serve_reads();
    // Only what Raft's safety depends on needs an fsync now: entries, and a term or vote. A
    // commit index alone may reach the disk later (it is recomputed after a crash).
    job->sync = !rd.entries.empty() || rd.snapshot.has_value() ||
                (rd.hard_state && (rd.hard_state->term != synced_hard_state_.term ||
                                   rd.hard_state->vote != synced_hard_state_.vote));
#ifdef KVC_MUTATIONS
    // Broken on purpose (test builds only): the Ready counts as persisted without its fsync.
    if (options_.test_mutation == "persist-without-fsync") job->sync = false;
#endif
    persisting_ = true;
    if (rd.snapshot) {
      install_then_persist(job);
      return;
    }
    disk_->post([this, job] {
      job->status = persist(*job);
      post_loop([this, job] { on_persisted(job); });
    });
    return;
  }
}

// Committed entries that are already durable here are applied before this Ready's write, so
// their clients do not wait for an fsync (or a disk-thread round trip) that does not protect
// them. Durable: every entry but this Ready's new ones, since each earlier Ready was persisted
// before the next was taken; a leader commits only what it has made durable, and a follower's
// committed entries below rd.entries can never be overwritten. etcd's server likewise applies
// while the WAL is being written. Removes what it applied from rd.committed.
void Engine::Impl::apply_durable_committed(raft::Ready& rd) {
  if (rd.snapshot || rd.committed.empty()) return;
  const std::uint64_t limit = rd.entries.empty() ? UINT64_MAX : rd.entries.front().index - 1;
  const auto split =
      std::partition_point(rd.committed.begin(), rd.committed.end(),
                           [limit](const raft::Entry& e) { return e.index <= limit; });
  if (split == rd.committed.begin()) return;
  std::vector<raft::Entry> durable(std::make_move_iterator(rd.committed.begin()),
                                   std::make_move_iterator(split));
  rd.committed.erase(rd.committed.begin(), split);
  apply_committed(durable);
}

// The read index each pending batch was waiting for.
void Engine::Impl::note_read_states(const std::vector<raft::ReadState>& states) {
  for (const raft::ReadState& rs : states) {
    for (ReadBatch& b : read_batches_) {
      if (b.context == rs.context && b.index == 0) {
        b.index = std::max<std::uint64_t>(rs.index, 1);
        break;
      }
    }
  }
}

// Disk thread: a Ready's writes, in the order that keeps a restart safe.
Status Engine::Impl::persist(PersistJob& job) {
  // The repair state first: it is what keeps this member from voting after a restart.
  Status s = job.repair ? storage::save_repair_file(repair_path_, *job.repair) : Status();
  if (s.ok()) {
    s = wal_->append(job.hard_state_to_write(), job.rd.entries);
  }
  if (s.ok()) s = write_snapshot_chunks(job.rd.snapshot_chunks);
  if (s.ok() && job.sync) {
    const auto t0 = std::chrono::steady_clock::now();
    s = wal_->sync();
    metrics_->wal_fsync.observe_since(t0);
  }
  return s;
}

// Disk thread: chunks of a snapshot being received, into the incoming file.
Status Engine::Impl::write_snapshot_chunks(const std::vector<raft::SnapshotChunk>& chunks) {
  for (const raft::SnapshotChunk& c : chunks) {
    const int flags = O_WRONLY | O_CREAT | (c.offset == 0 ? O_TRUNC : 0);
    Result<storage::UniqueFd> fd = storage::open_file(incoming_snapshot_path_, flags, 0600);
    if (!fd.ok()) return fd.status();
    KVC_RETURN_IF_ERROR(storage::pwrite_all(fd->get(), c.data, c.offset, incoming_snapshot_path_));
  }
  return Status();
}

// The last chunk of a snapshot from the leader: before the core takes it (and installs on it),
// the chunk is written (disk thread, after the earlier chunks' writes) and the whole file is
// checked (scan thread). A damaged file (cut or flipped in transit, or damaged in the leader's
// file) is refused through the core, which tells the leader to make a new snapshot; this
// member goes on as it was. A file that cannot be written or read is left to the install, which
// stops the member as before. One check at a time, and no snapshot chunk reaches the core
// meanwhile (on_peer_message holds them), so the file checked is exactly what the core would
// install: the chunks it took before (their writes were queued on the disk thread before this
// one) and this last one.
void Engine::Impl::check_received_snapshot(raft::Message m) {
  snapshot_check_running_ = true;
  auto msg = std::make_shared<raft::Message>(std::move(m));
  disk_->post([this, msg] {
    const std::vector<raft::SnapshotChunk> last = {
        {msg->snapshot, msg->snapshot_size, msg->snapshot_offset, msg->chunk}};
    const Status written = write_snapshot_chunks(last);
    scan_->post([this, msg, written] {
      std::string problem;
      if (written.ok()) {
        Result<storage::VerifyReport> rep = storage::verify_snapshot(incoming_snapshot_path_);
        if (rep.ok() && rep->problem != storage::SnapshotProblem::kNone) problem = rep->message;
      }
      post_loop([this, msg, problem] {
        snapshot_check_running_ = false;
        if (stopped_) return;
        if (!problem.empty()) {
          metrics_->snapshots_refused.inc();
          spdlog::error(
              "refusing a damaged snapshot from the leader leader={} index={} bytes={} "
              "problem={}; the leader makes a new one",
              hex(msg->from), msg->snapshot.index, msg->snapshot_size, problem);
          msg->snapshot_damaged = true;
        }
        step_peer_message(*msg);
        // The chunks that arrived meanwhile, in order (one may start the next check, which
        // holds the rest again).
        std::deque<raft::Message> held = std::move(held_snapshot_chunks_);
        held_snapshot_chunks_.clear();
        for (raft::Message& h : held) on_peer_message(std::move(h));
        process_ready();
      });
    });
  });
}

// A received snapshot: the chunks are written, the state is staged from the file (disk
// thread), made live (loop thread, once no flush runs), and only then does the WAL record the
// snapshot marker and the Ready's entries, so a crash never leaves the WAL ahead of the state.
void Engine::Impl::install_then_persist(std::shared_ptr<PersistJob> job) {
  install_started_ = std::chrono::steady_clock::now();
  disk_->post([this, job] {
    Status s = write_snapshot_chunks(job->rd.snapshot_chunks);
    std::string adopted;
    if (s.ok()) {
      // Kept under its canonical name: this member may have to send it on as leader.
      Result<storage::SnapshotInfo> info =
          storage::adopt_snapshot(incoming_snapshot_path_, data_dir_->snap_dir());
      if (info.ok()) {
        adopted = info->path;
        s = storage::prune_snapshots(data_dir_->snap_dir(),
                                     std::max<std::size_t>(options_.snapshots_kept, 1));
      } else {
        s = info.status();
      }
    }
    if (s.ok()) {
      Result<storage::StagedInstall> staged = state_->stage_install(adopted);
      if (staged.ok()) {
        job->staged = std::move(*staged);
      } else {
        s = staged.status();
      }
    }
    job->status = s;
    post_loop([this, job, adopted] {
      if (!job->status.ok()) {
        persisting_ = false;  // the job is over: shutdown must not wait for it
        fatal(job->status.with_context("installing a snapshot from the leader"));
        return;
      }
      snapshot_files_[job->rd.snapshot->index] = adopted;
      install_waiting_ = job;
      resume_install();
    });
  });
}

void Engine::Impl::on_persisted(std::shared_ptr<PersistJob> job) {
  if (stopped_) return;
  if (!job->status.ok()) {
    persisting_ = false;  // the job is over: shutdown must not wait for it
    fatal(job->status.with_context("writing the log"));
    return;
  }
  if (job->rd.hard_state && job->sync) synced_hard_state_ = *job->rd.hard_state;
  if (job->sync && (!job->rd.entries.empty() || job->rd.snapshot)) {
    // The log now durably holds every committed entry up to here; the state records it with
    // its next flush, so a start notices a log that lost them (consistency.h).
    const std::uint64_t synced =
        job->rd.entries.empty() ? job->rd.snapshot->index : job->rd.entries.back().index;
    state_->note_log_durable(std::min(synced, node_->commit()));
  }
  persisting_ = false;
  complete_ready(job->rd);
  process_ready();
}

void Engine::Impl::complete_ready(const raft::Ready& rd) {
  for (const raft::Message& m : rd.messages_after_persist) send_message(m);
  node_->advance(rd);
  if (rd.snapshot || rd.repair) note_repair_progress();
  if (!rd.committed.empty()) apply_committed(rd.committed);
  note_read_states(rd.read_states);
  serve_reads();
  if (!ready_.load() && !damaged_ && node_->leader() != raft::kNoNode &&
      state_->applied_index() >= ready_at_commit_) {
    ready_.store(true);
  }
}

void Engine::Impl::send_message(raft::Message m) {
  if (m.type == raft::MessageType::kSnapshot) {
    if (Status s = fill_snapshot_chunk(m); !s.ok()) {
      spdlog::warn("cannot send snapshot chunk peer={} error={}", hex(m.to), s.message());
      node_->report_snapshot(m.to, false);
      // The file is gone (or this member's snapshot came from an install): make a new one,
      // which replaces the one the core offers.
      if (s.code() == Code::kNotFound) make_snapshot_for_followers();
      return;
    }
    if (m.snapshot_offset + m.chunk.size() >= m.snapshot_size) metrics_->snapshots_sent.inc();
  }
  if (m.type == raft::MessageType::kHeartbeat) heartbeat_sent_.try_emplace(m.to, now_ms());
  peers_->send(m);
}

void Engine::Impl::on_soft_state(const raft::SoftState& ss) {
  if (ss.leader == last_leader_) return;
  last_leader_ = ss.leader;
  metrics_->leader_changes.inc();
  heartbeat_sent_.clear();
  snapshot_chunks_.end_all();  // transfers of a former term are over
  LeaderInfo info;
  info.id = ss.leader;
  info.term = ss.term;
  if (const storage::Member* m = member(ss.leader)) {
    info.name = m->name;
    info.client_addr = m->client_addr;
  }
  if (ss.leader == raft::kNoNode) {
    spdlog::info("no leader term={}", ss.term);
    ready_.store(false);
  } else {
    spdlog::info("leader changed leader={} name={} term={} role={}", hex(ss.leader), info.name,
                 ss.term, raft::role_name(ss.role));
    ready_at_commit_ = node_->commit();
  }
  std::vector<std::function<void(const LeaderInfo&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader_info_ = info;
    callbacks = leader_callbacks_;
  }
  for (auto& cb : callbacks) cb(info);
  notify_leader_watchers();
  settle_transfers();
}

// ---------------------------------------------------------------------------------------------
// Flushing the state and snapshots

void Engine::Impl::on_flush_timer() {
  maybe_flush(false);
  maybe_map_in();
  maybe_trim_heap();
  metrics_->flush_ticks.inc();  // after this tick's decisions: tests wait on it
}

void Engine::Impl::retire_flushed() {
  const std::uint64_t held = state_->unflushed_bytes();
  state_->retire_frozen();
  const std::uint64_t left = state_->unflushed_bytes();
  freed_since_trim_ += held - std::min(held, left);
  metrics_->state_unflushed_bytes.set(static_cast<double>(left));
}

void Engine::Impl::maybe_trim_heap() {
  // Not in a simulation (a job on the flush thread would move every seed's schedule), and only
  // once the writes have stopped: nothing applied is waiting for a flush.
  if (sim_ != nullptr || freed_since_trim_ < kTrimAfterBytes || flushing_ || stopping_ ||
      state_->unflushed_bytes() != 0) {
    return;
  }
  freed_since_trim_ = 0;
  flush_->post([this] {
    const std::uint64_t before = metrics::anonymous_memory_bytes().value_or(0);
#ifdef __GLIBC__
    ::malloc_trim(0);
#endif
    const std::uint64_t after = metrics::anonymous_memory_bytes().value_or(before);
    post_loop([this, released = before - std::min(before, after)] {
      metrics_->heap_trims.inc();
      metrics_->heap_trim_released.set(static_cast<double>(released));
      spdlog::debug("heap trimmed after the writes stopped released_bytes={}", released);
    });
  });
}

void Engine::Impl::maybe_map_in() {
  // Not in a simulation: it changes nothing a simulated run can observe (page tables), and its
  // jobs, timed by the real clock, would make a seed's schedule depend on it.
  if (sim_ != nullptr || mapping_in_ || stopping_ || stopped_ || install_waiting_ ||
      !state_->map_in_pending()) {
    return;
  }
  mapping_in_ = true;
  // Steps of 64 MiB for up to about 50 ms a job: a page-cached file maps in at several GB a
  // second; one that must be read from disk goes at the disk's pace, a step a tick.
  scan_->post([this] {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const std::uint64_t n = state_->map_in(64ull << 20);
      if (n == 0 || std::chrono::steady_clock::now() - start > kMapInJobTime) break;
    }
    post_loop([this] {
      mapping_in_ = false;
      metrics_->state_mapped_bytes.set(static_cast<double>(state_->mapped_in_bytes()));
      resume_install();
    });
  });
}

bool Engine::Impl::maybe_flush(bool force) {
  if (stopped_ || flushing_) return false;
  const std::uint64_t now = now_ms();
  if (!force && now - last_flush_ms_ < options_.flush_interval_ms) return false;
  if (!state_->freeze()) return false;
  last_flush_ms_ = now;
  flushing_ = true;
  const std::uint64_t index = state_->applied_index();
  const std::uint64_t term = state_->applied_term();
  raft::ConfState conf = current_membership().to_conf_state();
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "marker-before-flush") {
    // Broken on purpose (test builds only): the WAL records the flush (its snapshot marker, and
    // the release of the log below it) before LMDB has committed it.
    record_flush_in_wal(index, term, conf);
  }
#endif
  flush_->post([this, index, term, conf] {
    Status s = flush_state();
    post_loop([this, s, index, term, conf] {
      flushing_ = false;
      if (!s.ok()) {
        fatal(s.with_context("flushing the state"));
        return;
      }
      retire_flushed();
      after_flush(index, term, conf);
    });
  });
  return true;
}

// Flush thread: one flush of the frozen overlay into LMDB, and what it cost (metrics: its time,
// the bytes it made the kernel write, and the member's write amplification so far).
Status Engine::Impl::flush_state() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::optional<std::uint64_t> before = metrics::storage_bytes_written(true);
  Status s = state_->flush();
  if (!s.ok()) return s;
  metrics_->state_flush.observe_since(t0);
  const std::optional<std::uint64_t> after = metrics::storage_bytes_written(true);
  if (before && after && *after >= *before) {
    metrics_->state_flush_bytes.inc(*after - *before);
    static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    metrics_->state_flush_pages.inc((*after - *before) / page);
  }
  metrics_->state_flushed_index.set(static_cast<double>(state_->durable_index()));
  if (const std::optional<std::uint64_t> all = metrics::storage_bytes_written(false)) {
    const std::uint64_t since_start = *all - std::min(*all, storage_written_at_start_);
    metrics_->storage_bytes_written.set(static_cast<double>(since_start));
    const std::uint64_t applied = metrics_->entry_bytes_applied.value();
    if (applied > 0) {
      metrics_->write_amplification.set(static_cast<double>(since_start) /
                                        static_cast<double>(applied));
    }
  }
  return s;
}

void Engine::Impl::after_flush(std::uint64_t index, std::uint64_t term, raft::ConfState conf) {
  // The state durably holds `index`: the WAL may drop what lies below, and the Raft core may
  // forget entries older than what slow followers could still need.
  const std::uint64_t keep_from = record_flush_in_wal(index, term, conf);
  if (keep_from > 0) {
    const std::uint64_t compact_to = std::min(keep_from, node_->applied());
    if (compact_to > node_->log().snapshot_index()) {
      Status s = node_->compact(compact_to);
      if (!s.ok())
        spdlog::debug("raft compaction deferred index={} reason={}", compact_to, s.message());
    }
  }
  resume_install();
  if (snapshot_after_flush_ && !flushing_) {
    snapshot_after_flush_ = false;
    make_snapshot_for_followers();
  }
  if (shutdown_done_ && !flushing_) {
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    done();
  }
  // Applying may have stopped at a barrier waiting for this flush to finish.
  if (!apply_queue_.empty()) drain_apply();
}

// The WAL learns that the state durably holds `index`: a snapshot marker, then the release of
// the log below what slow followers may still need (returned). Only after the flush committed.
// The marker costs no fdatasync of its own: the next write's sync makes it durable (until then
// a restart replays a little more of the WAL, skipping what the state holds). Only when a
// segment can go does it sync first, since release_to needs a durable marker.
std::uint64_t Engine::Impl::record_flush_in_wal(std::uint64_t index, std::uint64_t term,
                                                const raft::ConfState& conf) {
  const std::uint64_t keep_from =
      index > options_.retained_entries ? index - options_.retained_entries : 0;
  disk_->post([this, index, term, conf, keep_from] {
    Status s = wal_->save_snapshot({index, term, conf});
    if (s.ok() && keep_from > 0 && wal_->can_release(keep_from + 1)) {
      s = wal_->sync();
      if (s.ok()) s = wal_->release_to(keep_from + 1);
    }
    if (!s.ok()) post_loop([this, s] { fatal(s.with_context("releasing the log")); });
  });
  return keep_from;
}

// A received snapshot waits until the flush thread is idle (commit_install needs it to be).
void Engine::Impl::resume_install() {
  // commit_install needs the state to itself: no flush, snapshot, hash or scrub on a worker.
  if (!install_waiting_ || state_in_use()) return;
  std::shared_ptr<PersistJob> job = std::move(install_waiting_);
  install_waiting_.reset();
  Status s = state_->commit_install(std::move(*job->staged), damaged_);
  if (!s.ok() && s.code() != Code::kFailedPrecondition) {
    persisting_ = false;  // the job is over: shutdown must not wait for it
    fatal(s.with_context("installing a snapshot"));
    return;
  }
  if (s.ok() && damaged_) {
    // A repair install: the core hands out every committed entry after the snapshot again
    // (raft/node.h, REPAIR), so what waited in the queue is dropped, never applied twice over.
    apply_queue_.clear();
  }
  if (!s.ok() && damaged_) {
    // Too old to replace the damaged state: ask again (the core will not end the repair).
    spdlog::warn("snapshot too old to repair the state index={} applied={}",
                 job->rd.snapshot->index, state_->applied_index());
    node_->mark_damaged(state_->applied_index());
  }
  spdlog::info("installed snapshot index={} term={}", job->rd.snapshot->index,
               job->rd.snapshot->term);
  metrics_->snapshots_installed.inc();
  metrics_->snapshot_install.observe_since(install_started_);
  disk_->post([this, job] {
    Status s3 = job->repair ? storage::save_repair_file(repair_path_, *job->repair) : Status();
    if (s3.ok()) s3 = wal_->save_snapshot(*job->rd.snapshot);
    if (s3.ok()) s3 = wal_->append(job->hard_state_to_write(), job->rd.entries);
    if (s3.ok()) s3 = wal_->sync();
    job->status = s3;
    post_loop([this, job] { on_persisted(job); });
  });
}

}  // namespace kvc::server
