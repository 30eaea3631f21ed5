// The C interface (kvc.h) over kvc::server::Engine and kvc::client::{Client, Kv}. Every entry
// point catches what the C++ side may throw (std::bad_alloc) so that nothing crosses into C.
#include "kvc/kvc.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvc/client/client.h"
#include "kvc/client/client_internal.h"
#include "kvc/client/kv.h"
#include "kvc/common/status.h"
#include "kvc/common/text.h"
#include "kvc/common/version.h"
#include "kvc/net/secret.h"
#include "kvc/server/engine.h"

struct kvc_error {
  kvc_code code = KVC_ERROR;
  std::string message;
  std::string status;  // kvc::code_name of the Status behind it (kvc_error_status)
};

namespace {

kvc_code fail(kvc_error** err, kvc_code code, std::string message, kvc::Code status) {
  if (err != nullptr) {
    *err =
        new (std::nothrow) kvc_error{code, std::move(message), std::string(kvc::code_name(status))};
  }
  return code;
}

// An error of this interface's own (no Status behind it): the status its code implies.
kvc_code fail(kvc_error** err, kvc_code code, std::string message) {
  kvc::Code status = kvc::Code::kInternal;
  switch (code) {
    case KVC_USAGE:
      status = kvc::Code::kInvalidArgument;
      break;
    case KVC_NOT_FOUND:
      status = kvc::Code::kNotFound;
      break;
    case KVC_COMPARE_FAILED:
      status = kvc::Code::kCompareFailed;
      break;
    case KVC_UNAVAILABLE:
      status = kvc::Code::kUnavailable;
      break;
    case KVC_TIMEOUT:
      status = kvc::Code::kTimeout;
      break;
    default:
      break;
  }
  return fail(err, code, std::move(message), status);
}

kvc_code fail(kvc_error** err, const kvc::Status& s) {
  return fail(err, static_cast<kvc_code>(kvc::exit_code(s)), s.to_string(), s.code());
}

kvc_code usage(kvc_error** err, std::string message) {
  return fail(err, KVC_USAGE, std::move(message));
}

// Runs `fn`, turning an exception (only std::bad_alloc is expected) into KVC_ERROR.
template <typename Fn>
kvc_code guarded(kvc_error** err, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return fail(err, KVC_ERROR, std::string("kvc: ") + e.what());
  } catch (...) {
    return fail(err, KVC_ERROR, "kvc: unexpected exception");
  }
}

std::string bytes(const char* p, std::size_t n) {
  return p == nullptr ? std::string() : std::string(p, n);
}

// A copy of `s` in malloc'd memory with a NUL after it (values may hold NULs: the length is
// what counts).
char* dup_bytes(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

void fill(kvc_kv& out, const kvc::client::KeyValue& kv) {
  out.key = dup_bytes(kv.key);
  out.key_len = kv.key.size();
  out.value = dup_bytes(kv.value);
  out.value_len = kv.value.size();
  out.create_revision = kv.create_revision;
  out.mod_revision = kv.mod_revision;
  out.version = kv.version;
  out.lease = kv.lease;
}

void release(kvc_kv& kv) {
  std::free(const_cast<char*>(kv.key));
  std::free(const_cast<char*>(kv.value));
  kv.key = nullptr;
  kv.value = nullptr;
}

void copy_out(const std::string& s, char* buf, std::size_t size) {
  if (buf == nullptr || size == 0) return;
  const std::size_t n = std::min(s.size(), size - 1);
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
}

}  // namespace

// A way into a cluster: the typed calls over a Channel, and the watches started through it.
struct kvc_db {
  // `acks_first`: the channel answers a watch before its events (a Client, as the client
  // protocol does); an Engine's channel does not, and refuses synchronously.
  kvc_db(kvc::client::Channel& ch, bool acks) : channel(ch), kv(ch), acks_first(acks) {}
  ~kvc_db() { stop_all(); }

  // A watch's callback runs under its mutex, so that kvc_unwatch (which takes it) returns only
  // once the callback is not running, and `stopped` keeps it from running again.
  struct Watch {
    std::mutex mu;
    bool stopped = false;
    std::uint64_t stream = 0;
  };

  void stop(const std::shared_ptr<Watch>& w) {
    {
      std::lock_guard<std::mutex> lock(w->mu);
      w->stopped = true;
    }
    channel.channel_cancel(w->stream);
  }
  void stop_all() {
    std::map<std::uint64_t, std::shared_ptr<Watch>> all;
    {
      std::lock_guard<std::mutex> lock(mu);
      all.swap(watches);
    }
    for (auto& [id, w] : all) stop(w);
  }

  kvc::client::Channel& channel;
  kvc::client::Kv kv;
  const bool acks_first;
  std::mutex mu;
  std::uint64_t next_watch = 0;
  std::map<std::uint64_t, std::shared_ptr<Watch>> watches;
};

struct kvc_engine_options {
  kvc::server::EngineOptions o;
  // kvc-node's durations, turned into ticks at open (as kvc-node does), whatever their order.
  std::uint64_t tick_ms = 100;
  std::uint64_t election_ms = 1000;
  std::uint64_t heartbeat_ms = 100;
};

struct kvc_engine {
  std::unique_ptr<kvc::server::Engine> engine;
  std::unique_ptr<kvc_db> db;
  std::mutex leader_mu;
  kvc_leader_fn leader_fn = nullptr;
  void* leader_ctx = nullptr;
};

struct kvc_client {
  std::unique_ptr<kvc::client::Client> client;
  std::unique_ptr<kvc_db> db;
};

struct kvc_client_options {
  kvc_client_options() = default;
  kvc_client_options(const kvc_client_options&) = delete;
  kvc_client_options& operator=(const kvc_client_options&) = delete;
  // The token is a credential: no copy of it stays in freed memory (docs/security.md,
  // "Secrets").
  ~kvc_client_options() { kvc::net::wipe(o.token); }

  kvc::client::ClientOptions o;  // all but the endpoints, which are parsed at open
  std::string endpoints;
  std::string token_file;  // read at open, as the secret file is
  std::uint64_t timeout_ms = 0;
};

extern "C" {

kvc_code kvc_error_code(const kvc_error* err) { return err == nullptr ? KVC_OK : err->code; }
const char* kvc_error_message(const kvc_error* err) {
  return err == nullptr ? "" : err->message.c_str();
}
const char* kvc_error_status(const kvc_error* err) {
  return err == nullptr ? "ok" : err->status.c_str();
}
void kvc_error_free(kvc_error* err) { delete err; }

const char* kvc_version(void) { return kvc::version(); }

void kvc_kv_free(kvc_kv* kv) {
  if (kv == nullptr) return;
  release(*kv);
  std::free(kv);
}

void kvc_kv_list_free(kvc_kv_list* list) {
  if (list == nullptr) return;
  for (std::size_t i = 0; i < list->count; ++i) release(list->items[i]);
  std::free(list->items);
  std::free(list);
}

kvc_code kvc_get(kvc_db* db, const char* key, size_t key_len, int serializable, kvc_kv** out,
                 kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (db == nullptr || out == nullptr) return usage(err, "kvc_get: NULL db or out");
  return guarded(err, [&] {
    kvc::Result<std::optional<kvc::client::KeyValue>> r =
        db->kv.get(bytes(key, key_len), {.serializable = serializable != 0});
    if (!r.ok()) return fail(err, r.status());
    if (!r->has_value()) {
      return fail(err, KVC_NOT_FOUND,
                  "key not found: " + kvc::client::client_internal::printable(bytes(key, key_len)));
    }
    auto* kv = static_cast<kvc_kv*>(std::calloc(1, sizeof(kvc_kv)));
    if (kv == nullptr) throw std::bad_alloc();
    try {
      fill(*kv, **r);
    } catch (...) {
      kvc_kv_free(kv);
      throw;
    }
    *out = kv;
    return KVC_OK;
  });
}

kvc_code kvc_set(kvc_db* db, const char* key, size_t key_len, const char* value, size_t value_len,
                 uint64_t lease, uint64_t* revision, kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_set: NULL db");
  return guarded(err, [&] {
    kvc::Result<std::uint64_t> r = db->kv.set(bytes(key, key_len), bytes(value, value_len), lease);
    if (!r.ok()) return fail(err, r.status());
    if (revision != nullptr) *revision = *r;
    return KVC_OK;
  });
}

kvc_code kvc_delete(kvc_db* db, const char* key, size_t key_len, uint64_t expect_revision,
                    kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_delete: NULL db");
  return guarded(err, [&] {
    kvc::Result<bool> r = db->kv.del(bytes(key, key_len), expect_revision);
    if (!r.ok()) return fail(err, r.status());
    if (!*r) {
      return fail(err, KVC_NOT_FOUND,
                  "key not found: " + kvc::client::client_internal::printable(bytes(key, key_len)));
    }
    return KVC_OK;
  });
}

kvc_code kvc_cas(kvc_db* db, const char* key, size_t key_len, const char* value, size_t value_len,
                 uint64_t expect_revision, uint64_t* revision, kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_cas: NULL db");
  return guarded(err, [&] {
    kvc::Result<std::uint64_t> r =
        db->kv.cas(bytes(key, key_len), bytes(value, value_len), expect_revision);
    if (!r.ok()) return fail(err, r.status());
    if (revision != nullptr) *revision = *r;
    return KVC_OK;
  });
}

kvc_code kvc_list(kvc_db* db, const char* prefix, size_t prefix_len, const char* after,
                  size_t after_len, uint64_t limit, int serializable, kvc_kv_list** out,
                  kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (db == nullptr || out == nullptr) return usage(err, "kvc_list: NULL db or out");
  return guarded(err, [&] {
    const std::string p = bytes(prefix, prefix_len);
    std::string start = p;
    if (after != nullptr) {
      start = bytes(after, after_len);
      start.push_back('\0');  // the first key after it
      if (start < p) start = p;
    }
    {
      kvc::wire::Response r = db->channel.channel_call({.op = kvc::wire::Op::kRange,
                                                        .key = start,
                                                        .value = p,
                                                        .prefix = true,
                                                        .limit = limit,
                                                        .serializable = serializable != 0});
      if (r.code != kvc::Code::kOk) return fail(err, kvc::Status(r.code, r.message));
      auto* list = static_cast<kvc_kv_list*>(std::calloc(1, sizeof(kvc_kv_list)));
      if (list == nullptr) throw std::bad_alloc();
      try {
        if (!r.kvs.empty()) {
          list->items = static_cast<kvc_kv*>(std::calloc(r.kvs.size(), sizeof(kvc_kv)));
          if (list->items == nullptr) throw std::bad_alloc();
        }
        for (const kvc::wire::KeyValue& kv : r.kvs) {
          fill(list->items[list->count], kvc::client::from_wire(kv));
          ++list->count;
        }
      } catch (...) {
        kvc_kv_list_free(list);
        throw;
      }
      list->more = r.more ? 1 : 0;
      *out = list;
    }
    return KVC_OK;
  });
}

kvc_code kvc_lease_grant(kvc_db* db, uint64_t ttl_seconds, uint64_t* id, kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_lease_grant: NULL db");
  return guarded(err, [&] {
    kvc::Result<kvc::client::LeaseInfo> r = db->kv.lease_grant(ttl_seconds);
    if (!r.ok()) return fail(err, r.status());
    if (id != nullptr) *id = r->id;
    return KVC_OK;
  });
}

kvc_code kvc_lease_keep_alive(kvc_db* db, uint64_t id, kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_lease_keep_alive: NULL db");
  return guarded(err, [&] {
    kvc::Result<std::uint64_t> r = db->kv.lease_keep_alive(id);
    return r.ok() ? KVC_OK : fail(err, r.status());
  });
}

kvc_code kvc_lease_revoke(kvc_db* db, uint64_t id, kvc_error** err) {
  if (db == nullptr) return usage(err, "kvc_lease_revoke: NULL db");
  return guarded(err, [&] {
    kvc::Result<std::uint64_t> r = db->kv.lease_revoke(id);
    return r.ok() ? KVC_OK : fail(err, r.status());
  });
}

kvc_code kvc_watch(kvc_db* db, const char* key, size_t key_len, int prefix, uint64_t start_revision,
                   kvc_watch_fn callback, void* ctx, uint64_t* watch_id, kvc_error** err) {
  if (db == nullptr || callback == nullptr) return usage(err, "kvc_watch: NULL db or callback");
  return guarded(err, [&] {
    auto w = std::make_shared<kvc_db::Watch>();
    kvc::wire::Request req{.op = kvc::wire::Op::kWatch,
                           .key = bytes(key, key_len),
                           .prefix = prefix != 0,
                           .start_revision = start_revision};
    // The first answer says whether the watch started; a failure then is this call's.
    struct Start {
      std::mutex mu;
      bool answered = false;
      kvc::Status status;
      std::condition_variable cv;
    };
    auto start = std::make_shared<Start>();
    const std::uint64_t stream = db->channel.channel_stream(
        std::move(req), [w, start, callback, ctx](const kvc::wire::Response& r) {
          std::lock_guard<std::mutex> lock(w->mu);
          {
            std::lock_guard<std::mutex> s(start->mu);
            if (!start->answered) {
              start->answered = true;
              if (r.code != kvc::Code::kOk) start->status = kvc::Status(r.code, r.message);
              start->cv.notify_all();
              if (r.code != kvc::Code::kOk) return false;
            }
          }
          if (w->stopped) return false;
          for (const kvc::wire::Event& e : r.events) {
            kvc_kv kv{};
            kv.key = e.kv.key.data();
            kv.key_len = e.kv.key.size();
            kv.value = e.kv.value.data();
            kv.value_len = e.kv.value.size();
            kv.create_revision = e.kv.create_revision;
            kv.mod_revision = e.kv.mod_revision;
            kv.version = e.kv.version;
            kv.lease = e.kv.lease;
            callback(ctx, e.type == kvc::wire::EventType::kPut ? KVC_EVENT_PUT : KVC_EVENT_DELETE,
                     &kv);
          }
          if (r.code != kvc::Code::kOk || r.done) {
            w->stopped = true;
            callback(ctx, KVC_EVENT_END, nullptr);
            return false;
          }
          return true;
        });
    {
      std::unique_lock<std::mutex> s(start->mu);
      if (db->acks_first) {
        // A member answers a watch first (ok: it started; else why not, or the transport's
        // failure).
        start->cv.wait(s, [&] { return start->answered; });
      } else if (stream == 0 && !start->answered) {
        return fail(err, KVC_ERROR, "kvc_watch: the watch did not start");
      }
      // An engine's channel refuses at once (stream 0, the refusal already delivered).
      if (!start->status.ok()) return fail(err, start->status);
    }
    {
      std::lock_guard<std::mutex> lock(w->mu);
      w->stream = stream;
    }
    std::lock_guard<std::mutex> lock(db->mu);
    const std::uint64_t id = ++db->next_watch;
    db->watches[id] = w;
    if (watch_id != nullptr) *watch_id = id;
    return KVC_OK;
  });
}

void kvc_unwatch(kvc_db* db, uint64_t watch_id) {
  if (db == nullptr) return;
  try {
    std::shared_ptr<kvc_db::Watch> w;
    {
      std::lock_guard<std::mutex> lock(db->mu);
      auto it = db->watches.find(watch_id);
      if (it == db->watches.end()) return;
      w = std::move(it->second);
      db->watches.erase(it);
    }
    db->stop(w);
  } catch (...) {
  }
}

kvc_engine_options* kvc_engine_options_new(void) { return new (std::nothrow) kvc_engine_options(); }

void kvc_engine_options_free(kvc_engine_options* options) { delete options; }

kvc_code kvc_engine_options_set(kvc_engine_options* options, const char* name, const char* value,
                                kvc_error** err) {
  if (options == nullptr || name == nullptr || value == nullptr) {
    return usage(err, "kvc_engine_options_set: NULL argument");
  }
  return guarded(err, [&] {
    kvc::server::EngineOptions& o = options->o;
    const std::string n = name;
    const std::string v = value;
    std::map<std::string, std::string*> text = {{"name", &o.name},
                                                {"data-dir", &o.data_dir},
                                                {"listen-peer", &o.listen_peer},
                                                {"listen-client", &o.listen_client},
                                                {"listen-http", &o.listen_http},
                                                {"advertise-client", &o.advertise_client},
                                                {"initial-cluster", &o.initial_cluster},
                                                {"initial-cluster-state", &o.initial_cluster_state},
                                                {"cluster-token", &o.cluster_token},
                                                {"secret-file", &o.secret_file},
                                                {"permissions-file", &o.permissions_file},
                                                {"http-open-paths", &o.http_open_paths}};
    if (auto it = text.find(n); it != text.end()) {
      *it->second = v;
      return KVC_OK;
    }
    if (n == "tick" || n == "election-timeout" || n == "heartbeat-interval" ||
        n == "request-timeout") {
      kvc::Result<std::uint64_t> ms = kvc::parse_duration_ms(v);
      if (!ms.ok()) return usage(err, n + ": " + ms.status().message());
      if (*ms == 0) return usage(err, n + " must be positive");
      if (n == "tick") {
        options->tick_ms = *ms;
      } else if (n == "election-timeout") {
        options->election_ms = *ms;
      } else if (n == "heartbeat-interval") {
        options->heartbeat_ms = *ms;
      } else {
        o.request_timeout_ms = *ms;
      }
      return KVC_OK;
    }
    return usage(err, "unknown engine option '" + n + "' (see kvc.h)");
  });
}

kvc_code kvc_engine_open(const kvc_engine_options* options, kvc_engine** out, kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (options == nullptr || out == nullptr) return usage(err, "kvc_engine_open: NULL argument");
  return guarded(err, [&] {
    kvc::server::EngineOptions o = options->o;
    o.tick_ms = options->tick_ms;
    o.election_ticks = static_cast<int>(options->election_ms / options->tick_ms);
    o.heartbeat_ticks =
        static_cast<int>(std::max<std::uint64_t>(options->heartbeat_ms / options->tick_ms, 1));
    kvc::Result<std::unique_ptr<kvc::server::Engine>> e = kvc::server::Engine::open(o);
    if (!e.ok()) return fail(err, e.status());
    auto h = std::make_unique<kvc_engine>();
    h->engine = std::move(*e);
    h->db = std::make_unique<kvc_db>(h->engine->channel(), false);
    kvc_engine* raw = h.get();
    const std::uint64_t self = h->engine->id();
    h->engine->on_leader_change([raw, self](const kvc::server::LeaderInfo& l) {
      std::lock_guard<std::mutex> lock(raw->leader_mu);
      if (raw->leader_fn != nullptr) raw->leader_fn(raw->leader_ctx, l.id, l.id == self ? 1 : 0);
    });
    *out = h.release();
    return KVC_OK;
  });
}

kvc_code kvc_engine_close(kvc_engine* engine, kvc_error** err) {
  if (engine == nullptr) return KVC_OK;
  return guarded(err, [&] {
    {
      std::lock_guard<std::mutex> lock(engine->leader_mu);
      engine->leader_fn = nullptr;
    }
    engine->db.reset();  // its watches end first
    kvc::Status s = engine->engine->close();
    engine->engine.reset();
    delete engine;
    return s.ok() ? KVC_OK : fail(err, s);
  });
}

kvc_db* kvc_engine_db(kvc_engine* engine) { return engine == nullptr ? nullptr : engine->db.get(); }

uint64_t kvc_engine_id(const kvc_engine* engine) {
  return engine == nullptr ? 0 : engine->engine->id();
}

int kvc_engine_is_ready(const kvc_engine* engine) {
  return engine != nullptr && engine->engine->is_ready() ? 1 : 0;
}

uint64_t kvc_engine_leader(const kvc_engine* engine, char* name, size_t name_size) {
  if (engine == nullptr) return 0;
  try {
    const kvc::server::LeaderInfo l = engine->engine->leader();
    copy_out(l.name, name, name_size);
    return l.id;
  } catch (...) {
    copy_out("", name, name_size);
    return 0;
  }
}

void kvc_engine_on_leader_change(kvc_engine* engine, kvc_leader_fn callback, void* ctx) {
  if (engine == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(engine->leader_mu);
    engine->leader_fn = callback;
    engine->leader_ctx = ctx;
  }
  // A leader already known is reported at once, as Engine::on_leader_change does (read under
  // the lock, so a change reported meanwhile is not followed by this older one).
  std::lock_guard<std::mutex> lock(engine->leader_mu);
  const kvc::server::LeaderInfo l = engine->engine->leader();
  if (callback != nullptr && l.id != 0 && engine->leader_fn == callback) {
    callback(ctx, l.id, l.id == engine->engine->id() ? 1 : 0);
  }
}

void kvc_engine_client_address(const kvc_engine* engine, char* buf, size_t size) {
  try {
    copy_out(engine == nullptr ? std::string() : engine->engine->client_address(), buf, size);
  } catch (...) {
    copy_out("", buf, size);
  }
}

namespace {

// `co` is left as it was but for its endpoints, name and timeout: the caller wipes its token.
kvc_code open_client(const char* endpoints, kvc::client::ClientOptions& co, uint64_t timeout_ms,
                     kvc_client** out, kvc_error** err) {
  return guarded(err, [&] {
    kvc::Result<std::vector<kvc::net::Address>> eps = kvc::client::parse_endpoints(endpoints);
    if (!eps.ok()) return usage(err, eps.status().message());
    co.endpoints = std::move(*eps);
    if (timeout_ms != 0) co.timeout_ms = timeout_ms;
    co.name = "libkvc-c";
    kvc::Result<std::unique_ptr<kvc::client::Client>> c = kvc::client::Client::open(co);
    if (!c.ok()) return fail(err, c.status());
    auto h = std::make_unique<kvc_client>();
    h->client = std::move(*c);
    h->db = std::make_unique<kvc_db>(*h->client, true);
    *out = h.release();
    return KVC_OK;
  });
}

}  // namespace

kvc_client_options* kvc_client_options_new(void) { return new (std::nothrow) kvc_client_options(); }

void kvc_client_options_free(kvc_client_options* options) { delete options; }

kvc_code kvc_client_options_set(kvc_client_options* options, const char* name, const char* value,
                                kvc_error** err) {
  if (options == nullptr || name == nullptr || value == nullptr) {
    return usage(err, "kvc_client_options_set: NULL argument");
  }
  return guarded(err, [&] {
    kvc::client::ClientOptions& o = options->o;
    const std::string n = name;
    if (n == "token") {
      kvc::net::wipe(o.token);  // the old value first: assigning may reuse its buffer or not
      o.token = value;
      return KVC_OK;
    }
    std::map<std::string, std::string*> text = {
        {"endpoints", &options->endpoints}, {"secret-file", &o.secret_file},
        {"cacert", &o.tls.trusted_ca_file}, {"cert", &o.tls.cert_file},
        {"key", &o.tls.key_file},           {"token-file", &options->token_file}};
    if (auto it = text.find(n); it != text.end()) {
      *it->second = value;
      return KVC_OK;
    }
    if (n == "timeout") {
      kvc::Result<std::uint64_t> ms = kvc::parse_duration_ms(value);
      if (!ms.ok()) return usage(err, n + ": " + ms.status().message());
      if (*ms == 0) return usage(err, n + " must be positive");
      options->timeout_ms = *ms;
      return KVC_OK;
    }
    return usage(err, "unknown client option '" + n + "' (see kvc.h)");
  });
}

kvc_code kvc_client_open_with(const kvc_client_options* options, kvc_client** out,
                              kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (options == nullptr || out == nullptr) {
    return usage(err, "kvc_client_open_with: NULL argument");
  }
  if (options->endpoints.empty()) {
    return usage(err, "kvc_client_open_with: no endpoints (set \"endpoints\")");
  }
  if (!options->o.token.empty() && !options->token_file.empty()) {
    return usage(err, "kvc_client_open_with: give token or token-file, not both");
  }
  return guarded(err, [&] {
    kvc::client::ClientOptions co = options->o;
    if (!options->token_file.empty()) {
      // The secret file's rules (a regular file, mode 600, one trailing newline stripped); its
      // messages say "secret file", which would mislead here.
      kvc::Result<std::string> t = kvc::net::load_secret_file(options->token_file);
      if (!t.ok()) {
        std::string m = t.status().message();
        if (constexpr std::string_view kWhat = "secret file "; m.starts_with(kWhat)) {
          m.replace(0, kWhat.size(), "token file ");
        }
        return fail(err, kvc::Status(t.status().code(), std::move(m)));
      }
      co.token = std::move(*t);
    }
    const kvc_code code =
        open_client(options->endpoints.c_str(), co, options->timeout_ms, out, err);
    kvc::net::wipe(co.token);  // the client holds its own copy (for its hellos)
    return code;
  });
}

kvc_code kvc_client_open(const char* endpoints, const char* secret_file, uint64_t timeout_ms,
                         kvc_client** out, kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (endpoints == nullptr || out == nullptr) return usage(err, "kvc_client_open: NULL argument");
  kvc::client::ClientOptions co;
  if (secret_file != nullptr) co.secret_file = secret_file;
  return open_client(endpoints, co, timeout_ms, out, err);
}

kvc_code kvc_client_open_tls(const char* endpoints, const char* cacert, const char* cert,
                             const char* key, uint64_t timeout_ms, kvc_client** out,
                             kvc_error** err) {
  if (out != nullptr) *out = nullptr;
  if (endpoints == nullptr || out == nullptr) {
    return usage(err, "kvc_client_open_tls: NULL argument");
  }
  kvc::client::ClientOptions co;
  if (cacert != nullptr) co.tls.trusted_ca_file = cacert;
  if (cert != nullptr) co.tls.cert_file = cert;
  if (key != nullptr) co.tls.key_file = key;
  if (co.tls.trusted_ca_file.empty() && co.tls.cert_file.empty()) {
    return usage(err, "kvc_client_open_tls: give a CA file or a certificate");
  }
  return open_client(endpoints, co, timeout_ms, out, err);
}

void kvc_client_close(kvc_client* client) {
  if (client == nullptr) return;
  try {
    client->db.reset();
    client->client.reset();
  } catch (...) {
  }
  delete client;
}

kvc_db* kvc_client_db(kvc_client* client) { return client == nullptr ? nullptr : client->db.get(); }

}  // extern "C"
