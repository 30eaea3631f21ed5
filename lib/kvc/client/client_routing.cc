// The client's routing (client_internal.h): which member a call goes to (the leader, a target,
// any connected member), waiting for a member's hello, probing the endpoints and settling
// which cluster they belong to, back-off, sending on a connection and the liveness check of a
// member whose read went unanswered. Invariant kept here: a call is sent only to a member whose
// hello named this client's cluster, and it leaves one stage's list before it enters another.
#include <algorithm>

#include "kvc/client/client_internal.h"
#include "kvc/common/text.h"

namespace kvc::client {

using namespace client_internal;  // the client's shared internals (client_internal.h)

Client::Impl::Member* Client::Impl::member_for(const std::string& key) {
  auto it = members_.find(key);
  if (it != members_.end()) return &it->second;
  Result<net::Address> a = net::parse_address(key);
  if (!a.ok()) return nullptr;
  Member& m = members_[key];
  m.key = key;
  m.address = *a;
  return &m;
}

bool Client::Impl::usable(const Call* c, const std::string& key) {
  if (key.empty() || c->skip.count(key) != 0) return false;
  Member* m = member_for(key);
  if (m == nullptr || refused_now(*m) || suspect(*m)) return false;
  if (m->conns.empty() && m->handshakes == 0 && now() < m->retry_after) return false;
  return true;
}

std::string Client::Impl::choose(const Call* c) {
  if (usable(c, leader_)) return leader_;
  if (c->req.serializable && usable(c, sticky_) && !members_[sticky_].conns.empty()) {
    return sticky_;
  }
  const std::size_t n = endpoint_keys_.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& k = endpoint_keys_[(rotation_ + i) % n];
    if (usable(c, k) && !members_[k].conns.empty()) return k;
  }
  for (auto& [k, m] : members_) {
    if (!m.endpoint && usable(c, k) && !m.conns.empty()) return k;
  }
  return "";
}

void Client::Impl::dispatch(Call* c) {
  if (c->finished) return;
  leave_stage(c);
  c->member.clear();
  if (c->opts.target) {
    dispatch_target(c);
    return;
  }
  if (!settled_) {
    start_probes();
    if (!try_settle()) {
      wait_probing(c);
      return;
    }
  }
  if (!conflict_.ok()) {
    finish(c, failure(c->req.id, conflict_.code(), conflict_.message()));
    return;
  }
  for (std::size_t guard = 0; guard <= members_.size(); ++guard) {
    const std::string k = choose(c);
    if (k.empty()) break;
    Member& m = members_[k];
    if (!m.conns.empty()) {
      send_on(c, m);
      return;
    }
    // The leader, not connected yet: wait for its hello, within the budget.
    if (m.handshakes > 0 && now() >= m.handshake_since + budget(c)) {
      hello_overdue(c, m);
      continue;
    }
    if (m.handshakes == 0) start_handshake(m);
    if (m.handshakes == 0) {  // failed at once
      c->skip.insert(k);
      c->why[k] = m.last_error;
      continue;
    }
    wait_for(c, m);
    return;
  }
  // Nobody is connected: dial every endpoint and take the first that answers.
  start_probes();
  if (!any_handshake()) {
    if (Status why = hopeless(); !why.ok()) {
      finish(c, failure(c->req.id, why.code(), why.message()));
      return;
    }
    c->skip.clear();
    ++rotation_;
    retry_later(c);
    return;
  }
  wait_probing(c);
}

void Client::Impl::dispatch_target(Call* c) {
  const std::string k = c->opts.target->to_string();
  Member* mp = member_for(k);
  if (mp == nullptr) {
    finish(c, failure(c->req.id, Code::kInvalidArgument, "bad target address " + k));
    return;
  }
  Member& m = *mp;
  if (refused_now(m)) {
    finish(c, failure(c->req.id, final_code(m.refused.code()), m.refused.message()));
    return;
  }
  if (!m.conns.empty()) {
    send_on(c, m);
    return;
  }
  if (m.handshakes == 0) {
    if (now() < m.retry_after) {
      finish(c, failure(c->req.id, Code::kUnavailable, k + ": " + m.last_error));
      return;
    }
    start_handshake(m);
    if (m.handshakes == 0) {
      finish(c,
             failure(c->req.id, final_code(refused_now(m) ? m.refused.code() : Code::kUnavailable),
                     k + ": " + m.last_error));
      return;
    }
  }
  wait_for(c, m);
}

void Client::Impl::wait_for(Call* c, Member& m) {
  c->stage = Stage::kWaiting;
  c->member = m.key;
  c->stage_until = std::max<std::uint64_t>(m.handshake_since + budget(c), now() + 1);
  m.waiting.push_back(c);
  arm(c);
}

void Client::Impl::wait_probing(Call* c) {
  c->stage = Stage::kProbing;
  probing_.push_back(c);
  // Wake when the first handshake in progress runs past this call's budget.
  std::uint64_t until = kNever;
  for (auto& [k, m] : members_) {
    if (m.handshakes > 0 && !suspect(m)) {
      until = std::min(until, m.handshake_since + budget(c));
    }
  }
  c->stage_until = until == kNever ? 0 : std::max<std::uint64_t>(until, now() + 1);
  arm(c);
}

void Client::Impl::waiting_overdue(Call* c) {
  Member& m = members_[c->member];
  hello_overdue(c, m);
  if (c->opts.target) {
    leave_stage(c);
    finish(c, failure(c->req.id, Code::kUnavailable, reasons(c) + " (nothing was sent)"));
    return;
  }
  dispatch(c);
}

void Client::Impl::hello_overdue(Call* c, Member& m) {
  c->skip.insert(m.key);
  c->why[m.key] = "no answer to the hello within " + std::to_string(budget(c)) + " ms";
  if (!suspect(m)) mark_suspect(m);
  ++rotation_;
}

void Client::Impl::mark_suspect(Member& m) {
  m.suspect_until = now() + kSuspectMs;
  if (leader_ == m.key) set_leader("");
  if (sticky_ == m.key) sticky_.clear();
}

void Client::Impl::probing_overdue(Call* c) {
  for (auto& [k, m] : members_) {
    if (m.handshakes > 0 && !suspect(m) && now() >= m.handshake_since + budget(c)) {
      hello_overdue(c, m);
    }
  }
  wake_probing();
  if (!c->finished && c->stage == Stage::kProbing) arm(c);
}

void Client::Impl::wake_probing() {
  if (!settled_ && !try_settle()) return;
  std::vector<Call*> calls;
  calls.swap(probing_);
  for (Call* c : calls) {
    c->stage = Stage::kNew;
    dispatch(c);
  }
}

bool Client::Impl::any_handshake() const {
  return std::any_of(members_.begin(), members_.end(),
                     [](const auto& kv) { return kv.second.handshakes > 0; });
}

void Client::Impl::start_probes() {
  for (const std::string& k : endpoint_keys_) {
    Member& m = members_[k];
    if (!m.conns.empty() || m.handshakes > 0 || refused_now(m) || now() < m.retry_after) {
      continue;
    }
    start_handshake(m);
  }
}

bool Client::Impl::try_settle() {
  if (settled_) return true;
  for (const std::string& k : endpoint_keys_) {
    Member& m = members_[k];
    if (m.conns.empty() && !refused_now(m) && !suspect(m) && m.handshakes > 0) return false;
  }
  settled_ = true;
  std::map<std::uint64_t, std::vector<std::string>> clusters;
  for (const std::string& k : endpoint_keys_) {
    const Member& m = members_[k];
    if (m.cluster_id != 0 && (!m.conns.empty() || m.other_cluster)) {
      clusters[m.cluster_id].push_back(k);
    }
  }
  if (clusters.size() > 1) {
    std::string msg =
        "the endpoints belong to " + std::to_string(clusters.size()) + " different clusters: ";
    std::size_t n = 0;
    for (const auto& [id, keys] : clusters) {
      if (n > 0) msg += n + 1 == clusters.size() ? " and " : ", ";
      ++n;
      msg += "cluster " + id_hex(id) + " (";
      for (std::size_t i = 0; i < keys.size(); ++i) msg += (i ? ", " : "") + keys[i];
      msg += ")";
    }
    conflict_ = Status::failed_precondition(msg + "; give the endpoints of one cluster");
  }
  return true;
}

Status Client::Impl::hopeless() {
  Code code = Code::kUnavailable;
  std::string msg;
  for (const std::string& k : endpoint_keys_) {
    Member& m = members_[k];
    if (!refused_now(m)) return Status();
    if (m.refused.code() == Code::kFailedPrecondition ||
        m.refused.code() == Code::kUnauthenticated) {
      code = m.refused.code();
    }
    msg += (msg.empty() ? "" : "; ") + m.refused.message();
  }
  if (endpoint_keys_.size() > 1) msg = "no endpoint can serve this client: " + msg;
  return Status(code, msg);
}

Code Client::Impl::final_code(Code refusal) {
  // Refusals that retrying cannot change: another cluster, the port, an unknown token.
  return refusal == Code::kFailedPrecondition || refusal == Code::kUnauthenticated
             ? refusal
             : Code::kUnavailable;
}

void Client::Impl::retry_later(Call* c) {
  leave_stage(c);
  c->stage = Stage::kBackoff;
  const std::uint64_t t = now();
  const std::uint64_t wait = std::min(c->backoff_ms, c->deadline > t ? c->deadline - t : 0);
  c->backoff_ms = std::min(c->backoff_ms * 2, kMaxRetryBackoffMs);
  c->stage_until = t + std::max<std::uint64_t>(wait, 1);
  arm(c);
}

std::shared_ptr<net::Connection> Client::Impl::pick_connection(Member& m) {
  m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                               [](const auto& conn) { return conn->closed(); }),
                m.conns.end());
  if (m.conns.empty()) return nullptr;
  // What one loop turn sends goes on one connection, the next turn's on the next: requests
  // gathered in one write (one TLS record) each way cost the client, the member and, for
  // linearizable reads, the ReadIndex round far less than the same spread over every socket.
  if (m.last_pick < m.conns.size()) {
    const std::shared_ptr<net::Connection>& last = m.conns[m.last_pick];
    if (last->gathering() && last->output_bytes() < kGatherOnOneConnectionBytes) return last;
  }
  m.last_pick = m.round_robin++ % m.conns.size();
  return m.conns[m.last_pick];
}

void Client::Impl::send_on(Call* c, Member& m) {
  std::shared_ptr<net::Connection> conn = pick_connection(m);
  if (!conn) {
    dispatch(c);
    return;
  }
  const std::size_t request_bytes = c->req.key.size() + c->req.value.size();
  if (m.max_request_bytes != 0 && request_bytes > m.max_request_bytes) {
    finish(c, failure(c->req.id, Code::kInvalidArgument,
                      "request of " + std::to_string(request_bytes) +
                          " bytes (key plus value) exceeds the limit of " +
                          std::to_string(m.max_request_bytes) + " bytes of member " + m.key +
                          " (kvc-node --max-request-bytes); nothing was sent"));
    return;
  }
  const std::uint64_t t = now();
  c->req.timeout_ms = std::min(c->member_timeout_ms, c->deadline > t ? c->deadline - t : 1);
  std::string out;
  wire::append_request(out, c->req);
  const std::size_t payload = out.size() - wire::kFrameHeaderBytes;
  if (m.max_frame_bytes != 0 && payload > m.max_frame_bytes) {
    finish(c,
           failure(c->req.id, Code::kInvalidArgument,
                   "request frame of " + std::to_string(payload) + " bytes exceeds the limit of " +
                       std::to_string(m.max_frame_bytes) + " bytes of member " + m.key +
                       " (kvc-node --max-frame-bytes); nothing was sent"));
    return;
  }
  c->stage = Stage::kSent;
  c->member = m.key;
  c->conn = conn;
  c->sent_at = t;
  c->send_seq = ++send_seq_;
  c->frame_bytes = payload;
  const bool retry_elsewhere = !c->opts.target && !is_write(c->req.op) && !is_stream_op(c->req.op);
  c->stage_until = retry_elsewhere ? t + read_attempt_ms(c->timeout_ms) : 0;
  sent_on_[conn.get()][c->req.id] = c;
  conn->send(out);
  // More sockets, when asked for, join as they answer.
  if (m.conns.size() + static_cast<std::size_t>(m.handshakes) < options_.connections_per_member) {
    start_handshake(m);
  }
  arm(c);
}

void Client::Impl::read_overdue(Call* c) {
  Member& m = members_[c->member];
  const std::uint64_t since = c->sent_at;
  c->skip.insert(m.key);
  c->why[m.key] = "no answer within " + std::to_string(read_attempt_ms(c->timeout_ms)) + " ms";
  check_alive(m, since, budget(c));
  ++rotation_;
  dispatch(c);
}

void Client::Impl::check_alive(Member& m, std::uint64_t since, std::uint64_t budget_ms) {
  if (m.check != nullptr) return;
  m.check_since = since;
  const std::string key = m.key;
  m.check = OneShot::start(&loop_, budget_ms, [this, key, budget_ms] {
    Member& mm = members_[key];
    mm.check = nullptr;
    if (mm.last_heard >= mm.check_since) return;  // it answered something meanwhile
    mark_suspect(mm);
    const Status why = Status::unavailable(
        key + " stopped answering (no answer to a new connection's hello within " +
        std::to_string(budget_ms) + " ms)");
    std::vector<std::shared_ptr<net::Connection>> conns;
    conns.swap(mm.conns);
    for (auto& conn : conns) conn->close(why);
  });
  start_handshake(m);
}

}  // namespace kvc::client
