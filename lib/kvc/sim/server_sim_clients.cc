// The server simulation's clients (server_sim_internal.h): four clients put, get, compare-and-set
// and delete four keys through the members, recording the history the linearizability checker
// reads; an operation whose member crashed or timed out has an unknown outcome.
#include "kvc/sim/server_sim_internal.h"

namespace kvc::sim::server_cluster {

void ServerSim::next_op(ClientState& c) {
  if (c.busy || healed_ || !result_.ok || c.ops >= o_.max_ops_per_client) return;
  std::vector<int> up;
  for (const Slot& s : slots_) {
    if (s.member && !s.member->stopped() && !s.stopping) up.push_back(s.index);
  }
  if (up.empty()) {
    const int id = c.id;
    at(now_us_ + 20'000, [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
    return;
  }
  int target = up[rand(up.size())];
  if (c.leader_hint >= 0 && chance(75) && slots_[static_cast<std::size_t>(c.leader_hint)].member) {
    target = c.leader_hint;
  }
  check::Operation op;
  op.client = static_cast<std::uint64_t>(c.id);
  op.key = kKeys[rand(4)];
  const std::uint64_t k = rand(100);
  op.kind = k < 35   ? check::OpKind::kGet
            : k < 70 ? check::OpKind::kPut
            : k < 88 ? check::OpKind::kCas
                     : check::OpKind::kDelete;
  if (!cold_written_) {
    // The cold key: written once, first, never again, so its value stays in LMDB where damage
    // can reach it (a hot key's stored value is soon hidden by newer writes in the overlay).
    cold_written_ = true;
    op.key = kColdKey;
    op.kind = check::OpKind::kPut;
  }
  // Biased: soon after a value was damaged, reads of that key go to the damaged member half the
  // time (a member that served the damaged value would be caught at once).
  if (damaged_read_until_ > now_us_ && chance(50)) {
    const Slot& d = slots_[static_cast<std::size_t>(damaged_slot_)];
    if (d.member && !d.member->stopped() && !d.stopping) {
      target = damaged_slot_;
      op.key = damaged_key_;
      op.kind = check::OpKind::kGet;
    }
  }
  Slot& s = slots_[static_cast<std::size_t>(target)];
  wire::Request req;
  req.key = op.key;
  req.timeout_ms = 1500;
  switch (op.kind) {
    case check::OpKind::kGet:
      req.op = wire::Op::kGet;
      break;
    case check::OpKind::kPut:
      req.op = wire::Op::kPut;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      break;
    case check::OpKind::kCas: {
      req.op = wire::Op::kCas;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      const std::uint64_t seen = seen_revision_[op.key];
      op.expect_revision = chance(70) ? seen : (chance(50) ? 0 : seen + 1 + rand(5));
      req.expect_revision = op.expect_revision;
      break;
    }
    case check::OpKind::kDelete:
      req.op = wire::Op::kDelete;
      break;
  }
  op.invoke_time = now_us_;
  history_.push_back(op);
  ++result_.stats.operations;
  ++c.ops;
  c.busy = true;
  inflight_.push_back({history_.size() - 1, c.id, target, s.incarnation, false});
  const std::size_t f = inflight_.size() - 1;
  if (o_.trace) {
    trace("c" + std::to_string(c.id) + " " + std::string(wire::op_name(req.op)) + "(" + op.key +
          (op.value.empty() ? "" : ", " + op.value) +
          (op.kind == check::OpKind::kCas ? ", expect=" + std::to_string(op.expect_revision) : "") +
          ") -> " + s.name);
  }
  enter(target);
  s.member->submit(std::move(req), [this, f](wire::Response r) { finish_op(f, r); });
  after_event(target);
}

void ServerSim::finish_op(std::size_t f, const wire::Response& r) {
  InFlightOp& in = inflight_[f];
  if (in.done) return;
  in.done = true;
  check::Operation& op = history_[in.op];
  ClientState& c = clients_[static_cast<std::size_t>(in.client)];
  c.busy = false;
  auto hint = slot_of_id_.find(r.leader_id);
  c.leader_hint = hint != slot_of_id_.end() ? hint->second : -1;
  op.response_time = now_us_;
  const bool write = op.kind != check::OpKind::kGet;
  if (o_.trace) {
    trace("c" + std::to_string(in.client) + " answered: " + std::string(code_name(r.code)) +
          " found=" + std::to_string(r.found) + " revision=" + std::to_string(r.revision) +
          (r.kvs.empty() ? "" : " value=" + r.kvs.front().value) +
          (r.message.empty() ? "" : " (" + r.message + ")"));
  }
  if (r.code == Code::kOk || (r.code == Code::kCompareFailed && op.kind == check::OpKind::kCas)) {
    check::record_answer(op, r);
    ++result_.stats.operations_ok;
    if (op.revision > seen_revision_[op.key]) seen_revision_[op.key] = op.revision;
  } else if (write && r.code != Code::kNotLeader && r.code != Code::kUnavailable &&
             r.code != Code::kShuttingDown && r.code != Code::kResourceExhausted &&
             r.code != Code::kInvalidArgument) {
    // A timeout or an unexpected error: the write may or may not have happened.
    op.outcome = check::Outcome::kUnknown;
    op.response_time = check::kNever;
    ++result_.stats.operations_unknown;
  } else {
    op.outcome = check::Outcome::kFailed;
  }
  const int id = c.id;
  at(now_us_ + rand(5000), [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
}

}  // namespace kvc::sim::server_cluster
