#include "kvc/client/concurrency.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "kvc/common/text.h"

namespace kvc::client {
namespace {

using Clock = std::chrono::steady_clock;

Status status_of(const wire::Response& r) {
  return r.code == Code::kOk ? Status() : Status(r.code, r.message);
}

// Every key under `prefix` (paged), and the revision the first page was read at.
Result<std::vector<wire::KeyValue>> list_prefix(Channel& c, const std::string& prefix,
                                                std::uint64_t* revision) {
  std::vector<wire::KeyValue> out;
  std::string start = prefix;
  for (;;) {
    wire::Response r = c.channel_call({.op = wire::Op::kRange,
                                       .key = start,
                                       .value = prefix,
                                       .prefix = true,
                                       .limit = 1000,
                                       .keys_only = false});
    if (r.code != Code::kOk) return status_of(r);
    if (revision != nullptr && out.empty() && start == prefix) *revision = r.revision;
    for (wire::KeyValue& kv : r.kvs) out.push_back(std::move(kv));
    if (!r.more || r.kvs.empty()) return out;
    start = out.back().key;
    start.push_back('\0');
  }
}

// Creates `key` on the lease unless it exists; its create revision either way.
Result<std::uint64_t> acquire_key(Channel& c, const std::string& key, const std::string& value,
                                  std::uint64_t lease) {
  wire::Request t{.op = wire::Op::kTxn};
  t.compares = {{.target = CompareTarget::kCreateRevision, .op = CompareOp::kEqual, .key = key}};
  t.then_ops = {{.type = TxnOpType::kPut, .key = key, .value = value, .lease = lease}};
  t.else_ops = {{.type = TxnOpType::kGet, .key = key}};
  wire::Response r = c.channel_call(std::move(t));
  if (r.code != Code::kOk) return status_of(r);
  if (r.succeeded) return r.revision;
  if (r.txn_results.empty() || r.txn_results[0].kvs.empty()) {
    return Status::internal("txn answer without the key it read");
  }
  return r.txn_results[0].kvs[0].create_revision;
}

std::uint64_t remaining_ms(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return UINT64_MAX;
  const auto now = Clock::now();
  if (now >= deadline) return 0;
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
}

// Waits until `key` is deleted (watching from `from_revision`), the deadline passes
// (kTimeout) or the session is lost.
Status wait_delete(Channel& c, const std::string& key, std::uint64_t from_revision,
                   Clock::time_point deadline, const Session& session,
                   const std::atomic<bool>* cancel) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
  };
  auto st = std::make_shared<State>();
  const std::uint64_t id =
      c.channel_stream({.op = wire::Op::kWatch, .key = key, .start_revision = from_revision},
                       [st](const wire::Response& r) {
                         bool finish = r.code != Code::kOk || r.done;
                         Status s = status_of(r);
                         for (const wire::Event& e : r.events) {
                           if (e.type == wire::EventType::kDelete) finish = true;
                         }
                         if (finish) {
                           std::lock_guard<std::mutex> lock(st->mu);
                           if (!st->done) {
                             st->done = true;
                             st->status = s;
                           }
                           st->cv.notify_all();
                         }
                         return !finish;
                       });
  std::unique_lock<std::mutex> lock(st->mu);
  for (;;) {
    if (st->done) break;
    if (Status s = session.status(); !s.ok()) {
      st->status = s;
      break;
    }
    if (cancel != nullptr && cancel->load()) {
      st->status = Status::shutting_down("cancelled");
      break;
    }
    const std::uint64_t left = remaining_ms(deadline);
    if (left == 0) {
      st->status = Status::timeout("gave up waiting for " + key + " to go");
      break;
    }
    st->cv.wait_for(lock, std::chrono::milliseconds(std::min<std::uint64_t>(left, 200)));
  }
  Status s = st->status;
  lock.unlock();
  c.channel_cancel(id);  // also after it finished (idempotent; an Engine watch needs it)
  // A broken watch (a member went away) is no answer: the caller looks at the keys again.
  if (!s.ok() && (s.code() == Code::kUnavailable || s.code() == Code::kShuttingDown)) {
    return Status();
  }
  return s;
}

// Waits until no key under `prefix` is older than ours (create revision `mine`): etcd's
// waitDeletes. kNotFound when our own key is gone (the lease expired).
Status wait_turn(Channel& c, const std::string& prefix, const std::string& key, std::uint64_t mine,
                 Clock::time_point deadline, const Session& session,
                 const std::atomic<bool>* cancel) {
  for (;;) {
    KVC_RETURN_IF_ERROR(session.status());
    if (cancel != nullptr && cancel->load()) return Status::shutting_down("cancelled");
    std::uint64_t rev = 0;
    Result<std::vector<wire::KeyValue>> kvs = list_prefix(c, prefix, &rev);
    if (!kvs.ok()) return kvs.status();
    const wire::KeyValue* before = nullptr;  // the youngest key older than ours
    bool ours = false;
    for (const wire::KeyValue& kv : *kvs) {
      if (kv.key == key) ours = true;
      if (kv.create_revision < mine &&
          (before == nullptr || kv.create_revision > before->create_revision)) {
        before = &kv;
      }
    }
    if (!ours) {
      return Status::not_found("our key " + key + " is gone (the session's lease expired)");
    }
    if (before == nullptr) return Status();
    KVC_RETURN_IF_ERROR(wait_delete(c, before->key, rev + 1, deadline, session, cancel));
    if (remaining_ms(deadline) == 0) return Status::timeout("gave up waiting for " + prefix);
  }
}

Clock::time_point deadline_after(std::uint64_t timeout_ms) {
  return timeout_ms == 0 ? Clock::time_point::max()
                         : Clock::now() + std::chrono::milliseconds(timeout_ms);
}

}  // namespace

std::string session_key(const std::string& prefix, std::uint64_t lease) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(lease));
  return prefix + buf;
}

// ---- Session ----

Result<std::unique_ptr<Session>> Session::open(Channel& client, SessionOptions options,
                                               std::function<void(const Status&)> on_lost) {
  std::uint64_t lease = options.lease;
  std::uint64_t ttl = options.ttl_s;
  if (lease == 0) {
    wire::Response r = client.channel_call({.op = wire::Op::kLeaseGrant, .ttl = options.ttl_s});
    if (r.code != Code::kOk) return status_of(r);
    lease = r.lease;
    ttl = r.ttl;
  } else {
    wire::Response r = client.channel_call({.op = wire::Op::kLeaseKeepAlive, .lease = lease});
    if (r.code != Code::kOk) return status_of(r);
    ttl = r.ttl;
  }
  std::unique_ptr<Session> s(new Session(client, lease, ttl, std::move(on_lost)));
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

Session::Session(Channel& client, std::uint64_t lease, std::uint64_t ttl_s,
                 std::function<void(const Status&)> on_lost)
    : client_(client),
      lease_(lease),
      ttl_s_(std::max<std::uint64_t>(ttl_s, 1)),
      on_lost_(std::move(on_lost)) {}

Session::~Session() { (void)close(); }

Status Session::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_;
}

void Session::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Session::close() {
  const bool was_running = thread_.joinable();
  stop();
  if (!was_running) return Status();
  wire::Response r = client_.channel_call({.op = wire::Op::kLeaseRevoke, .lease = lease_});
  if (r.code == Code::kNotFound) return Status();  // gone already
  return status_of(r);
}

void Session::orphan() { stop(); }

// Keep-alives every ttl/3; after a failure, every half second until a whole ttl has passed
// since the last success, after which the lease is presumed lost (the leader may well have
// expired it).
void Session::run() {
  const auto ttl = std::chrono::seconds(ttl_s_);
  auto last_ok = Clock::now();
  auto next = last_ok + ttl / 3;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_until(lock, next, [this] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    const auto sent = Clock::now();
    wire::Response r =
        client_.channel_call({.op = wire::Op::kLeaseKeepAlive,
                              .timeout_ms = std::max<std::uint64_t>(ttl_s_ * 1000 / 3, 500),
                              .lease = lease_});
    lock.lock();
    Status lost;
    if (r.code == Code::kOk) {
      last_ok = sent;  // the holder's view counts from when it asked (the safe side)
      next = sent + ttl / 3;
      continue;
    }
    if (r.code == Code::kNotFound) {
      lost = Status::not_found("lease " + id_hex(lease_) + " is gone: " + r.message);
    } else if (Clock::now() - last_ok >= ttl) {
      lost = Status::unavailable("lease " + id_hex(lease_) + ": no keep-alive succeeded for " +
                                 std::to_string(ttl_s_) + " s (" + r.message + ")");
    } else {
      next = Clock::now() + std::chrono::milliseconds(500);
      continue;
    }
    lost_ = lost;
    stopping_ = true;
    lock.unlock();
    if (on_lost_) on_lost_(lost);
    return;
  }
}

// ---- Mutex ----

Mutex::Mutex(Channel& client, Session& session, std::string prefix)
    : client_(client),
      session_(session),
      prefix_(std::move(prefix)),
      key_(session_key(prefix_, session.lease())) {}

Result<std::uint64_t> Mutex::lock(std::uint64_t timeout_ms, const std::atomic<bool>* cancel) {
  const auto deadline = deadline_after(timeout_ms);
  Result<std::uint64_t> mine = acquire_key(client_, key_, "", session_.lease());
  if (!mine.ok()) return mine.status();
  Status s = wait_turn(client_, prefix_, key_, *mine, deadline, session_, cancel);
  if (!s.ok()) {
    (void)unlock();
    return s;
  }
  token_ = *mine;
  return token_;
}

Status Mutex::unlock() {
  token_ = 0;
  wire::Response r = client_.channel_call({.op = wire::Op::kDelete, .key = key_});
  return status_of(r);
}

// ---- Election ----

Election::Election(Channel& client, Session& session, std::string prefix)
    : client_(client),
      session_(session),
      prefix_(std::move(prefix)),
      key_(session_key(prefix_, session.lease())) {}

Result<std::uint64_t> Election::campaign(const std::string& proposal, std::uint64_t timeout_ms,
                                         const std::atomic<bool>* cancel) {
  const auto deadline = deadline_after(timeout_ms);
  Result<std::uint64_t> mine = acquire_key(client_, key_, proposal, session_.lease());
  if (!mine.ok()) return mine.status();
  revision_ = *mine;
  // A key that existed already (a campaign resumed with the same lease) keeps its place in the
  // queue but takes the new proposal.
  KVC_RETURN_IF_ERROR(proclaim(proposal));
  Status s = wait_turn(client_, prefix_, key_, *mine, deadline, session_, cancel);
  if (!s.ok()) {
    (void)resign();
    return s;
  }
  return revision_;
}

Status Election::proclaim(const std::string& proposal) {
  if (revision_ == 0) return Status::failed_precondition("not campaigning");
  wire::Request t{.op = wire::Op::kTxn};
  t.compares = {{.target = CompareTarget::kCreateRevision,
                 .op = CompareOp::kEqual,
                 .key = key_,
                 .number = revision_}};
  t.then_ops = {
      {.type = TxnOpType::kPut, .key = key_, .value = proposal, .lease = session_.lease()}};
  wire::Response r = client_.channel_call(std::move(t));
  if (r.code != Code::kOk) return status_of(r);
  if (!r.succeeded) {
    return Status::failed_precondition("the election key " + key_ + " is gone (lease expired)");
  }
  return Status();
}

Status Election::resign() {
  revision_ = 0;
  wire::Response r = client_.channel_call({.op = wire::Op::kDelete, .key = key_});
  return status_of(r);
}

Result<Election::Leader> Election::leader(Channel& client, const std::string& prefix) {
  Result<std::vector<wire::KeyValue>> kvs = list_prefix(client, prefix, nullptr);
  if (!kvs.ok()) return kvs.status();
  const wire::KeyValue* first = nullptr;
  for (const wire::KeyValue& kv : *kvs) {
    if (first == nullptr || kv.create_revision < first->create_revision) first = &kv;
  }
  if (first == nullptr) return Status::not_found("no leader under " + prefix);
  return Leader{first->key, first->value, first->create_revision};
}

Status Election::observe(Channel& client, const std::string& prefix,
                         const std::function<bool(const Leader&)>& fn,
                         const std::atomic<bool>* stop) {
  Leader last;
  bool reported = false;
  for (;;) {
    if (stop != nullptr && stop->load()) return Status();
    std::uint64_t rev = 0;
    Result<std::vector<wire::KeyValue>> kvs = list_prefix(client, prefix, &rev);
    if (!kvs.ok()) return kvs.status();
    Leader now;
    for (const wire::KeyValue& kv : *kvs) {
      if (now.key.empty() || kv.create_revision < now.revision) {
        now = Leader{kv.key, kv.value, kv.create_revision};
      }
    }
    if (!reported || now.key != last.key || now.proposal != last.proposal) {
      if (!fn(now)) return Status();
      reported = true;
      last = now;
    }
    // Wait for any change under the prefix, then look again.
    struct State {
      std::mutex mu;
      std::condition_variable cv;
      bool changed = false;
      Status status;
    };
    auto st = std::make_shared<State>();
    const std::uint64_t id = client.channel_stream(
        {.op = wire::Op::kWatch, .key = prefix, .prefix = true, .start_revision = rev + 1},
        [st](const wire::Response& r) {
          const bool finish = r.code != Code::kOk || r.done || !r.events.empty();
          if (finish) {
            std::lock_guard<std::mutex> lock(st->mu);
            st->changed = true;
            st->status = status_of(r);
            st->cv.notify_all();
          }
          return !finish;
        });
    std::unique_lock<std::mutex> lock(st->mu);
    while (!st->changed && (stop == nullptr || !stop->load())) {
      st->cv.wait_for(lock, std::chrono::milliseconds(200));
    }
    const Status s = st->status;
    lock.unlock();
    client.channel_cancel(id);
    if (!s.ok() && s.code() != Code::kUnavailable && s.code() != Code::kShuttingDown) return s;
  }
}

}  // namespace kvc::client
