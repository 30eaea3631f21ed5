// Watches: client and embedded watchers of keys and prefixes, fed from the state machine's
// change history after each apply, and watchers of the leader.
//
// Invariants kept here:
// - A watcher sees every change after its start revision exactly once, in revision order, or
//   is told that the history it needs was compacted; never a gap.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"
#include "kvc/wire/auth.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Watches

// A client cancels its watch `watch_id`: the watcher ends with a final "done" response.
void Engine::Impl::cancel_watch(std::uint64_t conn_id, std::uint64_t watch_id) {
  for (auto w = watchers_.begin(); w != watchers_.end();) {
    if (w->second.conn == conn_id && w->second.id == watch_id) {
      wire::Response done = base_response(w->second.id);
      done.watch_id = w->second.id;
      done.done = true;
      send_to_client(conn_id, done, true);
      w = watchers_.erase(w);
    } else {
      ++w;
    }
  }
}

void Engine::Impl::add_watcher(Watcher w, const Reply& reply) {
  // Events are delivered from `next_revision`; 0 means "from now".
  const std::uint64_t now_rev = state_->applied_index() + 1;
  if (w.next_revision == 0) w.next_revision = now_rev;
  wire::Response ack = base_response(w.id);
  ack.watch_id = w.id;
  if (w.next_revision < now_rev) {
    Result<storage::EventPage> probe = state_->events_since(
        {.from_revision = w.next_revision, .key = w.key, .prefix = w.prefix, .limit = 1});
    if (!probe.ok()) {
      set_error(ack, probe.status());
      Result<std::uint64_t> compact = state_->compact_revision();
      if (compact.ok()) ack.compact_revision = *compact;
      ack.done = true;
      reply(std::move(ack));
      return;
    }
  }
  const std::uint64_t key = ++watcher_seq_;
  watchers_[key] = std::move(w);
  reply(std::move(ack));
  notify_watchers();
}

void Engine::Impl::notify_watchers() {
  const std::uint64_t applied = state_->applied_index();
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher& w = it->second;
    bool drop = false;
    while (w.next_revision <= applied) {
      Result<storage::EventPage> page = state_->events_since({.from_revision = w.next_revision,
                                                              .from_sequence = w.next_sequence,
                                                              .key = w.key,
                                                              .prefix = w.prefix,
                                                              .limit = 1000});
      if (!page.ok()) {
        (void)damage(page.status(), "reading the watch history");
        if (w.conn != 0) {
          wire::Response r = base_response(w.id);
          set_error(r, page.status());
          r.watch_id = w.id;
          r.done = true;
          send_to_client(w.conn, r, true);
        }
        drop = true;
        break;
      }
      if (!page->events.empty()) {
        if (w.callback) {
          for (const storage::Event& e : page->events) {
            WatchEvent we;
            we.type = e.type == storage::EventType::kPut ? WatchEvent::Type::kPut
                                                         : WatchEvent::Type::kDelete;
            we.kv = {e.key, e.value, e.create_revision, e.revision, e.version};
            w.callback(we);
          }
        } else {
          wire::Response r = base_response(w.id);
          r.watch_id = w.id;
          for (const storage::Event& e : page->events) {
            r.events.push_back({e.type == storage::EventType::kPut ? wire::EventType::kPut
                                                                   : wire::EventType::kDelete,
                                {e.key, e.value, e.create_revision, e.revision, e.version}});
          }
          send_to_client(w.conn, r, false);
        }
      }
      w.next_revision = page->next_revision;
      w.next_sequence = page->next_sequence;
      if (!page->more) break;
    }
    it = drop ? watchers_.erase(it) : std::next(it);
  }
}

void Engine::Impl::notify_leader_watchers() {
  for (const auto& [key, w] : leader_watchers_) {
    wire::Response r = base_response(w.id);
    r.watch_id = w.id;
    r.count = node_->term();
    send_to_client(w.conn, r, false);
  }
}

Result<std::uint64_t> Engine::Impl::watch(const std::string& key, bool prefix,
                                          std::uint64_t start_revision,
                                          std::function<void(const WatchEvent&)> callback) {
  auto p = std::make_shared<std::promise<wire::Response>>();
  std::future<wire::Response> f = p->get_future();
  post_loop([this, key, prefix, start_revision, callback = std::move(callback), p]() mutable {
    Watcher w;
    w.id = 0;
    w.key = key;
    w.prefix = prefix;
    w.next_revision = start_revision;
    w.callback = std::move(callback);
    const std::uint64_t handle = watcher_seq_ + 1;
    add_watcher(std::move(w), [p, handle](wire::Response r) {
      r.watch_id = handle;
      p->set_value(std::move(r));
    });
  });
  wire::Response r = f.get();
  if (r.code != Code::kOk) return Status(r.code, r.message);
  return r.watch_id;
}

void Engine::Impl::unwatch(std::uint64_t handle) {
  post_loop([this, handle] { watchers_.erase(handle); });
}

}  // namespace kvc::server
