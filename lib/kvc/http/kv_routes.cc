#include "kvc/http/kv_routes.h"

#include <charconv>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "kvc/common/check.h"
#include "kvc/common/log.h"
#include "kvc/common/text.h"
#include "kvc/common/txn_parse.h"
#include "kvc/http/json.h"

namespace kvc::http {
namespace {

constexpr std::string_view kKvPrefix = "/v1/kv/";
constexpr std::string_view kWatchPrefix = "/v1/watch/";
constexpr std::string_view kLeasePrefix = "/v1/lease/";
constexpr std::string_view kSseKeepalive = ": keep-alive\n\n";
constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

HttpResponse json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.body += '\n';
  return r;
}

HttpResponse error(int status, Code code, std::string_view message) {
  return error_response(status, code_name(code), message);
}

HttpResponse method_not_allowed(const HttpRequest& r, std::string_view allow) {
  HttpResponse resp = error(405, Code::kInvalidArgument,
                            "method " + std::string(method_name(r.method)) + " is not allowed on " +
                                r.path + " (allowed: " + std::string(allow) + ")");
  resp.headers.push_back({"Allow", std::string(allow)});
  return resp;
}

bool allowed(Method m, std::initializer_list<Method> ms) {
  for (Method x : ms) {
    if (x == m) return true;
  }
  return false;
}

// Refuses query parameters a route does not know (a typo such as expected_revision= must not
// silently turn a conditional write into an unconditional one) and repeated ones.
Status check_params(const HttpRequest& r, std::initializer_list<std::string_view> known) {
  for (std::size_t i = 0; i < r.query.size(); ++i) {
    const std::string& name = r.query[i].first;
    bool ok = false;
    for (std::string_view k : known) ok = ok || k == name;
    if (!ok) return Status::invalid_argument("unknown query parameter '" + name + "'");
    for (std::size_t j = 0; j < i; ++j) {
      if (r.query[j].first == name) {
        return Status::invalid_argument("query parameter '" + name + "' given twice");
      }
    }
  }
  return Status();
}

Result<std::uint64_t> uint_param(const HttpRequest& r, std::string_view name,
                                 std::uint64_t fallback) {
  const std::string* v = r.query_param(name);
  if (v == nullptr) return fallback;
  std::uint64_t out = 0;
  const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (v->empty() || ec != std::errc() || ptr != v->data() + v->size()) {
    return Status::invalid_argument(std::string(name) + "=" + *v +
                                    ": expected a non-negative integer");
  }
  return out;
}

Result<bool> bool_param(const HttpRequest& r, std::string_view name) {
  const std::string* v = r.query_param(name);
  if (v == nullptr || *v == "false" || *v == "0") return false;
  if (*v == "true" || *v == "1" || v->empty()) return true;
  return Status::invalid_argument(std::string(name) + "=" + *v + ": expected true or false");
}

std::string kv_json(const wire::KeyValue& kv, bool keys_only) {
  JsonObject o;
  o.bytes("key", kv.key);
  if (!keys_only) o.bytes("value", kv.value);
  o.num("create_revision", kv.create_revision)
      .num("mod_revision", kv.mod_revision)
      .num("version", kv.version);
  if (kv.lease != 0) o.str("lease", id_hex(kv.lease));
  return o.done();
}

// A key as error messages show it: text when printable, else its base64.
std::string printable(std::string_view key) {
  for (const char c : key) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "base64:" + base64_encode(key);
  }
  if (!is_valid_utf8(key)) return "base64:" + base64_encode(key);
  return std::string(key);
}

bool is_json_content_type(const HttpRequest& r) {
  const std::string* ct = r.header("content-type");
  if (ct == nullptr) return false;
  std::string_view v = *ct;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() != 16) return false;
  for (std::size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != "application/json"[i]) return false;
  }
  return true;
}

// The value a PUT carries: the raw body, or {"value_base64": "..."} / {"value": "text"} with
// Content-Type: application/json.
Result<std::string> put_value(const HttpRequest& r) {
  if (!is_json_content_type(r)) return r.body;
  Result<JsonValue> doc = parse_json(r.body);
  if (!doc.ok()) return doc.status();
  if (doc->type != JsonValue::Type::kObject) {
    return Status::invalid_argument("json body must be an object with value_base64 or value");
  }
  const JsonValue* found = nullptr;
  bool base64 = false;
  for (const auto& [k, v] : doc->object) {
    if (k != "value_base64" && k != "value") {
      return Status::invalid_argument("unknown field '" + k + "' in the json body");
    }
    if (found != nullptr) {
      return Status::invalid_argument("json body must have exactly one of value_base64, value");
    }
    if (v.type != JsonValue::Type::kString) {
      return Status::invalid_argument("json field '" + k + "' must be a string");
    }
    found = &v;
    base64 = k == "value_base64";
  }
  if (found == nullptr) {
    return Status::invalid_argument("json body must have value_base64 or value");
  }
  if (!base64) return found->text;
  Result<std::string> decoded = base64_decode(found->text);
  if (!decoded.ok()) return decoded.status().with_context("value_base64");
  return decoded;
}

// The body of a lease request: a JSON object with only the fields named in `known` (any
// Content-Type: curl -d sends form encoding by default).
Result<JsonValue> json_body(const HttpRequest& r, std::initializer_list<std::string_view> known) {
  Result<JsonValue> doc = parse_json(r.body);
  if (!doc.ok()) return doc.status();
  if (doc->type != JsonValue::Type::kObject) {
    return Status::invalid_argument("the body must be a JSON object");
  }
  for (std::size_t i = 0; i < doc->object.size(); ++i) {
    const std::string& k = doc->object[i].key;
    bool ok = false;
    for (std::string_view n : known) ok = ok || n == k;
    if (!ok) return Status::invalid_argument("unknown field '" + k + "' in the json body");
    for (std::size_t j = 0; j < i; ++j) {
      if (doc->object[j].key == k) {
        return Status::invalid_argument("field '" + k + "' given twice in the json body");
      }
    }
  }
  return doc;
}

// A lease id field ("lease": "<hex>"): `required` or 0 when absent.
Result<std::uint64_t> lease_field(const JsonValue& o, bool required) {
  const JsonValue* v = o.find("lease");
  if (v == nullptr) {
    if (required) return Status::invalid_argument("missing \"lease\" (its hex id)");
    return std::uint64_t{0};
  }
  if (v->type != JsonValue::Type::kString) {
    return Status::invalid_argument("\"lease\" must be a string of hex digits");
  }
  return parse_lease_id(v->text);
}

// The bytes of a txn that count against --max-request-bytes, as the member counts them
// (server/kv_service.cc): every key and value it names.
std::uint64_t txn_bytes(const TxnSpec& t) {
  std::uint64_t n = 0;
  for (const Compare& c : t.compares) n += c.key.size() + c.value.size();
  for (const auto* ops : {&t.then_ops, &t.else_ops}) {
    for (const TxnOp& op : *ops) n += op.key.size() + op.value.size();
  }
  return n;
}

// One op's result in a txn answer, shaped as `kvc-ctl txn -o json` prints it.
std::string txn_result_json(const wire::TxnResult& t) {
  JsonObject o;
  switch (t.type) {
    case TxnOpType::kPut:
      o.str("op", "put").num("revision", t.revision);
      break;
    case TxnOpType::kDelete:
    case TxnOpType::kDeletePrefix:
      o.str("op", "delete").num("deleted", t.deleted);
      break;
    case TxnOpType::kGet:
    case TxnOpType::kGetPrefix: {
      std::string kvs = "[";
      for (const wire::KeyValue& kv : t.kvs) {
        if (kvs.size() > 1) kvs += ',';
        kvs += kv_json(kv, false);
      }
      o.str("op", "get").raw("kvs", kvs + "]").boolean("more", t.more);
      break;
    }
  }
  return o.done();
}

// An error answer for a failed wire::Response, with the leader hint for not-leader and
// unavailable answers.
HttpResponse wire_error(const wire::Response& w, std::string_view target, Backend& backend) {
  const int status = http_status(w.code);
  JsonObject e;
  e.str("code", code_name(w.code)).str("message", w.message);
  if (w.code == Code::kCompareFailed) e.num("mod_revision", w.revision);
  HttpResponse resp;
  if (status == 503) {
    resp.headers.push_back({"Retry-After", "1"});
    if (w.leader_id != 0) {
      JsonObject leader;
      leader.str("id", id_hex(w.leader_id))
          .str("name", w.leader_name)
          .str("client_addr", w.leader_client_addr);
      e.raw("leader", leader.done());
      resp.headers.push_back({"X-Kvc-Leader-Id", id_hex(w.leader_id)});
      if (!w.leader_name.empty()) resp.headers.push_back({"X-Kvc-Leader-Name", w.leader_name});
      if (!w.leader_client_addr.empty()) {
        resp.headers.push_back({"X-Kvc-Leader-Client-Addr", w.leader_client_addr});
      }
      if (w.code == Code::kNotLeader) {
        const std::string http = backend.http_address_of(w.leader_id);
        if (!http.empty())
          resp.headers.push_back(
              {"Location", backend.http_scheme() + "://" + http + std::string(target)});
      }
    }
  }
  JsonObject body;
  body.raw("error", e.done());
  HttpResponse j = json(status, body.done());
  j.headers = std::move(resp.headers);
  return j;
}

// The JSON of one watch event: the key-value form of /v1/kv answers plus its type (a delete
// has no value, and create_revision and version 0), and with prev_kv=true the key as it was
// before ("prev_kv", left out when the key did not exist).
std::string event_json(const wire::Event& e, const wire::KeyValue* prev) {
  const bool put = e.type == wire::EventType::kPut;
  JsonObject o;
  o.str("type", put ? "put" : "delete");
  o.bytes("key", e.kv.key);
  if (put) o.bytes("value", e.kv.value);
  o.num("create_revision", e.kv.create_revision)
      .num("mod_revision", e.kv.mod_revision)
      .num("version", e.kv.version);
  if (prev != nullptr && prev->mod_revision != 0) {
    JsonObject p;
    p.bytes("key", prev->key)
        .bytes("value", prev->value)
        .num("create_revision", prev->create_revision)
        .num("mod_revision", prev->mod_revision)
        .num("version", prev->version);
    o.raw("prev_kv", p.done());
  }
  return o.done();
}

bool contains_ignoring_case(std::string_view haystack, std::string_view needle) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    bool match = true;
    for (std::size_t j = 0; j < needle.size() && match; ++j) {
      match = lower(haystack[i + j]) == lower(needle[j]);
    }
    if (match) return true;
  }
  return false;
}

// A watch's streaming answer. Events are written a revision at a time, once every event of that
// revision has arrived (the Backend's position has passed it), so that each message is whole:
// a client that resumes after the last revision it read (Last-Event-ID, start_revision) misses
// nothing and sees nothing twice, even for a prefix delete whose events share one revision.
//   ndjson: {"revision":R,"events":[...]}\n          keep-alive: an empty line
//   SSE:    id: R\ndata: {"revision":R,...}\n\n      keep-alive: ": keep-alive\n\n"
// An error that ends the watch is a last {"error":{...}} line (SSE: "event: error").
class StreamWatchSink final : public WatchSink {
 public:
  StreamWatchSink(std::shared_ptr<ResponseStream> stream, bool sse, std::size_t max_unsent)
      : stream_(std::move(stream)), sse_(sse), max_unsent_(max_unsent) {}

  void deliver(std::span<const wire::Event> events, std::span<const wire::KeyValue> prev_kvs,
               std::uint64_t next_revision, std::uint32_t next_sequence) override {
    (void)next_sequence;  // the events of next_revision are not all here yet when it is > 0
    if (stream_->closed()) return;
    KVC_CHECK(prev_kvs.empty() || prev_kvs.size() == events.size(),
              "a watch's prev_kvs do not match its events");
    for (std::size_t j = 0; j < events.size(); ++j) {
      held_.push_back({events[j], prev_kvs.empty() ? std::nullopt
                                                   : std::optional<wire::KeyValue>(prev_kvs[j])});
    }
    std::string out;
    std::size_t i = 0;
    while (i < held_.size() && held_[i].event.kv.mod_revision < next_revision) {
      const std::uint64_t rev = held_[i].event.kv.mod_revision;
      std::string list = "[";
      for (; i < held_.size() && held_[i].event.kv.mod_revision == rev; ++i) {
        if (list.size() > 1) list += ',';
        list += event_json(held_[i].event, held_[i].prev ? &*held_[i].prev : nullptr);
      }
      list += ']';
      const std::string msg = JsonObject().num("revision", rev).raw("events", list).done();
      if (sse_) {
        out += "id: " + std::to_string(rev) + "\ndata: " + msg + "\n\n";
      } else {
        out += msg + "\n";
      }
    }
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(i));
    stream_->write(out);
  }

  void end(const wire::Response& why) override {
    JsonObject e;
    e.str("code", code_name(why.code)).str("message", why.message);
    if (why.compact_revision != 0) e.num("compact_revision", why.compact_revision);
    const std::string msg = JsonObject().raw("error", e.done()).done();
    stream_->write(sse_ ? "event: error\ndata: " + msg + "\n\n" : msg + "\n");
    stream_->end();
  }

  bool full() const override { return stream_->unsent_bytes() > max_unsent_; }
  bool closed() const override { return stream_->closed(); }

 private:
  std::shared_ptr<ResponseStream> stream_;
  bool sse_;
  std::size_t max_unsent_;
  struct Held {
    wire::Event event;
    std::optional<wire::KeyValue> prev;  // with prev_kv only
  };
  std::vector<Held> held_;  // events of a revision not yet complete
};

}  // namespace

int http_status(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
    case Code::kCompareFailed:
    case Code::kFailedPrecondition:
      return 409;
    case Code::kUnavailable:
    case Code::kNotLeader:
    case Code::kShuttingDown:
    case Code::kResourceExhausted:
      return 503;
    case Code::kTimeout:
      return 504;
    case Code::kPermissionDenied:
      return 403;
    case Code::kUnauthenticated:
      return 401;
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kInternal:
      return 500;
  }
  return 500;
}

KvRoutes::KvRoutes(Backend& backend, KvRoutesOptions options)
    : backend_(backend), options_(options) {}

void KvRoutes::handle(const HttpRequest& r, Respond respond) {
  Result<std::string> who = backend_.authenticate(r);
  if (!who.ok()) {
    HttpResponse e =
        error(http_status(who.status().code()), who.status().code(), who.status().message());
    if (who.status().code() == Code::kUnauthenticated) {
      e.headers.push_back({"WWW-Authenticate", "Bearer"});
    }
    return respond(std::move(e));
  }
  caller_ = std::move(*who);
  const bool read = allowed(r.method, {Method::kGet, Method::kHead});
  if (r.path == "/health" || r.path == "/ready" || r.path == "/metrics") {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    if (Status s = check_params(r, {}); !s.ok()) {
      return respond(error(400, Code::kInvalidArgument, s.message()));
    }
    if (r.path == "/health") {
      backend_.health([respond = std::move(respond)](Status s) {
        if (s.ok()) return respond(json(200, JsonObject().boolean("health", true).done()));
        JsonObject e;
        e.str("code", code_name(s.code())).str("message", s.message());
        respond(json(503, JsonObject().boolean("health", false).raw("error", e.done()).done()));
      });
      return;
    }
    if (r.path == "/ready") {
      const Backend::Readiness rd = backend_.ready();
      JsonObject o;
      o.boolean("ready", rd.ready);
      if (!rd.ready) o.str("reason", rd.reason);
      return respond(json(rd.ready ? 200 : 503, o.done()));
    }
    HttpResponse m;
    m.content_type = std::string(kMetricsContentType);
    m.body = backend_.metrics_text();
    return respond(std::move(m));
  }
  if (r.path == "/v1/kv") {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    return kv_list(r, std::move(respond));
  }
  if (r.path.starts_with(kKvPrefix)) {
    return kv_key(r, r.path.substr(kKvPrefix.size()), std::move(respond));
  }
  if (r.path.starts_with(kWatchPrefix)) {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    return watch(r, r.path.substr(kWatchPrefix.size()), std::move(respond));
  }
  if (r.path == "/v1/lease" || r.path.starts_with(kLeasePrefix)) {
    return lease(r, std::move(respond));
  }
  if (r.path == "/v1/txn") {
    if (r.method != Method::kPost) return respond(method_not_allowed(r, "POST"));
    return txn(r, std::move(respond));
  }
  if (r.path == "/v1/leader") {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    if (Status s = check_params(r, {}); !s.ok()) {
      return respond(error(400, Code::kInvalidArgument, s.message()));
    }
    return leader(std::move(respond));
  }
  if (r.path == "/v1/auth/whoami") {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    if (Status st = check_params(r, {}); !st.ok()) {
      return respond(error(400, Code::kInvalidArgument, st.message()));
    }
    return whoami(std::move(respond));
  }
  respond(error(404, Code::kNotFound, "no such endpoint: " + printable(r.path)));
}

void KvRoutes::kv_key(const HttpRequest& r, std::string key, Respond respond) {
  if (!allowed(r.method, {Method::kGet, Method::kHead, Method::kPut, Method::kDelete})) {
    return respond(method_not_allowed(r, "GET, HEAD, PUT, DELETE"));
  }
  if (key.empty()) return respond(error(400, Code::kInvalidArgument, "empty key"));
  auto bad = [&respond](const Status& s) {
    respond(error(400, Code::kInvalidArgument, s.message()));
  };
  wire::Request w;
  w.key = std::move(key);
  switch (r.method) {
    case Method::kGet:
    case Method::kHead: {
      if (Status s = check_params(r, {"serializable"}); !s.ok()) return bad(s);
      Result<bool> serializable = bool_param(r, "serializable");
      if (!serializable.ok()) return bad(serializable.status());
      w.op = wire::Op::kGet;
      w.serializable = *serializable;
      break;
    }
    case Method::kPut: {
      if (Status s = check_params(r, {"expect_revision", "lease"}); !s.ok()) return bad(s);
      Result<std::string> value = put_value(r);
      if (!value.ok()) return bad(value.status());
      if (options_.max_request_bytes != 0 &&
          w.key.size() + value->size() > options_.max_request_bytes) {
        return respond(error(413, Code::kInvalidArgument,
                             "request of " + std::to_string(w.key.size() + value->size()) +
                                 " bytes exceeds --max-request-bytes " +
                                 std::to_string(options_.max_request_bytes)));
      }
      w.value = std::move(*value);
      w.op = wire::Op::kPut;
      if (r.query_param("expect_revision") != nullptr) {
        Result<std::uint64_t> rev = uint_param(r, "expect_revision", 0);
        if (!rev.ok()) return bad(rev.status());
        w.op = wire::Op::kCas;
        w.expect_revision = *rev;
      }
      if (const std::string* lease = r.query_param("lease"); lease != nullptr) {
        Result<std::uint64_t> id = parse_lease_id(*lease);
        if (!id.ok()) return bad(id.status().with_context("lease"));
        w.lease = *id;
      }
      break;
    }
    case Method::kDelete:
      if (Status s = check_params(r, {"expect_revision"}); !s.ok()) return bad(s);
      w.op = wire::Op::kDelete;
      if (r.query_param("expect_revision") != nullptr) {
        Result<std::uint64_t> rev = uint_param(r, "expect_revision", 0);
        if (!rev.ok()) return bad(rev.status());
        // On the wire 0 means "no compare"; a key that does not exist has nothing to delete.
        if (*rev == 0) {
          return bad(Status::invalid_argument(
              "expect_revision=0 on a delete: a key that does not exist cannot be deleted"));
        }
        w.expect_revision = *rev;
      }
      break;
    case Method::kPost:
      break;  // refused above
  }
  const wire::Op op = w.op;
  const std::string shown = printable(w.key);
  // The callback may run after this KvRoutes is gone; it holds only the backend, which runs it.
  w.on_behalf_of = caller_;
  backend_.call(std::move(w), [&backend = backend_, op, shown, target = r.target,
                               respond = std::move(respond)](wire::Response resp) {
    if (resp.code != Code::kOk) return respond(wire_error(resp, target, backend));
    switch (op) {
      case wire::Op::kGet:
        if (!resp.found || resp.kvs.empty()) {
          return respond(error(404, Code::kNotFound, "key not found: " + shown));
        }
        return respond(json(200, JsonObject()
                                     .raw("kv", kv_json(resp.kvs.front(), false))
                                     .num("revision", resp.revision)
                                     .done()));
      case wire::Op::kDelete:
        if (!resp.found) return respond(error(404, Code::kNotFound, "key not found: " + shown));
        return respond(
            json(200, JsonObject().num("deleted", 1).num("revision", resp.revision).done()));
      default:  // kPut, kCas
        return respond(json(200, JsonObject().num("revision", resp.revision).done()));
    }
  });
}

void KvRoutes::kv_list(const HttpRequest& r, Respond respond) {
  auto bad = [&respond](const Status& s) {
    respond(error(400, Code::kInvalidArgument, s.message()));
  };
  if (Status s = check_params(r, {"prefix", "limit", "after", "serializable", "keys_only"});
      !s.ok()) {
    return bad(s);
  }
  Result<std::uint64_t> limit = uint_param(r, "limit", options_.default_list_limit);
  if (!limit.ok()) return bad(limit.status());
  if (*limit == 0 || *limit > options_.max_list_limit) {
    return bad(Status::invalid_argument("limit must be between 1 and " +
                                        std::to_string(options_.max_list_limit)));
  }
  Result<bool> serializable = bool_param(r, "serializable");
  if (!serializable.ok()) return bad(serializable.status());
  Result<bool> keys_only = bool_param(r, "keys_only");
  if (!keys_only.ok()) return bad(keys_only.status());
  const std::string* prefix = r.query_param("prefix");
  const std::string* after = r.query_param("after");
  wire::Request w;
  w.op = wire::Op::kRange;
  w.prefix = true;
  w.value = prefix != nullptr ? *prefix : std::string();
  w.key = w.value;
  if (after != nullptr) {
    std::string start = *after;
    start.push_back('\0');  // the smallest key after `after`
    if (start > w.key) w.key = std::move(start);
  }
  w.limit = *limit;
  w.serializable = *serializable;
  w.keys_only = *keys_only;
  const bool ko = *keys_only;
  w.on_behalf_of = caller_;
  backend_.call(std::move(w), [&backend = backend_, ko, target = r.target,
                               respond = std::move(respond)](wire::Response resp) {
    if (resp.code != Code::kOk) return respond(wire_error(resp, target, backend));
    std::string kvs = "[";
    for (std::size_t i = 0; i < resp.kvs.size(); ++i) {
      if (i > 0) kvs += ',';
      kvs += kv_json(resp.kvs[i], ko);
    }
    kvs += ']';
    JsonObject o;
    o.raw("kvs", kvs)
        .num("count", resp.kvs.size())
        .boolean("more", resp.more && !resp.kvs.empty())
        .num("revision", resp.revision);
    if (resp.more && !resp.kvs.empty()) o.bytes("next_key", resp.kvs.back().key);
    respond(json(200, o.done()));
  });
}

}  // namespace kvc::http

namespace kvc::http {

void KvRoutes::watch(const HttpRequest& r, std::string key, Respond respond) {
  auto bad = [&respond](const Status& s) {
    respond(error(400, Code::kInvalidArgument, s.message()));
  };
  if (Status s = check_params(r, {"prefix", "start_revision", "prev_kv"}); !s.ok()) return bad(s);
  Result<bool> prefix = bool_param(r, "prefix");
  if (!prefix.ok()) return bad(prefix.status());
  Result<bool> prev_kv = bool_param(r, "prev_kv");
  if (!prev_kv.ok()) return bad(prev_kv.status());
  Result<std::uint64_t> start = uint_param(r, "start_revision", 0);
  if (!start.ok()) return bad(start.status());
  if (key.empty() && !*prefix) {
    return bad(
        Status::invalid_argument("empty key (prefix=true with an empty key watches every key)"));
  }
  // A reconnecting EventSource sends the id of the last message it read: go on after it (it
  // repeats the original URL, so this wins over start_revision).
  if (const std::string* last = r.header("last-event-id"); last != nullptr) {
    std::uint64_t id = 0;
    const auto [ptr, ec] = std::from_chars(last->data(), last->data() + last->size(), id);
    if (last->empty() || ec != std::errc() || ptr != last->data() + last->size() ||
        id == UINT64_MAX) {
      return bad(Status::invalid_argument("Last-Event-ID: " + *last +
                                          ": expected the revision of the last message read"));
    }
    *start = id + 1;
  }
  const std::string* accept = r.header("accept");
  const bool sse = accept != nullptr && contains_ignoring_case(*accept, "text/event-stream");
  auto stream = std::make_shared<ResponseStream>();
  auto sink = std::make_shared<StreamWatchSink>(stream, sse, options_.watch_max_unsent_bytes);
  wire::Request w;
  w.op = wire::Op::kWatch;
  w.key = std::move(key);
  w.prefix = *prefix;
  w.start_revision = *start;
  w.prev_kv = *prev_kv;
  w.on_behalf_of = caller_;
  backend_.watch(
      std::move(w), sink,
      [&backend = backend_, stream, sse, target = r.target, respond = std::move(respond)](
          wire::Response ack, std::uint64_t handle) {
        if (ack.code != Code::kOk) {
          if (ack.compact_revision == 0 || ack.code != Code::kFailedPrecondition) {
            return respond(wire_error(ack, target, backend));
          }
          // The history it asks for is gone: 410, naming the oldest revision there is.
          HttpResponse gone = error_response(410, code_name(ack.code), ack.message);
          JsonObject e;
          e.str("code", code_name(ack.code))
              .str("message", ack.message)
              .num("compact_revision", ack.compact_revision);
          gone.body = JsonObject().raw("error", e.done()).done() + "\n";
          return respond(std::move(gone));
        }
        // The connection's end (the client closed it, or the server) ends the watch.
        stream->on_close([&backend, handle] { backend.cancel_watch(handle); });
        HttpResponse resp;
        resp.content_type = sse ? "text/event-stream" : "application/x-ndjson";
        resp.headers.push_back({"Cache-Control", "no-cache"});
        resp.headers.push_back({"X-Accel-Buffering", "no"});  // nginx: do not buffer the stream
        resp.stream = stream;
        resp.stream_keepalive = sse ? std::string(kSseKeepalive) : std::string("\n");
        respond(std::move(resp));
      });
}

void KvRoutes::whoami(Respond respond) {
  wire::Request w;
  w.op = wire::Op::kWhoami;
  w.on_behalf_of = caller_;
  backend_.call(std::move(w), [&backend = backend_,
                               respond = std::move(respond)](wire::Response resp) {
    if (resp.code != Code::kOk) return respond(wire_error(resp, "/v1/auth/whoami", backend));
    std::string grants = "[";
    for (const std::string& g : resp.grants) {
      grants += (grants.size() > 1 ? "," : "") + json_quote(g);
    }
    grants += "]";
    JsonObject o;
    o.str("identity", resp.identity).boolean("permissions", resp.permissions).raw("grants", grants);
    respond(json(200, o.done()));
  });
}

void KvRoutes::leader(Respond respond) {
  wire::Request w;
  w.op = wire::Op::kLeader;
  w.on_behalf_of = caller_;
  backend_.call(std::move(w),
                [&backend = backend_, respond = std::move(respond)](wire::Response resp) {
                  if (resp.code == Code::kOk && resp.leader_id == 0) {
                    resp.code = Code::kUnavailable;
                    resp.message = "no leader known";
                  }
                  if (resp.code != Code::kOk) {
                    HttpResponse e = wire_error(resp, "/v1/leader", backend);
                    return respond(std::move(e));
                  }
                  JsonObject l;
                  l.str("id", id_hex(resp.leader_id))
                      .str("name", resp.leader_name)
                      .str("client_addr", resp.leader_client_addr);
                  if (std::string http = backend.http_address_of(resp.leader_id); !http.empty()) {
                    l.str("http_addr", http);
                  }
                  JsonObject o;
                  o.raw("leader", l.done());
                  if (resp.member_id != 0) o.str("member_id", id_hex(resp.member_id));
                  respond(json(200, o.done()));
                });
}

}  // namespace kvc::http

namespace kvc::http {

// /v1/lease (list), /v1/lease/grant, /v1/lease/revoke, /v1/lease/keepalive (POST with a JSON
// body) and /v1/lease/{id} (GET: its ttl; DELETE: revoke it).
void KvRoutes::lease(const HttpRequest& r, Respond respond) {
  auto bad = [&respond](const Status& s) {
    respond(error(400, Code::kInvalidArgument, s.message()));
  };
  const bool read = allowed(r.method, {Method::kGet, Method::kHead});
  wire::Request w;
  if (r.path == "/v1/lease") {
    if (!read) return respond(method_not_allowed(r, "GET, HEAD"));
    if (Status s = check_params(r, {}); !s.ok()) return bad(s);
    w.op = wire::Op::kLeaseList;
  } else {
    const std::string what = r.path.substr(kLeasePrefix.size());
    if (what == "grant" || what == "revoke" || what == "keepalive") {
      if (r.method != Method::kPost) return respond(method_not_allowed(r, "POST"));
      if (Status s = check_params(r, {}); !s.ok()) return bad(s);
      Result<JsonValue> body =
          what == "grant" ? json_body(r, {"ttl", "lease"}) : json_body(r, {"lease"});
      if (!body.ok()) return bad(body.status());
      Result<std::uint64_t> id = lease_field(*body, what != "grant");
      if (!id.ok()) return bad(id.status());
      w.lease = *id;
      if (what == "grant") {
        const JsonValue* ttl = body->find("ttl");
        std::optional<std::uint64_t> n;
        if (ttl != nullptr) n = ttl->as_uint64();
        if (!n || *n == 0) {
          return bad(
              Status::invalid_argument("\"ttl\" must be a whole number of seconds, 1 or more"));
        }
        w.op = wire::Op::kLeaseGrant;
        w.ttl = *n;
      } else {
        w.op = what == "revoke" ? wire::Op::kLeaseRevoke : wire::Op::kLeaseKeepAlive;
      }
    } else {
      if (!allowed(r.method, {Method::kGet, Method::kHead, Method::kDelete})) {
        return respond(method_not_allowed(r, "GET, HEAD, DELETE"));
      }
      Result<std::uint64_t> id = parse_lease_id(what);
      if (!id.ok()) return bad(id.status());
      w.lease = *id;
      if (read) {
        if (Status s = check_params(r, {"keys"}); !s.ok()) return bad(s);
        Result<bool> keys = bool_param(r, "keys");
        if (!keys.ok()) return bad(keys.status());
        w.op = wire::Op::kLeaseTtl;
        w.keys_only = *keys;  // the wire's "with its keys"
      } else {
        if (Status s = check_params(r, {}); !s.ok()) return bad(s);
        w.op = wire::Op::kLeaseRevoke;
      }
    }
  }
  const wire::Op op = w.op;
  const bool keys = w.keys_only;
  const std::uint64_t id = w.lease;
  w.on_behalf_of = caller_;
  backend_.call(std::move(w), [&backend = backend_, op, keys, id, target = r.target,
                               respond = std::move(respond)](wire::Response resp) {
    if (resp.code != Code::kOk) return respond(wire_error(resp, target, backend));
    JsonObject o;
    switch (op) {
      case wire::Op::kLeaseGrant:
        o.str("lease", id_hex(resp.lease)).num("ttl", resp.ttl).num("revision", resp.revision);
        break;
      case wire::Op::kLeaseRevoke:
        o.str("lease", id_hex(id)).num("deleted", resp.count).num("revision", resp.revision);
        break;
      case wire::Op::kLeaseKeepAlive:
        o.str("lease", id_hex(id)).num("ttl", resp.ttl);
        break;
      case wire::Op::kLeaseTtl: {
        if (resp.leases.empty()) {
          return respond(error(500, Code::kInternal, "the member answered without the lease"));
        }
        const wire::LeaseInfo& l = resp.leases.front();
        o.str("lease", id_hex(l.id)).num("ttl", l.ttl).num("remaining_ms", l.remaining_ms);
        if (keys) {
          std::string ks = "[";
          for (const std::string& k : l.keys) {
            if (ks.size() > 1) ks += ',';
            ks += JsonObject().bytes("key", k).done();
          }
          o.raw("keys", ks + "]");
        }
        break;
      }
      default: {  // kLeaseList
        std::string ls = "[";
        for (const wire::LeaseInfo& l : resp.leases) {
          if (ls.size() > 1) ls += ',';
          ls += JsonObject()
                    .str("lease", id_hex(l.id))
                    .num("ttl", l.ttl)
                    .num("remaining_ms", l.remaining_ms)
                    .done();
        }
        o.raw("leases", ls + "]");
        break;
      }
    }
    respond(json(200, o.done()));
  });
}

// POST /v1/txn: the JSON txn of `kvc-ctl txn --json` (common/txn_parse.h), one kTxn request.
void KvRoutes::txn(const HttpRequest& r, Respond respond) {
  if (Status s = check_params(r, {}); !s.ok()) {
    return respond(error(400, Code::kInvalidArgument, s.message()));
  }
  Result<TxnSpec> spec = parse_txn_json(r.body);
  if (!spec.ok()) {
    return respond(error(400, Code::kInvalidArgument, "txn: " + spec.status().message()));
  }
  if (const std::uint64_t bytes = txn_bytes(*spec);
      options_.max_request_bytes != 0 && bytes > options_.max_request_bytes) {
    return respond(error(413, Code::kInvalidArgument,
                         "txn of " + std::to_string(bytes) + " bytes exceeds --max-request-bytes " +
                             std::to_string(options_.max_request_bytes)));
  }
  wire::Request w;
  w.op = wire::Op::kTxn;
  w.compares = std::move(spec->compares);
  w.then_ops = std::move(spec->then_ops);
  w.else_ops = std::move(spec->else_ops);
  w.on_behalf_of = caller_;
  backend_.call(std::move(w), [&backend = backend_, target = r.target,
                               respond = std::move(respond)](wire::Response resp) {
    if (resp.code != Code::kOk) return respond(wire_error(resp, target, backend));
    std::string results = "[";
    for (const wire::TxnResult& t : resp.txn_results) {
      if (results.size() > 1) results += ',';
      results += txn_result_json(t);
    }
    respond(json(200, JsonObject()
                          .boolean("succeeded", resp.succeeded)
                          .num("revision", resp.revision)
                          .raw("results", results + "]")
                          .done()));
  });
}

}  // namespace kvc::http
