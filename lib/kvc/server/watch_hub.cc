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

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Watches

// A client cancels its watch `watch_id`: the watch ends with a final "done" response (a
// group goes on without it, and ends with its last watch).
void Engine::Impl::cancel_watch(std::uint64_t conn_id, std::uint64_t watch_id) {
  for (auto w = watchers_.begin(); w != watchers_.end();) {
    Watcher& x = w->second;
    if (x.conn != conn_id) {
      ++w;
      continue;
    }
    if (x.group.empty()) {
      if (x.id != watch_id) {
        ++w;
        continue;
      }
    } else {
      auto m = std::find(x.group.begin(), x.group.end(), watch_id);
      if (m == x.group.end()) {
        ++w;
        continue;
      }
      x.group.erase(m);
    }
    wire::Response done = base_response(watch_id);
    done.watch_id = watch_id;
    done.done = true;
    send_to_client(conn_id, done, true);
    w = x.group.empty() ? watchers_.erase(w) : std::next(w);
  }
}

// Shared watch responses. A client that says in its hello that it understands them gets one
// response per batch of events for all its watches on one connection that would each get the
// same one: the same key, prefix, prev_kv and identity, at the same position. They are one
// Watcher whose `group` lists their ids, served (positions, feed, slices, backlog) as one; the
// client library hands each response to every watch of the group. A watch joins a group only
// when it starts exactly where the group is (a watch "from now" while the group has been served
// everything applied); otherwise it starts a group of its own, which later watches may join.
// Groups never split or merge: every watch of one is always at the same position. Ordering: the
// acknowledgement that names the group is sent after every response the group was sent before
// (nothing is held back between slices), so the client hands a watch only what came after its
// start.
bool Engine::Impl::join_watch_group(Watcher& w, wire::Response& ack) {
  const WatchGroupKey gk{w.conn, w.key, w.prefix, w.prev_kv, w.identity};
  if (auto g = watch_groups_.find(gk); g != watch_groups_.end()) {
    auto it = watchers_.find(g->second);
    if (it != watchers_.end() && !it->second.group.empty() &&
        it->second.next_revision == w.next_revision &&
        it->second.next_sequence == w.next_sequence) {
      it->second.group.push_back(w.id);
      ack.watch_group = it->second.id;
      return true;
    }
  }
  w.group.push_back(w.id);
  ack.watch_group = w.id;
  return false;
}

void Engine::Impl::end_watches(const Watcher& w, wire::Response r) {
  if (w.group.empty()) {
    r.id = r.watch_id = w.id;
    send_to_client(w.conn, r, true);
    return;
  }
  for (std::uint64_t id : w.group) {
    r.id = r.watch_id = id;
    send_to_client(w.conn, r, true);
  }
}

std::size_t Engine::Impl::watch_count() const {
  std::size_t n = 0;
  for (const auto& [key, w] : watchers_) n += w.group.empty() ? 1 : w.group.size();
  return n;
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
  if (w.conn != 0) {
    auto c = clients_.find(w.conn);
    if (c != clients_.end() && c->second.shared_watches && join_watch_group(w, ack)) {
      reply(std::move(ack));
      return;
    }
  }
  const std::uint64_t key = ++watcher_seq_;
  const bool behind = w.next_revision < now_rev;
  if (!w.group.empty()) {
    watch_groups_[WatchGroupKey{w.conn, w.key, w.prefix, w.prev_kv, w.identity}] = key;
  }
  watchers_[key] = std::move(w);
  reply(std::move(ack));
  if (behind) notify_watchers();  // one that starts now has nothing to catch up
}

void Engine::Impl::end_unreadable_watches() {
  if (permissions_ == nullptr) return;
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher& w = it->second;
    if (w.identity.empty() || w.identity == kIdentityEmbedded) {
      ++it;
      continue;
    }
    wire::Request probe{.op = wire::Op::kWatch, .key = w.key, .prefix = w.prefix};
    const Status allowed = authorize(w.identity, probe);
    if (allowed.ok()) {
      ++it;
      continue;
    }
    std::string from = "http";
    if (w.conn != 0) {
      auto c = clients_.find(w.conn);
      from = c != clients_.end() ? c->second.conn->peer() : "closed";
    }
    spdlog::info("watch ended by a permissions reload identity={} key={} prefix={} from={}",
                 w.identity, w.key, w.prefix, from);
    wire::Response r = base_response(w.id);
    r.code = allowed.code();
    r.message = allowed.message();
    r.watch_id = w.id;
    r.done = true;
    if (w.sink) {
      w.sink->end(r);
    } else if (w.conn != 0) {
      flush_watch_outbox(w.conn);  // what it was sent before comes first
      end_watches(w, r);
    }
    it = watchers_.erase(it);
  }
}

// Delivery runs on the loop thread, so it must never hold it for long: with thousands of
// watchers a pass over all of them after every apply batch starved ticks and heartbeats until
// the leader lost its leadership. So:
// - The shared feed. The events after the feed's start are read once, for every key, into
//   `feed_` (positions [feed_from_, feed_end_)); a watcher whose position is inside it takes
//   the events that match its key from there. A watcher behind it (a start revision in the
//   past, or left behind when the feed was trimmed) reads the history itself, a page per
//   visit, until it reaches the feed. Each watcher keeps its own position (next_revision,
//   next_sequence), so which path serves it never makes a gap or a duplicate.
// - Slices. One call does at most kSliceWork units of work (a count, not a clock, so the
//   simulation stays deterministic; a unit is roughly 0.1 microsecond here) and posts the rest
//   to the loop: ticks, peer messages and the Raft Ready loop run in between. The sweep over
//   watchers resumes at `notify_cursor_`; when it ends and a watcher is still behind what is
//   applied, another sweep starts.
// - Responses to one connection are gathered in `watch_outbox_` and sent once per slice.
// - A watcher whose connection is closing is skipped until the close handler drops it
//   (on_client_closed). A watcher whose connection already holds kWatchOutputLimit bytes of
//   unsent output waits, keeping its position, until the client has read it: its events are
//   not queued without bound (which also made the loop copy and grow buffers of hundreds of
//   megabytes), and a sweep does not spin on it; the tick retries such watchers
//   (watch_backlog_). If it falls behind what the history keeps, it is told so when it reads
//   the history, as any watcher from a compacted revision is.
// - An HTTP watch stream (http_backend.cc) is a watcher with a sink instead of a connection:
//   the same rules, with the stream's unsent bytes for the connection's (WatchSink::full) and
//   its close for the connection's (the watcher is then skipped until cancel_watch drops it).
//   A sink is handed the watcher's new position with every visit's events, so it can tell
//   which revisions are complete.
namespace {

constexpr std::size_t kSliceWork = 20'000;
constexpr std::size_t kVisitWork = 5;        // looking at one watcher
constexpr std::size_t kEventWork = 10;       // encoding and queueing one event
constexpr std::size_t kQueryWork = 500;      // one history query (a read transaction)
constexpr std::size_t kPageEvents = 1000;    // events per history page and per response
constexpr std::size_t kScanPerVisit = 1024;  // feed events one watcher scans per visit
constexpr std::size_t kFeedMaxEvents = 65'536;
constexpr std::size_t kFeedMaxBytes = 16u << 20;
constexpr std::size_t kWatchOutputLimit = 4u << 20;  // unsent bytes on a watcher's connection

std::size_t event_bytes(const storage::Event& e) {
  return sizeof(storage::Event) + e.key.size() + e.value.size();
}

}  // namespace

void Engine::Impl::notify_watchers() {
  if (notify_posted_) return;  // the queued slice sees what was applied since
  notify_slice();
}

// Reads what was applied after the feed's end, within `work`. Returns false when some is left.
bool Engine::Impl::refresh_feed(std::size_t& work) {
  const std::uint64_t applied = state_->applied_index();
  if (watchers_.empty()) {
    feed_.clear();
    feed_bytes_ = 0;
    feed_from_ = feed_end_ = {};
    return true;
  }
  if (feed_end_.revision == 0) {
    feed_from_ = feed_end_ = {applied + 1, 0};
    return true;
  }
  while (feed_end_.revision <= applied) {
    if (work >= kSliceWork) return false;
    Result<storage::EventPage> page = state_->events_since({.from_revision = feed_end_.revision,
                                                            .from_sequence = feed_end_.sequence,
                                                            .key = "",
                                                            .prefix = true,
                                                            .limit = kPageEvents});
    work += kQueryWork;
    if (!page.ok()) {
      // The history from the feed's end cannot be read (compacted by an installed snapshot,
      // or damaged): the feed starts again after what is applied, and every watcher behind
      // it reads the history itself and is told what it cannot have, as before the feed.
      feed_.clear();
      feed_bytes_ = 0;
      feed_from_ = feed_end_ = {applied + 1, 0};
      return true;
    }
    work += 2 * page->events.size();
    for (storage::Event& e : page->events) {
      feed_bytes_ += event_bytes(e);
      feed_.push_back(std::move(e));
    }
    feed_end_ = {page->next_revision, page->next_sequence};
    if (!page->more) break;
  }
  // Bounded memory: the oldest events go first; watchers that still needed them read the
  // history themselves.
  while (!feed_.empty() && (feed_.size() > kFeedMaxEvents || feed_bytes_ > kFeedMaxBytes)) {
    feed_from_ = {feed_.front().revision, feed_.front().sequence + 1};
    feed_bytes_ -= event_bytes(feed_.front());
    feed_.pop_front();
  }
  return true;
}

namespace {

wire::Event wire_event(const storage::Event& e) {
  return {e.type == storage::EventType::kPut ? wire::EventType::kPut : wire::EventType::kDelete,
          {e.key, e.value, e.create_revision, e.revision, e.version}};
}

// The key as it was before the event (watch prev_kv); an empty KeyValue (mod_revision 0) when
// it was absent. Events written before state format 3 carry no previous value, create revision
// or version.
wire::KeyValue prev_of(const storage::Event& e) {
  if (e.prev_mod_revision == 0) return {};
  return {e.key, e.prev_value, e.prev_create_revision, e.prev_mod_revision, e.prev_version};
}

}  // namespace

void Engine::Impl::deliver_events(Watcher& w, const storage::Event* const* first,
                                  const storage::Event* const* last) {
  if (w.sink) {
    // Called after every visit, events or not: the position tells the stream which revisions
    // are complete.
    const auto n = static_cast<std::size_t>(last - first);
    std::vector<wire::Event> events;
    std::vector<wire::KeyValue> prevs;
    events.reserve(n);
    if (w.prev_kv) prevs.reserve(n);
    for (auto p = first; p != last; ++p) {
      events.push_back(wire_event(**p));
      if (w.prev_kv) prevs.push_back(prev_of(**p));
    }
    w.sink->deliver(events, prevs, w.next_revision, w.next_sequence);
    return;
  }
  if (first == last) return;
  if (w.callback) {
    for (auto p = first; p != last; ++p) {
      const storage::Event& e = **p;
      WatchEvent we;
      we.type =
          e.type == storage::EventType::kPut ? WatchEvent::Type::kPut : WatchEvent::Type::kDelete;
      we.kv = {e.key, e.value, e.create_revision, e.revision, e.version};
      if (e.prev_mod_revision != 0) {
        we.prev_kv = KeyValue{e.key, e.prev_value, e.prev_create_revision, e.prev_mod_revision,
                              e.prev_version};
      }
      w.callback(we);
    }
    return;
  }
  std::string& out = watch_outbox_[w.conn];
  while (first != last) {
    const auto n = std::min<std::ptrdiff_t>(last - first, kPageEvents);
    wire::Response r = watch_base_;
    r.id = w.id;
    r.watch_id = w.id;
    if (!w.group.empty()) {
      r.watch_group = w.id;
      r.group_events = true;
    }
    r.events.reserve(static_cast<std::size_t>(n));
    if (w.prev_kv) r.prev_kvs.reserve(static_cast<std::size_t>(n));
    for (auto p = first; p != first + n; ++p) {
      r.events.push_back(wire_event(**p));
      if (w.prev_kv) r.prev_kvs.push_back(prev_of(**p));
    }
    wire::append_response(out, r);
    first += n;
  }
}

void Engine::Impl::flush_watch_outbox(std::uint64_t conn_id) {
  auto it = watch_outbox_.find(conn_id);
  if (it == watch_outbox_.end()) return;
  auto c = clients_.find(conn_id);
  if (c != clients_.end() && !it->second.empty()) c->second.conn->send(it->second);
  watch_outbox_.erase(it);
}

Engine::Impl::WatchConn Engine::Impl::watch_conn(std::uint64_t conn_id) const {
  if (conn_id == 0) return WatchConn::kReady;  // embedded
  auto c = clients_.find(conn_id);
  if (c == clients_.end() || c->second.conn->closed()) return WatchConn::kClosed;
  std::size_t queued = c->second.conn->output_bytes();
  if (auto o = watch_outbox_.find(conn_id); o != watch_outbox_.end()) queued += o->second.size();
  return queued > kWatchOutputLimit ? WatchConn::kFull : WatchConn::kReady;
}

Engine::Impl::WatchConn Engine::Impl::watch_state(const Watcher& w) const {
  if (!w.sink) return watch_conn(w.conn);
  if (w.sink->closed()) return WatchConn::kClosed;  // cancelled soon (cancel_watch)
  return w.sink->full() ? WatchConn::kFull : WatchConn::kReady;
}

void Engine::Impl::retry_backlogged_watchers() {
  if (watch_backlog_) notify_watchers();
}

bool Engine::Impl::serve_watcher(Watcher& w, std::size_t& work) {
  work += kVisitWork;
  const std::uint64_t applied = state_->applied_index();
  if (w.next_revision > applied) return true;
  const FeedPos pos{w.next_revision, w.next_sequence};
  std::vector<const storage::Event*> matched;
  if (feed_end_.revision != 0 && pos >= feed_from_) {
    if (pos >= feed_end_) return true;  // the feed has not read that far yet
    auto it = std::lower_bound(feed_.begin(), feed_.end(), pos,
                               [](const storage::Event& e, const FeedPos& p) {
                                 return FeedPos{e.revision, e.sequence} < p;
                               });
    std::size_t scanned = 0;
    for (; it != feed_.end() && scanned < kScanPerVisit; ++it, ++scanned) {
      const storage::Event& e = *it;
      if (w.prefix ? e.key.starts_with(w.key) : e.key == w.key) matched.push_back(&e);
    }
    work += scanned + kEventWork * matched.size();
    // The position first: an HTTP stream is told it with the events.
    if (it == feed_.end()) {
      w.next_revision = feed_end_.revision;
      w.next_sequence = feed_end_.sequence;
    } else {
      w.next_revision = it->revision;
      w.next_sequence = it->sequence;
    }
    deliver_events(w, matched.data(), matched.data() + matched.size());
    return true;
  }
  // Behind the feed: a page of its own from the history.
  Result<storage::EventPage> page = state_->events_since({.from_revision = w.next_revision,
                                                          .from_sequence = w.next_sequence,
                                                          .key = w.key,
                                                          .prefix = w.prefix,
                                                          .limit = kPageEvents});
  work += kQueryWork;
  if (!page.ok()) {
    (void)damage(page.status(), "reading the watch history");
    wire::Response r = base_response(w.id);
    set_error(r, page.status());
    r.watch_id = w.id;
    r.done = true;
    if (w.conn != 0) {
      flush_watch_outbox(w.conn);  // what it was sent before comes first
      end_watches(w, r);
    } else if (w.sink) {
      if (Result<std::uint64_t> compact = state_->compact_revision(); compact.ok()) {
        r.compact_revision = *compact;
      }
      w.sink->end(r);
    }
    return false;
  }
  matched.reserve(page->events.size());
  for (const storage::Event& e : page->events) matched.push_back(&e);
  work += kEventWork * matched.size();
  w.next_revision = page->next_revision;
  w.next_sequence = page->next_sequence;
  deliver_events(w, matched.data(), matched.data() + matched.size());
  return true;
}

void Engine::Impl::notify_slice() {
  notify_posted_ = false;
  if (stopped_) return;
  std::size_t work = 0;
  const bool feed_current = refresh_feed(work);
  watch_base_ = base_response(0);
  auto it = watchers_.lower_bound(notify_cursor_);
  while (it != watchers_.end() && work < kSliceWork) {
    Watcher& w = it->second;
    const WatchConn state = watch_state(w);
    if (state != WatchConn::kReady) {
      // Closing: dropped by on_client_closed (an HTTP stream: by cancel_watch), costs nothing
      // until then. Full: waits.
      if (state == WatchConn::kFull) watch_backlog_ = true;
      ++it;
      continue;
    }
    it = serve_watcher(w, work) ? std::next(it) : watchers_.erase(it);
  }
  for (auto o = watch_outbox_.begin(); o != watch_outbox_.end(); o = watch_outbox_.begin()) {
    flush_watch_outbox(o->first);
  }
  bool again = !feed_current;
  if (it != watchers_.end()) {
    notify_cursor_ = it->first;
    again = true;
  } else {
    // The sweep is over: start another if a watcher is still behind (it was passed before
    // more was applied, or it has more pages to read), and drop the feed's events that every
    // watcher has passed.
    notify_cursor_ = 0;
    const std::uint64_t applied = state_->applied_index();
    FeedPos lowest = feed_end_;
    watch_backlog_ = false;
    for (const auto& [key, w] : watchers_) {
      const WatchConn state = watch_state(w);
      if (state == WatchConn::kClosed) continue;
      if (state == WatchConn::kFull) {
        watch_backlog_ = true;  // the tick retries it: no sweep spins on a full connection
      } else if (w.next_revision <= applied) {
        again = true;
      }
      const FeedPos pos{w.next_revision, w.next_sequence};
      if (pos >= feed_from_ && pos < lowest) lowest = pos;
    }
    while (!feed_.empty() && FeedPos{feed_.front().revision, feed_.front().sequence} < lowest) {
      feed_bytes_ -= event_bytes(feed_.front());
      feed_.pop_front();
    }
    if (feed_end_.revision != 0) feed_from_ = lowest;
  }
  if (again && !watchers_.empty()) {
    notify_posted_ = true;
    post_loop([this] { notify_slice(); });
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
