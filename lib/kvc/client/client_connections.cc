// The client's connections (client_internal.h): dialling a member, the hello handshake (and the
// shared-secret proof), frames on an established connection, responses matched to their calls,
// a member's refusals and closed connections. Invariant kept here: a connection is in its
// member's conns only once its hello was answered by a member of this client's cluster; before
// that it is in handshakes_ and carries no request.
#include <algorithm>
#include <cstdio>

#include "kvc/client/client_internal.h"
#include "kvc/common/text.h"
#include "kvc/common/version.h"
#include "kvc/wire/handshake.h"

namespace kvc::client {

using namespace client_internal;  // the client's shared internals (client_internal.h)

void Client::Impl::start_handshake(Member& m) {
  if (m.handshakes++ == 0) m.handshake_since = now();
  const std::string key = m.key;
  const std::uint64_t started = now();
  net::connect(&loop_, m.address,
               {.max_frame_bytes = options_.max_frame_bytes,
                .pause_reading_above = 64u << 20,
                .close_above = 1u << 30,
                .tls = tls_},
               options_.connect_timeout_ms,
               [this, key, started](Result<std::shared_ptr<net::Connection>> r) {
                 on_connected(key, started, std::move(r));
               });
}

void Client::Impl::on_connected(const std::string& key, std::uint64_t started,
                                Result<std::shared_ptr<net::Connection>> r) {
  if (stopping_loop_) {
    if (r.ok()) (*r)->close(Status::shutting_down("client closed"));
    return;
  }
  Member& m = members_[key];
  if (!r.ok()) {
    // A name that does not exist is final (for now); anything else may pass.
    handshake_ended(m, nullptr, r.status(), r.status().code() == Code::kNotFound);
    return;
  }
  std::shared_ptr<net::Connection> conn = std::move(*r);
  conn->start(
      [this, key](net::Connection& c, std::string_view payload) { on_frame(key, c, payload); },
      [this, key](net::Connection& c, const Status& why) { on_closed(key, c, why); });
  // A secret is a TLS pre-shared key (tls_): the hello carries no proofs of it.
  auto machine = std::make_unique<wire::DialerHandshake>(
      wire::Hello{.role = wire::Role::kClient,
                  .cluster_id = options_.cluster_id,
                  .name = options_.name,
                  .software_version = kvc::version(),
                  .token = options_.token,
                  .shared_watches = options_.shared_watches});
  wire::HandshakeStep hello = machine->start();
  if (hello.action != wire::HandshakeAction::kContinue) {
    conn->close(hello.why);
    handshake_ended(m, nullptr, hello.why, false);
    return;
  }
  conn->send(hello.frames);
  Handshake& h = handshakes_[conn.get()];
  h.member = key;
  h.conn = conn;
  h.machine = std::move(machine);
  const std::uint64_t spent = now() - started;
  const std::uint64_t limit = options_.connect_timeout_ms;
  net::Connection* ptr = conn.get();
  h.timer = OneShot::start(&loop_, limit > spent ? limit - spent : 1, [this, ptr, limit] {
    auto it = handshakes_.find(ptr);
    if (it == handshakes_.end()) return;
    it->second.timer = nullptr;
    fail_handshake(
        *ptr, Status::unavailable("no answer to the hello within " + std::to_string(limit) + " ms"),
        false);
  });
}

void Client::Impl::fail_handshake(net::Connection& conn, const Status& why, bool final,
                                  bool other_cluster) {
  auto it = handshakes_.find(&conn);
  if (it == handshakes_.end()) return;
  Handshake h = std::move(it->second);
  handshakes_.erase(it);
  if (h.timer != nullptr) h.timer->cancel();
  conn.close_after_flush(why);  // a final auth frame, if any, still goes out
  Member& m = members_[h.member];
  m.other_cluster = m.other_cluster || other_cluster;
  handshake_ended(m, nullptr, why, final);
}

void Client::Impl::handshake_ended(Member& m, const std::shared_ptr<net::Connection>* conn,
                                   const Status& why, bool final) {
  // With several attempts in progress, handshake_since stays the oldest one's start: the
  // others are judged a little early, never late.
  if (--m.handshakes <= 0) {
    m.handshakes = 0;
    m.handshake_since = 0;
  }
  if (conn != nullptr) {
    m.conns.push_back(*conn);
    m.refused = Status();
    m.other_cluster = false;
    m.suspect_until = 0;
    m.retry_after = 0;
    m.last_heard = now();
    if (m.check != nullptr) {
      m.check->cancel();
      m.check = nullptr;
    }
    std::vector<Call*> waiting;
    waiting.swap(m.waiting);
    for (Call* c : waiting) {
      if (c->finished) continue;
      c->stage = Stage::kNew;
      send_on(c, m);
    }
    // It answered after all: calls that gave up on it may use it.
    for (Call* c : probing_) c->skip.erase(m.key);
    wake_probing();
    return;
  }
  const std::string msg =
      why.message().rfind(m.key, 0) == 0 ? why.message() : m.key + ": " + why.message();
  m.last_error = msg;
  if (final) {
    m.refused = Status(why.code(), msg);
    m.refused_until = now() + kRefusedRecheckMs;
  } else {
    m.retry_after = now() + kReconnectBackoffMs;
  }
  if (m.conns.empty() && leader_ == m.key) set_leader("");
  if (m.conns.empty() && sticky_ == m.key) sticky_.clear();
  if (m.handshakes == 0 || final) {
    std::vector<Call*> waiting;
    waiting.swap(m.waiting);
    for (Call* c : waiting) {
      if (c->finished) continue;
      c->stage = Stage::kNew;
      c->skip.insert(m.key);
      c->why[m.key] = msg;
      if (c->opts.target) {
        finish(c, failure(c->req.id, final ? final_code(why.code()) : Code::kUnavailable, msg));
      } else {
        ++rotation_;
        dispatch(c);
      }
    }
  }
  wake_probing();
}

Status Client::Impl::not_kvc(const std::string& key, const net::Connection& conn,
                             const std::string& detail) {
  std::string msg = key + " is not a kvc member (" + detail + ")";
  const std::string& first = conn.first_bytes();
  if (first.rfind("HTTP/", 0) == 0) {
    msg +=
        ": it answered in HTTP; is this the --listen-http port? clients talk to a member's "
        "--listen-client address";
  } else if (!first.empty()) {
    msg += "; it sent \"" + printable(first) + "\"";
  }
  return Status::unavailable(msg);
}

void Client::Impl::on_handshake_frame(Handshake& h, net::Connection& conn,
                                      std::string_view payload) {
  const std::string key = h.member;
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    fail_handshake(conn, not_kvc(key, conn, "its answer to the hello is not a kvc message"), true);
    return;
  }
  wire::HandshakeStep step = h.machine->on_frame(*env);
  if (!step.frames.empty()) conn.send(step.frames);  // requests may follow right behind it
  const wire::HelloReply* hr = &h.machine->reply();
  switch (step.action) {
    case wire::HandshakeAction::kContinue:
      return;
    case wire::HandshakeAction::kClose:
      fail_handshake(conn, not_kvc(key, conn, step.why.message()), true);
      return;
    case wire::HandshakeAction::kRefuse: {
      // Refusals of this client for good (auth, cluster, the peer port) against passing ones
      // (too many connections, shutting down).
      const bool final =
          hr->code == Code::kFailedPrecondition || hr->code == Code::kUnauthenticated;
      const bool other = final && hr->cluster_id != 0 && options_.cluster_id != 0 &&
                         hr->cluster_id != options_.cluster_id;
      members_[key].cluster_id = hr->cluster_id;
      fail_handshake(conn, Status(hr->code, key + " refused the connection: " + hr->message), final,
                     other);
      return;
    }
    case wire::HandshakeAction::kOpen:
      break;
  }
  Member& m = members_[key];
  m.member_id = hr->member_id;
  m.cluster_id = hr->cluster_id;
  m.max_frame_bytes = hr->max_frame_bytes;
  m.max_request_bytes = hr->max_request_bytes;
  if (cluster_id_ == 0) {
    cluster_id_ = hr->cluster_id;
    cluster_from_ = key;
  } else if (hr->cluster_id != cluster_id_) {
    fail_handshake(
        conn,
        Status::failed_precondition(
            key + " belongs to cluster " + id_hex(hr->cluster_id) + ", not to cluster " +
            id_hex(cluster_id_) +
            (cluster_from_.empty() ? std::string(" (the client's)") : " of " + cluster_from_) +
            ": it is another cluster's member"),
        true, true);
    return;
  }
  auto it = handshakes_.find(&conn);
  Handshake done = std::move(it->second);
  handshakes_.erase(it);
  if (done.timer != nullptr) done.timer->cancel();
  handshake_ended(m, &done.conn, Status(), false);
}

void Client::Impl::on_frame(const std::string& key, net::Connection& conn,
                            std::string_view payload) {
  if (auto h = handshakes_.find(&conn); h != handshakes_.end()) {
    on_handshake_frame(h->second, conn, payload);
    return;
  }
  Member& m = members_[key];
  m.last_heard = now();
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    conn.close(env.status().with_context("bad frame from member " + key));
    return;
  }
  if (env->kind == wire::FrameKind::kHelloReply) {
    Result<wire::HelloReply> hr = wire::decode_hello_reply(*env->body);
    if (!hr.ok()) {
      conn.close(hr.status());
    } else {
      on_refusal(m, conn, *hr);
    }
    return;
  }
  if (env->kind != wire::FrameKind::kResponse) {
    conn.close(Status::corruption("unexpected frame kind from member " + key));
    return;
  }
  Result<wire::Response> r = wire::decode_response(*env->body);
  if (!r.ok()) {
    conn.close(r.status());
    return;
  }
  if (!r->leader_client_addr.empty() && r->code != Code::kNotLeader &&
      r->leader_client_addr != leader_) {
    // Any answer naming a leader refreshes our guess.
    set_leader(r->leader_client_addr);
  }
  if (r->group_events) {
    on_group_events(conn, *r);
    return;
  }
  auto on = sent_on_.find(&conn);
  if (on == sent_on_.end()) return;
  auto it = on->second.find(r->id);
  if (it == on->second.end()) return;  // late: the call timed out or moved on
  Call* c = it->second;
  if (r->watch_group != 0 && r->code == Code::kOk && !r->done && c->on_item &&
      c->group == nullptr) {
    // The acknowledgement of a watch that the member serves in a group: the group's responses
    // carry its events from now on.
    std::vector<Call*>& members = watch_groups_[&conn][r->watch_group];
    members.push_back(c);
    c->group = &members;
    c->group_conn = &conn;
    c->group_id = r->watch_group;
  }
  on_response(key, c, std::move(*r));
}

// Events for every watch of a group (shared watch responses): handed to each, under its own
// id. A callback may end only its own watch here (returning false); that takes it out of the
// group, so the loop stays on the same index.
void Client::Impl::on_group_events(net::Connection& conn, wire::Response& r) {
  auto g = watch_groups_.find(&conn);
  if (g == watch_groups_.end()) return;
  auto m = g->second.find(r.watch_group);
  if (m == g->second.end()) return;  // every watch of it ended here
  std::vector<Call*>& members = m->second;
  dispatching_group_ = &members;
  for (std::size_t i = 0; i < members.size();) {
    Call* c = members[i];
    r.id = r.watch_id = c->req.id;
    if (c->on_item && !c->on_item(r)) {
      cancel_now(c);  // leaves the group: members[i] is the next one now
      if (i < members.size() && members[i] == c) ++i;
      continue;
    }
    ++i;
  }
  dispatching_group_ = nullptr;
  if (!members.empty()) return;
  g->second.erase(m);
  if (g->second.empty()) watch_groups_.erase(g);  // as leave_group does outside a dispatch
}

void Client::Impl::leave_group(Call* c) {
  if (c->group == nullptr) return;
  std::vector<Call*>& members = *c->group;
  members.erase(std::remove(members.begin(), members.end(), c), members.end());
  if (members.empty() && &members != dispatching_group_) {
    auto g = watch_groups_.find(c->group_conn);
    if (g != watch_groups_.end()) {
      g->second.erase(c->group_id);
      if (g->second.empty()) watch_groups_.erase(g);
    }
  }
  c->group = nullptr;
  c->group_conn = nullptr;
  c->group_id = 0;
}

void Client::Impl::on_refusal(Member& m, net::Connection& conn, const wire::HelloReply& hr) {
  if (hr.max_frame_bytes != 0) m.max_frame_bytes = hr.max_frame_bytes;
  if (hr.refused_frame_bytes != 0) {
    Call* refused = nullptr;
    auto on = sent_on_.find(&conn);
    if (on != sent_on_.end()) {
      for (auto& [id, c] : on->second) {
        if (c->frame_bytes == hr.refused_frame_bytes &&
            (refused == nullptr || c->send_seq < refused->send_seq)) {
          refused = c;
        }
      }
    }
    if (refused != nullptr) {
      finish(refused, failure(refused->req.id, Code::kInvalidArgument,
                              "refused by " + m.key + ": " + hr.message + "; nothing was applied"));
    }
    return;
  }
  conn.close(Status(hr.code == Code::kOk ? Code::kUnavailable : hr.code,
                    m.key + " closed the connection: " + hr.message));
}

void Client::Impl::on_response(const std::string& key, Call* c, wire::Response r) {
  const bool follow = !c->opts.target;
  if (follow && !c->got_first &&
      (r.code == Code::kNotLeader || r.code == Code::kUnavailable ||
       r.code == Code::kShuttingDown)) {
    // Not applied: go where the member points, or wait for an election.
    leave_stage(c);
    c->why[key] = r.message;
    const std::string& hint = r.leader_client_addr;
    if (r.code == Code::kNotLeader && !hint.empty() && hint != key) {
      set_leader(hint);
      Member* h = member_for(hint);
      if (h != nullptr && usable(c, hint)) {
        dispatch(c);
        return;
      }
      // The member it names is hung (or refused us): the others will name a new leader once
      // they elect one. Meanwhile see whether it comes back.
      if (h != nullptr && h->conns.empty() && h->handshakes == 0 && !refused_now(*h)) {
        start_handshake(*h);
      }
    } else if (leader_ == key) {
      set_leader("");
    }
    ++rotation_;
    retry_later(c);
    return;
  }
  c->got_first = true;
  if (c->on_item) {
    const bool last = r.done || r.code != Code::kOk;
    if (last) {
      finish(c, std::move(r));
      return;
    }
    if (!c->on_item(r)) cancel_now(c);
    return;
  }
  if (r.code == Code::kOk && c->req.serializable) sticky_ = key;
  finish(c, std::move(r));
}

void Client::Impl::cancel_now(Call* c) {
  send_watch_cancel(c);
  c->on_item = nullptr;
  finish(c, std::nullopt);
}

void Client::Impl::on_closed(const std::string& key, net::Connection& conn, const Status& why) {
  if (stopping_loop_) return;
  if (handshakes_.count(&conn) != 0) {
    // A TLS failure says what is wrong (net/tls.h; another CA, no client certificate, another
    // secret, plaintext against TLS): final, since retrying cannot change the credentials.
    if (why.message().rfind("tls", 0) == 0) {
      fail_handshake(conn, why, why.code() == Code::kFailedPrecondition);
      return;
    }
    // An answer we cannot decode as a frame: not a kvc member. Otherwise it hung up.
    const bool garbage = why.code() == Code::kResourceExhausted || why.code() == Code::kCorruption;
    fail_handshake(conn,
                   garbage ? not_kvc(key, conn, "its answer to the hello is not a kvc frame")
                           : Status::unavailable("connection closed before the hello was "
                                                 "answered: " +
                                                 why.message()),
                   garbage);
    return;
  }
  Member& m = members_[key];
  const bool was_ready =
      std::any_of(m.conns.begin(), m.conns.end(), [&](const auto& c) { return c.get() == &conn; });
  m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                               [&](const auto& c) { return c.get() == &conn; }),
                m.conns.end());
  if (was_ready) m.last_error = why.message();
  if (m.conns.empty() && leader_ == key) set_leader("");
  auto it = sent_on_.find(&conn);
  if (it == sent_on_.end()) return;
  std::map<std::uint64_t, Call*> lost;
  lost.swap(it->second);
  sent_on_.erase(it);
  for (auto& [id, c] : lost) {
    if (c->finished) continue;
    c->stage = Stage::kNew;  // no longer in sent_on_
    c->conn.reset();
    if (is_stream_op(c->req.op)) {
      finish(c,
             failure(id, Code::kUnavailable, "connection to " + key + " lost: " + why.message()));
    } else if (is_write(c->req.op)) {
      finish(c, failure(id, Code::kTimeout,
                        "connection to " + key + " lost after the request was sent (" +
                            why.message() + "): it may or may not have been applied"));
    } else {
      c->why[key] = why.message();
      if (c->opts.target) {
        finish(c, failure(id, Code::kUnavailable, key + ": " + why.message()));
      } else {
        c->skip.insert(key);
        ++rotation_;
        retry_later(c);
      }
    }
  }
}

void Client::Impl::set_leader(const std::string& addr) {
  leader_ = addr;
  std::lock_guard<std::mutex> lock(mu_);
  leader_copy_ = addr;
}

void Client::Impl::shutdown() {
  stopping_loop_ = true;
  std::vector<Call*> all;
  for (auto& [id, c] : calls_) all.push_back(c);
  for (Call* c : all) finish(c, failure(c->req.id, Code::kShuttingDown, "client closed"));
  for (auto& [key, m] : members_) {
    for (auto& conn : m.conns) conn->close(Status::shutting_down("client closed"));
    m.conns.clear();
    if (m.check != nullptr) {
      m.check->cancel();
      m.check = nullptr;
    }
  }
  for (auto& [ptr, h] : handshakes_) {
    if (h.timer != nullptr) h.timer->cancel();
    h.conn->close(Status::shutting_down("client closed"));
  }
  handshakes_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
}

}  // namespace kvc::client
