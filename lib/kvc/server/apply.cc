// Applying committed entries to the state machine, in log order: normal commands, membership
// entries, barriers (kvc-ctl check hash), and answering the proposals that wait for them.
//
// Invariants kept here:
// - Entries are applied exactly once, in index order, and never while the member is damaged.
// - A proposal is answered only after its entry is applied, with the entry's result; a waiter
//   whose index was filled by another leader's entry is told so (outcome known: not applied).
// - A barrier is hashed at exactly its index: nothing after it is applied until its hash is
//   taken.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/common/text.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Applying committed entries

void Engine::Impl::apply_committed(const std::vector<raft::Entry>& entries) {
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "ack-before-apply") ack_before_apply(entries);
#endif
  for (const raft::Entry& e : entries) apply_queue_.push_back(e);
  drain_apply();
}

#ifdef KVC_MUTATIONS
// Broken on purpose (test builds only): writes are answered as soon as their entries commit,
// before they are applied, so their results are guessed (a cas or delete as if it succeeded).
void Engine::Impl::ack_before_apply(const std::vector<raft::Entry>& entries) {
  for (const raft::Entry& e : entries) {
    auto it = waiters_.find(e.index);
    if (it == waiters_.end() || it->second.term != e.term || !it->second.conf_data.empty()) {
      continue;
    }
    Result<storage::Command> cmd = storage::decode_command(e.data);
    if (!cmd.ok() || cmd->request_id != it->second.request_id) continue;
    wire::Response r = base_response(it->second.req.id);
    r.revision = e.index;
    r.found = true;
    r.count = 1;
    it->second.reply(std::move(r));
    waiters_.erase(it);
  }
}
#endif

namespace {
bool is_barrier(const raft::Entry& e) {
  return e.type == raft::EntryType::kNormal && e.data.size() >= 2 &&
         static_cast<std::uint8_t>(e.data[0]) == storage::kCommandVersion &&
         static_cast<std::uint8_t>(e.data[1]) ==
             static_cast<std::uint8_t>(storage::CommandOp::kBarrier);
}
}  // namespace

// Applies queued committed entries in order. A barrier (kvc-ctl check hash) must be hashed at
// exactly its index, which takes a flush of everything up to it: while another flush or the
// previous barrier's hash is still running, applying stops at the barrier, and after_flush() or
// finish_barrier_hash() resumes it.
void Engine::Impl::drain_apply() {
  // A damaged state applies nothing: the entries wait in the queue for the repair snapshot
  // (the ones it covers are then skipped, the rest applied on top of it).
  if (damaged_) return;
  const std::uint64_t before = state_->applied_index();
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t bytes = 0;
  while (!apply_queue_.empty() && !stopped_ && !damaged_) {
    const raft::Entry& e = apply_queue_.front();
    const bool barrier = is_barrier(e) && e.index > state_->applied_index();
    if (barrier && (flushing_ || pending_barrier_ != 0)) break;
    if (!apply_one(e)) return;
    if (barrier) take_barrier_hash(e.index);
    bytes += e.data.size();
    apply_queue_.pop_front();
  }
  if (state_->applied_index() == before) return;
  metrics_->apply.observe_since(t0);
  metrics_->entries_applied.inc(state_->applied_index() - before);
  metrics_->entry_bytes_applied.inc(bytes);
  node_->applied_to(state_->applied_index());
  metrics_->state_unflushed_bytes.set(static_cast<double>(state_->unflushed_bytes()));
  notify_watchers();
  if (state_->active_stats().bytes >= options_.flush_bytes) maybe_flush(true);
}

storage::Membership Engine::Impl::current_membership() const { return state_->membership(); }

void Engine::Impl::apply_conf_entry(const raft::Entry& e) {
  storage::Membership m = current_membership();
  Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
  // The same rule the Raft core uses on append, so the stored membership and the core's
  // configuration never disagree.
  Result<raft::ConfState> next = cc.ok() ? raft::apply_conf_change(m.to_conf_state(), *cc)
                                         : Result<raft::ConfState>(cc.status());
  if (!next.ok()) {
    spdlog::warn("conf change entry changes nothing index={} reason={}", e.index,
                 next.status().message());
    state_->apply_noop(e.index, e.term);
    return;
  }
  auto it = std::find_if(m.members.begin(), m.members.end(),
                         [&](const storage::Member& x) { return x.id == cc->node; });
  switch (cc->type) {
    case raft::ConfChangeType::kAddVoter:
    case raft::ConfChangeType::kAddLearner: {
      storage::Member nm;
      if (const storage::Member* known = member(cc->node)) nm = *known;
      nm.id = cc->node;
      nm.learner = cc->type == raft::ConfChangeType::kAddLearner;
      m.removed.erase(std::remove(m.removed.begin(), m.removed.end(), nm.id), m.removed.end());
      m.members.push_back(nm);
      std::sort(m.members.begin(), m.members.end(),
                [](const auto& a, const auto& b) { return a.id < b.id; });
      spdlog::info("member added id={} name={} peer={} learner={} index={}", hex(nm.id), nm.name,
                   nm.peer_addr, nm.learner, e.index);
      break;
    }
    case raft::ConfChangeType::kPromoteLearner:
      if (it != m.members.end()) it->learner = false;
      spdlog::info("member promoted to voter id={} index={}", hex(cc->node), e.index);
      break;
    case raft::ConfChangeType::kRemove:
      if (it != m.members.end()) m.members.erase(it);
      m.add_removed(cc->node);  // persisted with the membership: see update_peers()
      spdlog::info("member removed id={} index={}", hex(cc->node), e.index);
      if (cc->node != identity_.member_id) {
        learned_.erase(cc->node);
        if (peers_) peers_->mark_removed(cc->node);
      }
      break;
    case raft::ConfChangeType::kUpdate: {
      // The new addresses come from the entry itself, so every member stores the same.
      Result<storage::Membership> one = storage::decode_membership(cc->context);
      if (it == m.members.end() || !one.ok() || one->members.size() != 1 ||
          one->members.front().peer_addr.empty()) {
        spdlog::warn("member update entry changes nothing index={} id={}", e.index, hex(cc->node));
        state_->apply_noop(e.index, e.term);
        return;
      }
      const std::string old_addr = it->peer_addr;
      it->peer_addr = one->members.front().peer_addr;
      if (auto l = learned_.find(cc->node); l != learned_.end()) {
        l->second.peer_addr = it->peer_addr;
      }
      spdlog::info("member updated id={} name={} peer={} old_peer={} index={}", hex(cc->node),
                   it->name, it->peer_addr, old_addr, e.index);
      break;
    }
  }
  if (!storage::validate_membership(m).ok()) {
    spdlog::error("conf change would make an invalid membership index={}", e.index);
    state_->apply_noop(e.index, e.term);
    return;
  }
  state_->apply_membership(e.index, e.term, std::move(m));
  update_peers();
  if (cc->type == raft::ConfChangeType::kRemove && cc->node == identity_.member_id && !removed_) {
    removed_ = true;
    spdlog::warn("this member was removed from the cluster index={}; stopping", e.index);
    post_loop(
        [this] { fatal(Status::failed_precondition("this member was removed from the cluster")); });
  }
}

// Applies one committed entry; false after a fatal error.
bool Engine::Impl::apply_one(const raft::Entry& e) {
  if (e.index <= state_->applied_index()) return true;  // already in the state (replay)
  if (e.type == raft::EntryType::kConfChange) {
    apply_conf_entry(e);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
  if (e.data.empty()) {
    state_->apply_noop(e.index, e.term);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
  Result<storage::Command> cmd = storage::decode_command(e.data);
  if (!cmd.ok()) {
    // Every member fails the same way on the same bytes; stopping them all would make one bad
    // entry an outage, so it is skipped loudly.
    spdlog::error("skipping undecodable command index={} error={}", e.index,
                  cmd.status().message());
    state_->apply_noop(e.index, e.term);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "diverge-apply" && cmd->op == storage::CommandOp::kPut &&
      cmd->key.rfind("/diverge", 0) == 0) {
    // Broken on purpose (test builds only): this member's state silently differs.
    cmd->value += "-diverged";
  }
  if (options_.test_mutation == "diverge-every-put" && cmd->op == storage::CommandOp::kPut) {
    cmd->value += "-diverged";  // the same, for every put (the simulator plants it in one member)
  }
#endif
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "skip-wal-replay" && e.index <= replay_to_) {
    // Broken on purpose (test builds only): the WAL's committed tail after the flushed state
    // is not replayed after a restart; the entries only move the applied index.
    state_->apply_noop(e.index, e.term);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
#endif
  Result<storage::ApplyResult> r = state_->apply(e.index, e.term, *cmd);
  if (!r.ok()) {
    // Nothing was applied: the entry stays queued until the state is repaired (or, for an
    // I/O error, the member stops).
    if (!damage(r.status(), "applying entry " + std::to_string(e.index))) {
      fatal(r.status().with_context("applying entry " + std::to_string(e.index)));
    }
    return false;
  }
  if (cmd->op == storage::CommandOp::kHashVerdict)
    apply_hash_verdict(cmd->expect_revision, cmd->hash);
  finish_waiter(e.index, e, *cmd, &*r);
  return true;
}

// Freezes the state exactly at a barrier's index and flushes it; the flush thread then pins a
// read of LMDB at that index, and the scan thread hashes it while later flushes go on (the owning
// thread never blocks on a whole-state scan, and the applied overlay never waits for one).
void Engine::Impl::take_barrier_hash(std::uint64_t index) {
  KVC_CHECK(!flushing_, "a barrier hash needs the flush after the barrier");
  KVC_CHECK_EQ(pending_barrier_, 0u);
  KVC_CHECK_EQ(state_->applied_index(), index);
  const bool frozen = state_->freeze();
  KVC_CHECK(frozen, "the barrier was just applied, so there is something to freeze");
  flushing_ = true;
  pending_barrier_ = index;
  last_flush_ms_ = now_ms();
  const std::uint64_t term = state_->applied_term();
  const raft::ConfState conf = current_membership().to_conf_state();
  flush_->post([this, index, term, conf] {
    Status s = flush_state();
    Result<std::shared_ptr<storage::StateMachine::DurableRead>> pin =
        s.ok() ? state_->pin_durable()
               : Result<std::shared_ptr<storage::StateMachine::DurableRead>>(s);
    post_loop([this, s, pin, index, term, conf] {
      flushing_ = false;
      if (!s.ok()) {
        pending_barrier_ = 0;
        fatal(s.with_context("flushing the state"));
        return;
      }
      retire_flushed();
      if (!pin.ok()) {
        finish_barrier_hash(index, pin.status());
      } else {
        std::shared_ptr<storage::StateMachine::DurableRead> read = *pin;
        scan_->post([this, read, index]() mutable {
          const auto t0 = std::chrono::steady_clock::now();
          Result<storage::StateMachine::IndexedHash> h = read->hash(&cancel_scans_);
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          read.reset();  // the read transaction ends before the loop hears of it
          post_loop([this, h, index, ms] { finish_barrier_hash(index, h, ms); });
        });
      }
      after_flush(index, term, conf);
    });
  });
}

// Loop: the barrier's hash is taken (or failed); answers kvc-ctl check hash and lets applying
// go past the next barrier.
void Engine::Impl::finish_barrier_hash(std::uint64_t index,
                                       const Result<storage::StateMachine::IndexedHash>& h,
                                       double scan_ms) {
  KVC_CHECK_EQ(pending_barrier_, index);
  pending_barrier_ = 0;
  std::uint64_t hash = 0;
  Status hs = h.ok() ? Status() : h.status();
  if (h.ok() && h->index != index) {
    hs = Status::internal("hashed index " + std::to_string(h->index) + " instead of " +
                          std::to_string(index));
  }
  if (hs.ok()) {
    hash = h->hash;
    barrier_hashes_[index] = hash;
    while (barrier_hashes_.size() > 32) barrier_hashes_.erase(barrier_hashes_.begin());
    spdlog::info("state hash at barrier index={} hash={:016x} scan_ms={:.0f}", index, hash,
                 scan_ms);
  } else if (damage(hs, "hashing the state at index " + std::to_string(index))) {
    hs = Status::unavailable(damaged_message());
  } else if (hs.code() == Code::kShuttingDown) {
    spdlog::info("state hash at barrier cancelled index={} reason={}", index, hs.message());
  } else {
    spdlog::error("state hash at barrier failed index={} error={}", index, hs.message());
  }
  auto waiting = hash_waiters_.find(index);
  if (waiting != hash_waiters_.end()) {
    for (PendingRead& pr : waiting->second) {
      wire::Response r = base_response(pr.req.id);
      r.revision = index;
      r.hash = hash;
      if (!hs.ok()) set_error(r, hs);
      pr.reply(std::move(r));
    }
    hash_waiters_.erase(waiting);
  }
  resume_install();
  // Applying may have stopped at the next barrier, waiting for this one's hash.
  if (!apply_queue_.empty()) drain_apply();
}

void Engine::Impl::finish_waiter(std::uint64_t index, const raft::Entry& e,
                                 const std::optional<storage::Command>& cmd,
                                 const storage::ApplyResult* result) {
  auto it = waiters_.find(index);
  if (it == waiters_.end()) return;
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  wire::Response r = base_response(w.req.id);
  const bool ours =
      e.term == w.term &&
      (w.conf_data.empty() ? cmd && cmd->request_id == w.request_id : e.data == w.conf_data);
  if (ours) metrics_->proposals_committed.inc();
  if (!ours) {
    // Another entry took this index: ours was dropped by a leader change, never applied.
    metrics_->proposals_dropped.inc();
    r.code = Code::kUnavailable;
    r.message = "leadership changed before the request committed; it was not applied";
    w.reply(std::move(r));
    return;
  }
  if (!w.conf_data.empty()) {
    // A membership change: answer with the membership it produced.
    const storage::Membership m = current_membership();
    for (const storage::Member& mem : m.members) {
      const storage::Member* known = member(mem.id);
      r.members.push_back({mem.id, mem.name, mem.peer_addr,
                           known != nullptr ? known->client_addr : mem.client_addr, mem.learner,
                           mem.id == node_->leader()});
    }
    r.revision = e.index;
    // kvc-ctl member add prints the new member's command line, which needs the token.
    if (w.req.op == wire::Op::kMemberAdd) r.data = options_.cluster_token;
    w.reply(std::move(r));
    return;
  }
  if (w.req.op == wire::Op::kHash) {
    // The barrier is applied; the hash arrives once it is flushed (take_barrier_hash).
    hash_waiters_[index].push_back({std::move(w.req), std::move(w.reply), w.deadline});
    return;
  }
  fill_write_result(r, w.req, *result);
  w.reply(std::move(r));
}

// Long (about 85 lines): one case per write operation, each short.
void Engine::Impl::fill_write_result(wire::Response& r, const wire::Request& req,
                                     const storage::ApplyResult& result) {
  r.revision = std::max(state_->revision(), result.revision);
  // A cas with a lease and a delete with an expected revision were proposed as txns
  // (write_command): their else branch's get tells the key's current revision.
  const bool guarded = req.op != wire::Op::kTxn && result.code == Code::kOk &&
                       (result.succeeded || !result.ops.empty());
  auto current_revision = [&]() -> std::uint64_t {
    if (result.ops.empty() || result.ops[0].kvs.empty()) return 0;
    return result.ops[0].kvs[0].mod_revision;
  };
  auto compare_failed = [&](std::uint64_t current) {
    r.code = Code::kCompareFailed;
    r.revision = current;
    r.message = "the key's mod revision is " + std::to_string(current) + ", not " +
                std::to_string(req.expect_revision);
  };
  switch (req.op) {
    case wire::Op::kPut:
      r.revision = result.revision;
      break;
    case wire::Op::kDelete:
      if (guarded && !result.succeeded) {
        compare_failed(current_revision());
        break;
      }
      r.count = guarded ? result.ops[0].deleted : result.deleted;
      r.found = r.count > 0;
      break;
    case wire::Op::kCas:
      if (result.code == Code::kCompareFailed) {
        compare_failed(result.revision);
      } else if (guarded && !result.succeeded) {
        compare_failed(current_revision());
      } else if (result.code == Code::kOk) {
        r.revision = result.revision;
        r.found = true;
      }
      break;
    case wire::Op::kLeaseGrant:
      if (result.code == Code::kAlreadyExists) {
        r.code = Code::kAlreadyExists;
        r.message = "lease " + id_hex(req.lease) + " exists already";
        break;
      }
      if (result.code != Code::kOk) break;
      // The id and ttl the leader picked (propose_write put them into the waiting request).
      r.lease = req.lease;
      r.ttl = req.ttl;
      break;
    case wire::Op::kLeaseRevoke:
      r.count = result.deleted;
      break;
    case wire::Op::kTxn:
      r.succeeded = result.succeeded;
      r.revision = result.revision != 0 ? result.revision : r.revision;
      r.txn_results.reserve(result.ops.size());
      for (const storage::TxnOpResult& op : result.ops) {
        wire::TxnResult t;
        t.type = op.type;
        t.revision = op.revision;
        t.deleted = op.deleted;
        t.more = op.more;
        t.kvs.reserve(op.kvs.size());
        for (const storage::KeyValue& kv : op.kvs) t.kvs.push_back(to_wire(kv, false));
        r.txn_results.push_back(std::move(t));
      }
      break;
    default:
      break;
  }
  if (result.code == Code::kNotFound && req.op != wire::Op::kDelete) {
    r.code = Code::kNotFound;
    const std::uint64_t lease = req.op == wire::Op::kTxn ? 0 : req.lease;  // a txn may name several
    r.message = lease != 0 ? "lease " + id_hex(lease) + " not found (expired or revoked)"
                           : "a lease the txn names was not found (expired or revoked)";
  }
  if (result.code == Code::kInvalidArgument) {
    r.code = Code::kInvalidArgument;
    r.message = "the state machine refused the command (key or value too large, or a bad txn)";
  }
}

void Engine::Impl::fatal(const Status& s) {
  if (!failed_) spdlog::critical("stopping: {}", s.to_string());
  failed_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.ok()) failure_ = s;
  }
  begin_shutdown();
}

}  // namespace kvc::server
