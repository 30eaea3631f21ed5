// The key-value service: dispatch of client requests (the one table of operations), writes
// proposed through Raft, ReadIndex batching for linearizable reads, serializable reads,
// deadlines.
//
// Invariants kept here:
// - A write is answered only after it is applied (apply.cc answers the waiter); a write whose
//   outcome cannot be known (leader change after proposing) is answered as such, never retried.
// - A linearizable read is served only once applied >= the read index its batch got from the
//   leader, and never while the member is damaged.
// - Every request gets one reply before its deadline (sweep_deadlines answers the rest).
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "kvc/client/client.h"
#include "kvc/common/version.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Requests

wire::Response Engine::Impl::base_response(std::uint64_t req_id) const {
  wire::Response r;
  r.id = req_id;
  r.member_id = identity_.member_id;
  r.revision = state_->revision();
  fill_leader(r);
  return r;
}

void Engine::Impl::fill_leader(wire::Response& r) const {
  r.leader_id = node_->leader();
  if (r.leader_id == raft::kNoNode) return;
  if (const storage::Member* m = member(r.leader_id)) {
    r.leader_name = m->name;
    r.leader_client_addr = m->client_addr;
  }
}

std::uint64_t Engine::Impl::deadline_for(const wire::Request& req) const {
  const std::uint64_t t = req.timeout_ms != 0 ? req.timeout_ms : options_.request_timeout_ms;
  return now_ms() + t;
}

// The one table of client operations: which handler answers each. An operation missing here
// is refused as not supported (watch cancel, leader watches and snapshot saves belong to a
// client connection: client_sessions.cc).
void Engine::Impl::handle_request(wire::Request req, Reply reply) {
  using Handler = void (Engine::Impl::*)(wire::Request, Reply);
  static const std::map<wire::Op, Handler> kHandlers = {
      {wire::Op::kGet, &Impl::handle_read},
      {wire::Op::kRange, &Impl::handle_read},
      {wire::Op::kHealth, &Impl::handle_read},
      {wire::Op::kPut, &Impl::propose_write},
      {wire::Op::kDelete, &Impl::propose_write},
      {wire::Op::kCas, &Impl::propose_write},
      {wire::Op::kTxn, &Impl::propose_write},
      {wire::Op::kLeaseGrant, &Impl::propose_write},
      {wire::Op::kLeaseRevoke, &Impl::propose_write},
      {wire::Op::kLeaseKeepAlive, &Impl::handle_lease_read},
      {wire::Op::kLeaseTtl, &Impl::handle_lease_read},
      {wire::Op::kLeaseList, &Impl::handle_lease_read},
      {wire::Op::kWatch, &Impl::handle_watch},
      {wire::Op::kLeader, &Impl::answer_leader},
      {wire::Op::kStatus, &Impl::answer_status},
      {wire::Op::kMemberList, &Impl::answer_member_list},
      {wire::Op::kMemberAdd, &Impl::member_change},
      {wire::Op::kMemberPromote, &Impl::member_change},
      {wire::Op::kMemberRemove, &Impl::member_change},
      {wire::Op::kMemberUpdate, &Impl::member_change},
      {wire::Op::kTransferLeader, &Impl::transfer_leader},
      {wire::Op::kHash, &Impl::handle_hash},
  };
  wire::Response r = base_response(req.id);
  if (stopping_) {
    r.code = Code::kShuttingDown;
    r.message = "member " + identity_.name + " is shutting down";
    reply(std::move(r));
    return;
  }
  auto it = kHandlers.find(req.op);
  if (it == kHandlers.end()) {
    r.code = Code::kInvalidArgument;
    r.message = "operation '" + std::string(wire::op_name(req.op)) +
                "' is not supported on this connection";
    reply(std::move(r));
    return;
  }
  (this->*(it->second))(std::move(req), std::move(reply));
}

// Linearizable reads (and health checks) go through a ReadIndex batch; serializable reads are
// answered from this member's applied state.
void Engine::Impl::handle_read(wire::Request req, Reply reply) {
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "local-reads" && req.op != wire::Op::kHealth) {
    // Broken on purpose (test builds only): no ReadIndex round, so a deposed leader answers
    // from its stale state.
    serve_read(req, reply);
    return;
  }
#endif
  if (req.serializable && req.op != wire::Op::kHealth) {
    serve_read(req, reply);
  } else {
    queue_read(std::move(req), std::move(reply));
  }
}

void Engine::Impl::handle_watch(wire::Request req, Reply reply) {
  Watcher w;
  w.id = req.id;
  w.key = req.key;
  w.prefix = req.prefix;
  w.next_revision = req.start_revision;
  w.prev_kv = req.prev_kv;
  add_watcher(std::move(w), reply);
}

void Engine::Impl::answer_leader(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  if (r.leader_id == raft::kNoNode) {
    r.code = Code::kUnavailable;
    r.message = "no leader known to member " + identity_.name;
  }
  reply(std::move(r));
}

void Engine::Impl::answer_status(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  fill_status(r);
  reply(std::move(r));
}

void Engine::Impl::fill_status(wire::Response& r) const {
  r.has_status = true;
  wire::StatusInfo& s = r.status;
  s.member_id = identity_.member_id;
  s.name = identity_.name;
  s.version = kvc::version();
  s.cluster_id = identity_.cluster_id;
  s.leader_id = node_->leader();
  s.term = node_->term();
  s.commit_index = node_->commit();
  s.applied_index = state_->applied_index();
  s.durable_index = state_->durable_index();
  s.learner = raft::is_learner(node_->conf_state(), identity_.member_id);
  s.role = s.learner ? "learner" : std::string(raft::role_name(node_->role()));
  // What the log holds, not the size its preallocated segment files take (bytes_used() is the
  // one Wal call safe off the disk thread).
  s.wal_bytes = wal_->bytes_used();
  std::uint64_t state_bytes = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(data_dir_->state_dir(), ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) state_bytes += it->file_size(ec);
  }
  s.state_bytes = state_bytes;
  if (node_->leader() == raft::kNoNode) s.errors.push_back("no leader");
  const raft::RepairState& repair = node_->repair();
  s.damaged = damaged_;
  s.repairing = repair.active();
  if (damaged_) {
    s.repair_reason = damage_reason_;
    s.errors.push_back("state damaged (" + damage_reason_ +
                       "): serving no reads, not voting, repairing from the leader");
  }
  if (repair.log_to != 0) {
    const std::string lost =
        "lost log entries it had acknowledged (up to index " + std::to_string(repair.log_to) + ")";
    s.repair_reason += (s.repair_reason.empty() ? "" : "; ") + lost;
    s.errors.push_back(lost + ": not voting until the leader has repaired its log");
  }
  s.scrub_passes = scrub_passes_;
  s.scrub_records = scrub_records_;
  s.scrub_damaged = scrub_damaged_;
  s.hash_check_index = hash_check_index_;
  s.hash_check_result = hash_check_result_;
  s.lost_entries_detected = node_->lost_entries_detected();
  if (node_->role() == raft::Role::kLeader) {
    for (const raft::PeerProgress& p : node_->progress()) {
      if (p.id == identity_.member_id) continue;
      const storage::Member* m = member(p.id);
      const std::string who = "member " + (m != nullptr ? m->name : hex(p.id));
      if (!p.recent_active) s.errors.push_back(who + " is not responding");
      if (p.repairing) s.errors.push_back(who + " is being repaired (it does not count)");
    }
  }
}

void Engine::Impl::propose_write(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  // A damaged leader hands leadership over (raft mark_damaged); until then nothing it applies
  // is sound.
  if (node_->role() == raft::Role::kLeader && refuse_if_damaged(r, reply)) return;
  if (node_->role() != raft::Role::kLeader) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = r.leader_id == raft::kNoNode
                    ? "no leader: the cluster is electing one or has no quorum"
                    : "member " + identity_.name + " is not the leader";
    reply(std::move(r));
    return;
  }
  Result<storage::Command> cmd = write_command(req);
  if (!cmd.ok()) {
    set_error(r, cmd.status());
    reply(std::move(r));
    return;
  }
  if (req.op == wire::Op::kLeaseGrant) {  // the answer names what the leader picked
    req.lease = cmd->lease;
    req.ttl = cmd->ttl;
  }
  const std::uint64_t term = node_->term();
  Result<std::uint64_t> index = node_->propose(storage::encode_command(*cmd));
  if (!index.ok()) {
    set_error(r, index.status());
    if (r.code == Code::kResourceExhausted) r.message = "member is overloaded: " + r.message;
    reply(std::move(r));
    return;
  }
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "ack-before-commit") {
    // Broken on purpose (test builds only): the write is acknowledged before it commits.
    r.revision = *index;
    r.found = true;
    reply(std::move(r));
    return;
  }
#endif
  const std::uint64_t deadline = deadline_for(req);
  waiters_[*index] = Waiter{cmd->request_id, term, std::move(req), std::move(reply), deadline};
}

namespace {

// The bytes of a txn that count against --max-request-bytes: every key and value it names.
std::uint64_t txn_bytes(const wire::Request& req) {
  std::uint64_t n = 0;
  for (const Compare& c : req.compares) n += c.key.size() + c.value.size();
  for (const auto* ops : {&req.then_ops, &req.else_ops}) {
    for (const TxnOp& op : *ops) n += op.key.size() + op.value.size();
  }
  return n;
}

Status check_key(const std::string& key, bool may_be_empty) {
  if (key.empty() && !may_be_empty) return Status::invalid_argument("empty key");
  if (key.size() > storage::kMaxKeyBytes) {
    return Status::invalid_argument("key of " + std::to_string(key.size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(storage::kMaxKeyBytes));
  }
  return Status();
}

}  // namespace

// Long (about 90 lines): one case per write operation, each short.
Result<storage::Command> Engine::Impl::write_command(const wire::Request& req) {
  storage::Command cmd;
  cmd.request_id = ++request_seq_;
  const bool keyed =
      req.op == wire::Op::kPut || req.op == wire::Op::kCas || req.op == wire::Op::kDelete;
  if (keyed) {
    KVC_RETURN_IF_ERROR(check_key(req.key, req.op == wire::Op::kDelete && req.prefix));
  }
  const std::uint64_t bytes =
      req.op == wire::Op::kTxn ? txn_bytes(req) : req.key.size() + req.value.size();
  if (bytes > options_.max_request_bytes) {
    return Status::invalid_argument("request of " + std::to_string(bytes) +
                                    " bytes exceeds --max-request-bytes " +
                                    std::to_string(options_.max_request_bytes));
  }
  // The forms that need a compare (a cas or delete with a lease or an expected revision) are
  // txns: if the revision matches, the write; else a get, whose result tells the current
  // revision.
  auto guarded = [&](TxnOp then_op) {
    cmd.op = storage::CommandOp::kTxn;
    cmd.compares.push_back({.target = CompareTarget::kModRevision,
                            .op = CompareOp::kEqual,
                            .key = req.key,
                            .number = req.expect_revision});
    cmd.then_ops.push_back(std::move(then_op));
    cmd.else_ops.push_back({.type = TxnOpType::kGet, .key = req.key});
  };
  cmd.key = req.key;
  switch (req.op) {
    case wire::Op::kPut:
      cmd.op = req.lease != 0 ? storage::CommandOp::kPutLease : storage::CommandOp::kPut;
      cmd.value = req.value;
      cmd.lease = req.lease;
      break;
    case wire::Op::kDelete:
      if (req.prefix && req.expect_revision != 0) {
        return Status::invalid_argument("a delete by prefix takes no expected revision");
      }
      if (req.expect_revision != 0) {
        guarded({.type = TxnOpType::kDelete, .key = req.key});
        cmd.key.clear();
      } else {
        cmd.op = req.prefix ? storage::CommandOp::kDeletePrefix : storage::CommandOp::kDelete;
      }
      break;
    case wire::Op::kCas:
      if (req.lease != 0) {
        guarded({.type = TxnOpType::kPut, .key = req.key, .value = req.value, .lease = req.lease});
        cmd.key.clear();
      } else {
        cmd.op = storage::CommandOp::kCas;
        cmd.value = req.value;
        cmd.expect_revision = req.expect_revision;
      }
      break;
    case wire::Op::kLeaseGrant: {
      if (req.ttl == 0) return Status::invalid_argument("a lease needs a ttl of at least 1 second");
      cmd.op = storage::CommandOp::kLeaseGrant;
      cmd.key.clear();
      cmd.ttl = std::max(req.ttl, min_lease_ttl_s());
      cmd.lease = req.lease;
      // An id the leader picks: random, so a retried grant never reuses a revoked lease's id;
      // below 2^63 so that tools that read ids as signed numbers (etcd's) agree.
      while (cmd.lease == 0) cmd.lease = rng_.next_u64() >> 1;
      break;
    }
    case wire::Op::kLeaseRevoke:
      if (req.lease == 0) return Status::invalid_argument("no lease id");
      cmd.op = storage::CommandOp::kLeaseRevoke;
      cmd.key.clear();
      cmd.lease = req.lease;
      break;
    case wire::Op::kTxn: {
      cmd.op = storage::CommandOp::kTxn;
      cmd.key.clear();
      cmd.compares = req.compares;
      cmd.then_ops = req.then_ops;
      cmd.else_ops = req.else_ops;
      const std::size_t most =
          std::max({cmd.compares.size(), cmd.then_ops.size(), cmd.else_ops.size()});
      if (most > options_.max_txn_ops) {
        return Status::invalid_argument("txn of " + std::to_string(most) +
                                        " ops (or compares) in one list exceeds --max-txn-ops " +
                                        std::to_string(options_.max_txn_ops));
      }
      for (const Compare& c : cmd.compares) KVC_RETURN_IF_ERROR(check_key(c.key, false));
      for (const auto* ops : {&cmd.then_ops, &cmd.else_ops}) {
        for (const TxnOp& op : *ops) {
          const bool prefix =
              op.type == TxnOpType::kDeletePrefix || op.type == TxnOpType::kGetPrefix;
          KVC_RETURN_IF_ERROR(check_key(op.key, prefix));
        }
      }
      KVC_RETURN_IF_ERROR(storage::validate_txn(cmd));
      break;
    }
    default:
      KVC_CHECK(false, "not a write");
  }
  return cmd;
}

void Engine::Impl::queue_read(wire::Request req, Reply reply) {
  const std::uint64_t deadline = deadline_for(req);
  unsent_reads_.push_back({std::move(req), std::move(reply), deadline});
}

void Engine::Impl::start_read_batch() {
  ReadBatch b;
  b.context = "r" + std::to_string(++read_seq_);
  b.started = now_ms();
  b.reads = std::move(unsent_reads_);
  unsent_reads_.clear();
  unsent_reads_.swap(spare_reads_);  // a served batch's storage: no regrowth from empty
  Status s = node_->read_index(b.context);
  if (!s.ok()) {
    for (PendingRead& pr : b.reads) {
      wire::Response r = base_response(pr.req.id);
      r.code = Code::kUnavailable;
      r.message = "no leader to confirm a linearizable read (" + s.message() +
                  "); --serializable reads this member's state";
      pr.reply(std::move(r));
    }
    return;
  }
  read_batches_.push_back(std::move(b));
}

void Engine::Impl::serve_reads() {
  std::uint64_t applied = state_->applied_index();
#ifdef KVC_MUTATIONS
  // Broken on purpose (test builds only): reads do not wait for the state to reach their index.
  if (options_.test_mutation == "read-before-applied") applied = UINT64_MAX;
#endif
  while (!read_batches_.empty() && read_batches_.front().index != 0 &&
         read_batches_.front().index <= applied) {
    ReadBatch b = std::move(read_batches_.front());
    read_batches_.pop_front();
    for (PendingRead& pr : b.reads) serve_read(pr.req, pr.reply);
    b.reads.clear();
    if (b.reads.capacity() > spare_reads_.capacity() && b.reads.capacity() <= kSpareReadsMax) {
      spare_reads_ = std::move(b.reads);
    }
  }
}

void Engine::Impl::serve_read(const wire::Request& req, const Reply& reply) {
  wire::Response r = base_response(req.id);
  // Nothing this member holds can be vouched for until the leader's snapshot replaces it.
  if (refuse_if_damaged(r, reply)) return;
  // A read that meets damage is not answered from this member (the client tries another);
  // other storage errors stop the member.
  auto failed = [&](const Status& s, const std::string& what) {
    if (damage(s, what)) {
      r.code = Code::kUnavailable;
      r.message = damaged_message();
    } else {
      fatal(s.with_context(what));
      set_error(r, s);
    }
  };
  switch (req.op) {
    case wire::Op::kHealth:
      break;
    case wire::Op::kGet: {
      Result<std::optional<storage::KeyValue>> kv = state_->get(req.key);
      if (!kv.ok()) {
        failed(kv.status(), "reading the state");
        break;
      }
      if (*kv) {
        r.found = true;
        r.kvs.push_back(to_wire(**kv, req.keys_only));
      }
      break;
    }
    case wire::Op::kRange: {
      constexpr std::size_t kMaxPage = 10000;
      storage::RangeRequest q;
      q.prefix = req.value;
      q.start = req.key.empty() ? req.value : req.key;
      q.keys_only = req.keys_only || req.count_only;
      q.limit = req.count_only   ? 0
                : req.limit == 0 ? kMaxPage
                                 : std::min<std::uint64_t>(req.limit, kMaxPage);
      Result<storage::RangePage> page = state_->range(q);
      if (!page.ok()) {
        failed(page.status(), "listing the state");
        break;
      }
      r.more = page->more;
      r.count = page->kvs.size();
      if (!req.count_only) {
        r.kvs.reserve(page->kvs.size());
        for (const storage::KeyValue& kv : page->kvs) r.kvs.push_back(to_wire(kv, req.keys_only));
      }
      break;
    }
    case wire::Op::kLeaseKeepAlive:
    case wire::Op::kLeaseTtl:
    case wire::Op::kLeaseList:
      serve_lease(req, r);
      break;
    default:
      r.code = Code::kInvalidArgument;
      r.message = "not a read";
  }
  reply(std::move(r));
}

void Engine::Impl::sweep_deadlines() {
  const std::uint64_t now = now_ms();
  std::vector<std::shared_ptr<net::Connection>> linger_over;
  for (const auto& [key, r] : refused_) {
    if (r.second <= now) linger_over.push_back(r.first);
  }
  for (auto& c : linger_over) c->close(Status::resource_exhausted("refused connection"));
  // Slow-loris: a client connection still in its handshake past the deadline goes (a refused
  // one is being flushed and closes by itself).
  std::vector<std::shared_ptr<net::Connection>> late;
  for (const auto& [id, cc] : clients_) {
    if (cc.handshake != nullptr && cc.handshake_deadline <= now &&
        cc.handshake->state() != wire::MemberHandshake::State::kRefused) {
      late.push_back(cc.conn);
    }
  }
  if (!late.empty()) {
    spdlog::warn(
        "closing {} client connection(s) from={}... reason=no handshake within {} ms "
        "(--handshake-timeout)",
        late.size(), late.front()->peer(), options_.handshake_timeout_ms);
  }
  for (auto& c : late) {
    c->close(Status::timeout("no handshake within " +
                             std::to_string(options_.handshake_timeout_ms) + " ms"));
  }
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    wire::Response r = base_response(it->second.req.id);
    r.code = Code::kTimeout;
    r.message = "not applied within the request's timeout; it may still be (outcome unknown)";
    metrics_->proposals_timed_out.inc();
    it->second.reply(std::move(r));
    it = waiters_.erase(it);
  }
  for (auto it = hash_waiters_.begin(); it != hash_waiters_.end();) {
    std::vector<PendingRead> keep;
    for (PendingRead& pr : it->second) {
      if (pr.deadline > now) {
        keep.push_back(std::move(pr));
        continue;
      }
      wire::Response r = base_response(pr.req.id);
      r.code = Code::kTimeout;
      r.message = "no state hash at index " + std::to_string(it->first) + " within the timeout";
      pr.reply(std::move(r));
    }
    it->second = std::move(keep);
    it = it->second.empty() ? hash_waiters_.erase(it) : std::next(it);
  }
  settle_transfers();
  // A ReadIndex round can be lost with a leader change: retry it while time remains.
  const std::uint64_t retry_after =
      options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  for (auto it = read_batches_.begin(); it != read_batches_.end();) {
    std::vector<PendingRead> keep;
    for (PendingRead& pr : it->reads) {
      if (pr.deadline <= now) {
        wire::Response r = base_response(pr.req.id);
        r.code = Code::kUnavailable;
        r.message = "a quorum did not confirm the read within the timeout";
        pr.reply(std::move(r));
      } else {
        keep.push_back(std::move(pr));
      }
    }
    it->reads = std::move(keep);
    if (it->reads.empty()) {
      it = read_batches_.erase(it);
    } else if (it->index == 0 && now - it->started > retry_after) {
      for (PendingRead& pr : it->reads) unsent_reads_.push_back(std::move(pr));
      it = read_batches_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace kvc::server
