// The member's HTTP routes, mapped onto a small Backend interface that the server layer
// implements with its Engine (and tests with a fake): GET /health, GET /ready, GET /metrics and
// the JSON key-value API (GET/PUT/DELETE /v1/kv/{key}, GET /v1/kv?prefix=&limit=&after=), watches
// streamed as JSON lines or Server-Sent Events (GET /v1/watch/{key}), GET /v1/leader, leases
// (/v1/lease, /v1/lease/{grant,revoke,keepalive}, /v1/lease/{id}), POST /v1/txn and
// GET /v1/auth/whoami. Every request is authenticated first (Backend::authenticate: 401 when it
// fails); the identity travels in each wire::Request's on_behalf_of and the backend checks it
// (403 "permission denied: ...").
// KvRoutes turns each HTTP request into a wire::Request with the client protocol's semantics,
// and each wire::Response into JSON; it does no I/O itself, so the fuzz target drives it too.
//
// Keys travel percent-encoded in the path (binary safe; "/" may stay literal). Values: PUT takes
// the raw body as the value, unless Content-Type is application/json, in which case the body must
// be {"value_base64": "..."}. Answers give keys as "key" (when valid UTF-8) and "key_base64", and
// values as "value_base64" (plus "value" when valid UTF-8). Errors are
// {"error": {"code": "not_found", "message": "..."}} with the status mapped from kvc::Code by
// http_status(). The full reference, with examples, is docs/http.md.
//
// Thread-safety: call handle() on the loop thread; the Backend answers on the loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kvc/common/status.h"
#include "kvc/http/server.h"
#include "kvc/wire/messages.h"

namespace kvc::http {

// Where a Backend feeds the events of an HTTP watch (KvRoutes makes it; it writes them to the
// watch's streaming answer). Loop thread only.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Events in (revision, sequence) order, then where the watch stands: every event before
  // position (next_revision, next_sequence) has now been handed over (next_sequence > 0: the
  // events of next_revision before that sequence were). May come with no events. `prev_kvs`:
  // for a watch with prev_kv, one per event, the key as it was before it (mod_revision 0: it
  // did not exist); otherwise empty.
  virtual void deliver(std::span<const wire::Event> events,
                       std::span<const wire::KeyValue> prev_kvs, std::uint64_t next_revision,
                       std::uint32_t next_sequence) = 0;
  // The watch ended on the member's side: `why` holds the code, message and, for history that
  // was compacted, compact_revision. Nothing follows.
  virtual void end(const wire::Response& why) = 0;
  // The reader has so much unread that delivery should wait (keeping its position) until this
  // turns false; the Backend asks again later, as for a client-protocol watch.
  virtual bool full() const = 0;
  // The reader is gone: nothing more is wanted (cancel_watch follows).
  virtual bool closed() const = 0;
};

// What the routes need from the member. Every method is called on the loop thread, and every
// callback must be called exactly once, on the loop thread (now or later).
class Backend {
 public:
  struct Readiness {
    bool ready = false;
    std::string reason;  // why not, when not ready
  };

  virtual ~Backend() = default;
  // Same meaning as `kvc-ctl health` for this member: ok, or an error naming why not.
  virtual void health(std::function<void(Status)> done) = 0;
  // Joined, caught up and knows a leader.
  virtual Readiness ready() = 0;
  // The Prometheus text exposition (metrics::Registry::expose()).
  virtual std::string metrics_text() = 0;
  // A client-protocol request (kGet, kRange, kPut, kCas, kDelete, kLeader, the lease ops and
  // kTxn), answered as the client protocol answers it; one that only the leader answers
  // (writes, the lease ops) goes on to the leader when this member is not it.
  virtual void call(wire::Request request, std::function<void(wire::Response)> done) = 0;
  // The HTTP address ("host:port") of the member with that id, if known; used for the Location
  // header of a not-leader answer. Empty: no Location header.
  virtual std::string http_address_of(std::uint64_t member_id) {
    (void)member_id;
    return {};
  }
  // The scheme of those addresses: "https" when the members' HTTP ports speak TLS.
  virtual std::string http_scheme() { return "http"; }
  // Starts a watch of request.key (every key under it with request.prefix) from
  // request.start_revision (0: from now) that feeds `sink`. `started` is called once, before
  // any event: with an ok response and the handle that cancel_watch() takes, or with the error
  // (code, message; compact_revision when the start revision was compacted) and no watch.
  // Without an override: unavailable.
  virtual void watch(wire::Request request, std::shared_ptr<WatchSink> sink,
                     std::function<void(wire::Response ack, std::uint64_t handle)> started) {
    (void)request;
    (void)sink;
    wire::Response r;
    r.code = Code::kUnavailable;
    r.message = "watches are not served here";
    started(std::move(r), 0);
  }
  // Stops feeding the watch `handle` (the HTTP connection closed). Unknown handles are ignored.
  virtual void cancel_watch(std::uint64_t handle) { (void)handle; }
  // Who sent `request` (any path): the identity its /v1 requests are made as, which the routes
  // pass in wire::Request::on_behalf_of for the backend to check, or kUnauthenticated with why
  // (answered 401 with `WWW-Authenticate: Bearer`). Without an override: anonymous.
  virtual Result<std::string> authenticate(const HttpRequest& request) {
    (void)request;
    return std::string("anonymous");
  }
};

struct KvRoutesOptions {
  // Checked before calling the backend, so an oversized value is refused with 413 without
  // going through the cluster; 0 disables. Set it to the member's --max-request-bytes.
  std::uint64_t max_request_bytes = 0;
  std::uint64_t default_list_limit = 1000;  // GET /v1/kv without limit=
  std::uint64_t max_list_limit = 10000;     // larger limit= values are refused (400)
  // A watch stream whose reader leaves this many bytes unread is paused (WatchSink::full), as
  // a client-protocol watch is (4 MiB, watch_hub.cc's kWatchOutputLimit).
  std::size_t watch_max_unsent_bytes = 4u << 20;
};

// The HTTP status for a kvc code: kOk 200, kInvalidArgument 400, kNotFound 404, kCompareFailed
// / kAlreadyExists / kFailedPrecondition 409, kUnavailable / kNotLeader / kShuttingDown /
// kResourceExhausted 503, kTimeout 504, the rest (corruption, I/O, internal) 500.
int http_status(Code code);

class KvRoutes {
 public:
  KvRoutes(Backend& backend, KvRoutesOptions options = {});

  // Answers `request` through `respond` (possibly later, once the backend answers).
  void handle(const HttpRequest& request, Respond respond);
  // As a Handler for HttpServer; the KvRoutes must outlive the server.
  Handler handler() {
    return [this](const HttpRequest& r, Respond respond) { handle(r, std::move(respond)); };
  }

 private:
  void kv_key(const HttpRequest& r, std::string key, Respond respond);
  void kv_list(const HttpRequest& r, Respond respond);
  void watch(const HttpRequest& r, std::string key, Respond respond);
  void leader(Respond respond);
  void lease(const HttpRequest& r, Respond respond);
  void txn(const HttpRequest& r, Respond respond);
  void whoami(Respond respond);

  Backend& backend_;
  // The identity of the request handle() is dispatching (Backend::authenticate); valid only
  // during handle(), where every route builds its wire::Request.
  std::string caller_;
  KvRoutesOptions options_;
};

}  // namespace kvc::http
