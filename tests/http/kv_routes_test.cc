#include "kvc/http/kv_routes.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "fake_backend.h"
#include "kvc/common/text.h"
#include "kvc/common/txn_parse.h"
#include "kvc/http/json.h"

namespace kvc::http {
namespace {

using namespace std::string_literals;
using testing::FakeBackend;

// A request as the parser makes it from these bytes.
HttpRequest request(std::string_view method, std::string_view target, std::string_view body = "",
                    std::string_view content_type = "") {
  std::string raw = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: kvc\r\n";
  if (!content_type.empty()) raw += "Content-Type: " + std::string(content_type) + "\r\n";
  if (!body.empty()) raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  raw += "\r\n";
  raw += body;
  RequestParser p;
  const std::size_t n = p.feed(raw);
  KVC_CHECK(p.has_request() && n == raw.size(), "test request did not parse: " + raw);
  return p.take_request();
}

class KvRoutesTest : public ::testing::Test {
 protected:
  // Runs a request through the routes; the fake answers at once unless told to hold.
  HttpResponse run(std::string_view method, std::string_view target, std::string_view body = "",
                   std::string_view content_type = "") {
    std::optional<HttpResponse> got;
    routes_.handle(request(method, target, body, content_type),
                   [&got](HttpResponse r) { got = std::move(r); });
    KVC_CHECK(got.has_value(), "the routes did not answer");
    return *got;
  }
  static JsonValue body(const HttpResponse& r) {
    Result<JsonValue> v = parse_json(r.body);
    KVC_CHECK(v.ok(), "answer is not JSON: " + r.body);
    return *v;
  }
  static std::string error_code(const HttpResponse& r) {
    const JsonValue v = body(r);
    const JsonValue* e = v.find("error");
    return e != nullptr && e->find("code") != nullptr ? e->find("code")->text : "<none>";
  }
  static const std::string* header(const HttpResponse& r, std::string_view name) {
    for (const Header& h : r.headers) {
      if (h.name == name) return &h.value;
    }
    return nullptr;
  }
  // A byte field in the one JSON form: "<name>" (text) or "<name>_base64", never both.
  static std::string bytes_of(const JsonValue& o, const std::string& name) {
    const JsonValue* text = o.find(name);
    const JsonValue* b64 = o.find(name + "_base64");
    EXPECT_TRUE((text == nullptr) != (b64 == nullptr)) << name;
    if (text != nullptr) return text->text;
    return b64 != nullptr ? *base64_decode(b64->text) : "";
  }
  static std::string value_of(const JsonValue& kv) { return bytes_of(kv, "value"); }

  FakeBackend backend_;
  KvRoutes routes_{backend_, KvRoutesOptions{.max_request_bytes = 1024}};
};

TEST_F(KvRoutesTest, PutThenGetRoundTripsBinaryKeysAndValues) {
  const std::string value = "\0\xff\n{\"x\"}"s;
  HttpResponse put = run("PUT", "/v1/kv/dir/a%00b%2Fc", value);
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(body(put).find("revision")->as_uint64(), 1u);
  ASSERT_EQ(backend_.kvs.count("dir/a\0b/c"s), 1u);
  EXPECT_EQ(backend_.kvs["dir/a\0b/c"s].value, value);

  HttpResponse get = run("GET", "/v1/kv/dir/a%00b%2Fc");
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(get.content_type, "application/json");
  const JsonValue v = body(get);
  const JsonValue& kv = *v.find("kv");
  // Valid UTF-8 (NUL included) is text; the value is not UTF-8, so it comes as base64 only.
  EXPECT_EQ(kv.find("key")->text, "dir/a\0b/c"s);
  EXPECT_EQ(kv.find("key_base64"), nullptr);
  EXPECT_EQ(kv.find("value"), nullptr);
  EXPECT_EQ(*base64_decode(kv.find("value_base64")->text), value);
  EXPECT_EQ(value_of(kv), value);
  EXPECT_EQ(kv.find("create_revision")->as_uint64(), 1u);
  EXPECT_EQ(kv.find("mod_revision")->as_uint64(), 1u);
  EXPECT_EQ(kv.find("version")->as_uint64(), 1u);
  EXPECT_EQ(v.find("revision")->as_uint64(), 1u);
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kGet);
  EXPECT_FALSE(backend_.calls.back().serializable);
}

TEST_F(KvRoutesTest, KeysThatAreNotUtf8ComeOnlyAsBase64) {
  ASSERT_EQ(run("PUT", "/v1/kv/%FF%FE", "v").status, 200);
  const JsonValue kv = *body(run("GET", "/v1/kv/%ff%fe")).find("kv");
  EXPECT_EQ(kv.find("key"), nullptr);
  EXPECT_EQ(*base64_decode(kv.find("key_base64")->text), "\xff\xfe");
  // A text value is text, as jq wants it.
  EXPECT_EQ(kv.find("value")->text, "v");
  EXPECT_EQ(kv.find("value_base64"), nullptr);
}

TEST_F(KvRoutesTest, PutTakesAJsonObjectWithJsonContentType) {
  ASSERT_EQ(run("PUT", "/v1/kv/b", R"({"value_base64":"AAE="})", "application/json").status, 200);
  EXPECT_EQ(backend_.kvs["b"].value, "\0\1"s);
  ASSERT_EQ(
      run("PUT", "/v1/kv/t", R"({"value":"caf\u00e9"})", "Application/JSON; charset=utf-8").status,
      200);
  EXPECT_EQ(backend_.kvs["t"].value, "caf\xc3\xa9");
  // Any other content type stores the body as it is.
  ASSERT_EQ(run("PUT", "/v1/kv/raw", R"({"value":"x"})", "text/plain").status, 200);
  EXPECT_EQ(backend_.kvs["raw"].value, R"({"value":"x"})");

  const struct {
    const char* name;
    const char* body;
  } bad[] = {{"not json", "{"},
             {"not an object", "[]"},
             {"no value", "{}"},
             {"unknown field", R"({"value":"x","ttl":1})"},
             {"both", R"({"value":"x","value_base64":"eA=="})"},
             {"not a string", R"({"value_base64":1})"},
             {"bad base64", R"({"value_base64":"***"})"}};
  for (const auto& c : bad) {
    SCOPED_TRACE(c.name);
    HttpResponse r = run("PUT", "/v1/kv/j", c.body, "application/json");
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
  }
  EXPECT_EQ(backend_.kvs.count("j"), 0u);
}

TEST_F(KvRoutesTest, ConditionalPutComparesTheModRevision) {
  HttpResponse create = run("PUT", "/v1/kv/c?expect_revision=0", "1");
  ASSERT_EQ(create.status, 200) << create.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kCas);
  const std::uint64_t rev = *body(create).find("revision")->as_uint64();

  HttpResponse again = run("PUT", "/v1/kv/c?expect_revision=0", "2");
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(error_code(again), "compare_failed");
  EXPECT_EQ(body(again).find("error")->find("mod_revision")->as_uint64(), rev);
  EXPECT_EQ(backend_.kvs["c"].value, "1");

  EXPECT_EQ(run("PUT", "/v1/kv/c?expect_revision=" + std::to_string(rev), "3").status, 200);
  EXPECT_EQ(backend_.kvs["c"].value, "3");

  for (const char* bad : {"abc", "-1", "", "1x", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(run("PUT", std::string("/v1/kv/c?expect_revision=") + bad, "4").status, 400);
  }
  // A misspelt parameter must not turn into an unconditional write.
  EXPECT_EQ(run("PUT", "/v1/kv/c?expected_revision=1", "5").status, 400);
  EXPECT_EQ(backend_.kvs["c"].value, "3");
}

TEST_F(KvRoutesTest, MissingKeysAre404) {
  HttpResponse get = run("GET", "/v1/kv/nope");
  EXPECT_EQ(get.status, 404);
  EXPECT_EQ(error_code(get), "not_found");
  EXPECT_NE(body(get).find("error")->find("message")->text.find("nope"), std::string::npos);
  HttpResponse del = run("DELETE", "/v1/kv/nope");
  EXPECT_EQ(del.status, 404);
  EXPECT_EQ(error_code(del), "not_found");
}

TEST_F(KvRoutesTest, DeleteRemovesTheKey) {
  ASSERT_EQ(run("PUT", "/v1/kv/d", "v").status, 200);
  HttpResponse del = run("DELETE", "/v1/kv/d");
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(body(del).find("deleted")->as_uint64(), 1u);
  EXPECT_EQ(body(del).find("revision")->as_uint64(), 2u);
  EXPECT_EQ(run("GET", "/v1/kv/d").status, 404);
}

TEST_F(KvRoutesTest, ListPagesThroughAPrefixWithNextKey) {
  for (const char* k : {"a/1", "a/2", "a/3", "a/4", "a/5", "b/1", "a"}) {
    ASSERT_EQ(run("PUT", std::string("/v1/kv/") + k, std::string("v") + k).status, 200);
  }
  std::vector<std::string> seen;
  std::string target = "/v1/kv?prefix=a%2F&limit=2";
  for (int page = 0; page < 10; ++page) {
    HttpResponse r = run("GET", target);
    ASSERT_EQ(r.status, 200) << r.body;
    const JsonValue v = body(r);
    const JsonValue& kvs = *v.find("kvs");
    EXPECT_EQ(v.find("count")->as_uint64(), kvs.array.size());
    for (const JsonValue& kv : kvs.array) {
      seen.push_back(kv.find("key")->text);
      EXPECT_EQ(value_of(kv), "v" + kv.find("key")->text);
    }
    if (!v.find("more")->boolean) {
      EXPECT_EQ(v.find("next_key"), nullptr);
      break;
    }
    EXPECT_EQ(v.find("next_key")->text, seen.back());
    EXPECT_EQ(v.find("next_key_base64"), nullptr);
    target = "/v1/kv?prefix=a%2F&limit=2&after=" + percent_encode(v.find("next_key")->text);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a/1", "a/2", "a/3", "a/4", "a/5"}));

  // Whole prefix, keys only, serializable: the flags reach the backend.
  HttpResponse all = run("GET", "/v1/kv?prefix=&keys_only=true&serializable=1");
  ASSERT_EQ(all.status, 200);
  const JsonValue v = body(all);
  EXPECT_EQ(v.find("count")->as_uint64(), 7u);
  EXPECT_FALSE(v.find("more")->boolean);
  EXPECT_EQ(v.find("kvs")->array[0].find("value_base64"), nullptr);
  EXPECT_EQ(v.find("kvs")->array[0].find("value"), nullptr);
  EXPECT_TRUE(backend_.calls.back().keys_only);
  EXPECT_TRUE(backend_.calls.back().serializable);
  EXPECT_EQ(backend_.calls.back().limit, 1000u) << "the default page";

  // `after` before the prefix starts at the prefix.
  const JsonValue b = body(run("GET", "/v1/kv?prefix=b%2F&after=a"));
  ASSERT_EQ(b.find("kvs")->array.size(), 1u);
  EXPECT_EQ(b.find("kvs")->array[0].find("key")->text, "b/1");
}

TEST_F(KvRoutesTest, RefusesBadParameters) {
  const char* targets[] = {
      "/v1/kv?limit=0",          "/v1/kv?limit=10001",       "/v1/kv?limit=x",
      "/v1/kv?prefi=a",          "/v1/kv?prefix=a&prefix=b", "/v1/kv?serializable=maybe",
      "/v1/kv/k?serializable=2", "/v1/kv/k?limit=1",         "/health?x=1",
  };
  for (const char* t : targets) {
    SCOPED_TRACE(t);
    HttpResponse r = run("GET", t);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
  }
  EXPECT_TRUE(backend_.calls.empty()) << "nothing reached the backend";
}

TEST_F(KvRoutesTest, RefusesOversizedValuesWith413) {
  HttpResponse r = run("PUT", "/v1/kv/big", std::string(1024, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error_code(r), "invalid_argument");
  EXPECT_TRUE(backend_.calls.empty());
  EXPECT_EQ(run("PUT", "/v1/kv/big", std::string(1021, 'x')).status, 200);
}

TEST_F(KvRoutesTest, MapsBackendErrorsToStatuses) {
  const struct {
    Code code;
    int status;
  } cases[] = {
      {Code::kInvalidArgument, 400},
      {Code::kNotFound, 404},
      {Code::kCompareFailed, 409},
      {Code::kAlreadyExists, 409},
      {Code::kUnavailable, 503},
      {Code::kNotLeader, 503},
      {Code::kShuttingDown, 503},
      {Code::kResourceExhausted, 503},
      {Code::kTimeout, 504},
      {Code::kInternal, 500},
      {Code::kCorruption, 500},
      {Code::kIOError, 500},
      {Code::kFailedPrecondition, 409},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(code_name(c.code)));
    EXPECT_EQ(http_status(c.code), c.status);
    wire::Response e;
    e.code = c.code;
    e.message = "because";
    backend_.next_error = e;
    HttpResponse r = run("PUT", "/v1/kv/k", "v");
    EXPECT_EQ(r.status, c.status);
    EXPECT_EQ(error_code(r), code_name(c.code));
    EXPECT_EQ(body(r).find("error")->find("message")->text, "because");
    EXPECT_EQ(header(r, "Retry-After") != nullptr, c.status == 503);
  }
}

TEST_F(KvRoutesTest, NotLeaderAnswersNameTheLeader) {
  wire::Response e;
  e.code = Code::kNotLeader;
  e.message = "member n2 is not the leader";
  e.leader_id = 0xabc;
  e.leader_name = "n1";
  e.leader_client_addr = "127.0.0.1:2379";
  backend_.next_error = e;
  HttpResponse r = run("PUT", "/v1/kv/k?expect_revision=0", "v");
  EXPECT_EQ(r.status, 503);
  const JsonValue doc = body(r);
  const JsonValue& leader = *doc.find("error")->find("leader");
  EXPECT_EQ(leader.find("id")->text, "0000000000000abc");
  EXPECT_EQ(leader.find("name")->text, "n1");
  EXPECT_EQ(leader.find("client_addr")->text, "127.0.0.1:2379");
  ASSERT_NE(header(r, "X-Kvc-Leader-Id"), nullptr);
  EXPECT_EQ(*header(r, "X-Kvc-Leader-Id"), "0000000000000abc");
  EXPECT_EQ(*header(r, "X-Kvc-Leader-Name"), "n1");
  EXPECT_EQ(*header(r, "X-Kvc-Leader-Client-Addr"), "127.0.0.1:2379");
  EXPECT_EQ(header(r, "Location"), nullptr) << "the leader's HTTP address is not known";

  backend_.leader_with_http = 0xabc;
  backend_.leader_http_address = "127.0.0.1:8080";
  backend_.next_error = e;
  HttpResponse again = run("PUT", "/v1/kv/k?expect_revision=0", "v");
  ASSERT_NE(header(again, "Location"), nullptr);
  EXPECT_EQ(*header(again, "Location"), "http://127.0.0.1:8080/v1/kv/k?expect_revision=0");
  // A member whose HTTP port speaks TLS points at https.
  backend_.leader_http_scheme = "https";
  backend_.next_error = e;
  HttpResponse tls = run("PUT", "/v1/kv/k?expect_revision=0", "v");
  ASSERT_NE(header(tls, "Location"), nullptr);
  EXPECT_EQ(*header(tls, "Location"), "https://127.0.0.1:8080/v1/kv/k?expect_revision=0");
}

TEST_F(KvRoutesTest, HealthReadyAndMetrics) {
  HttpResponse h = run("GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_TRUE(body(h).find("health")->boolean);

  backend_.health_status = Status::unavailable("no leader to confirm a read");
  h = run("GET", "/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_FALSE(body(h).find("health")->boolean);
  EXPECT_EQ(error_code(h), "unavailable");
  EXPECT_EQ(body(h).find("error")->find("message")->text, "no leader to confirm a read");

  HttpResponse ready = run("GET", "/ready");
  EXPECT_EQ(ready.status, 200);
  EXPECT_TRUE(body(ready).find("ready")->boolean);
  backend_.readiness = {false, "catching up: applied 5 of 9"};
  ready = run("HEAD", "/ready");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(body(ready).find("reason")->text, "catching up: applied 5 of 9");

  backend_.registry.counter("kvc_test_total", "A test counter.").inc(3);
  HttpResponse m = run("GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(m.body.find("kvc_test_total 3\n"), std::string::npos);
}

TEST_F(KvRoutesTest, UnknownPathsAndMethods) {
  const struct {
    const char* method;
    const char* target;
    int status;
    const char* allow;
  } cases[] = {
      {"GET", "/nope", 404, nullptr},         {"GET", "/v1/kv/", 400, nullptr},
      {"GET", "/v1", 404, nullptr},           {"POST", "/v1/kv/k", 405, "GET, HEAD, PUT, DELETE"},
      {"PUT", "/v1/kv", 405, "GET, HEAD"},    {"DELETE", "/health", 405, "GET, HEAD"},
      {"POST", "/metrics", 405, "GET, HEAD"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + c.target);
    HttpResponse r = run(c.method, c.target);
    EXPECT_EQ(r.status, c.status) << r.body;
    if (c.allow != nullptr) {
      ASSERT_NE(header(r, "Allow"), nullptr);
      EXPECT_EQ(*header(r, "Allow"), c.allow);
    }
  }
  EXPECT_TRUE(backend_.calls.empty());
}

TEST_F(KvRoutesTest, AuthenticationComesFirstAndTheIdentityGoesWithEachRequest) {
  backend_.identity = "ctl";
  EXPECT_EQ(run("PUT", "/v1/kv/k", "v").status, 200);
  EXPECT_EQ(run("GET", "/v1/kv?prefix=k").status, 200);
  EXPECT_EQ(run("GET", "/v1/auth/whoami").status, 200);
  ASSERT_EQ(backend_.calls.size(), 3u);
  for (const wire::Request& q : backend_.calls) EXPECT_EQ(q.on_behalf_of, "ctl");
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kWhoami);

  backend_.authentication = Status::unauthenticated("authentication required: send a token");
  HttpResponse r = run("GET", "/v1/kv/k");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(error_code(r), "unauthenticated");
  ASSERT_NE(header(r, "WWW-Authenticate"), nullptr);
  EXPECT_EQ(*header(r, "WWW-Authenticate"), "Bearer");
  EXPECT_EQ(run("GET", "/health").status, 401);  // the backend decides which paths are open
  EXPECT_EQ(backend_.calls.size(), 3u);          // nothing reached the member

  backend_.authentication = Status();
  wire::Response denied;
  denied.code = Code::kPermissionDenied;
  denied.message = "permission denied: ctl may not put k";
  backend_.next_error = denied;
  r = run("PUT", "/v1/kv/k", "v");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(error_code(r), "permission_denied");
  EXPECT_NE(r.body.find("permission denied: ctl may not put k"), std::string::npos) << r.body;
}

TEST_F(KvRoutesTest, AnswersLaterWhenTheBackendDoes) {
  backend_.held_keys.insert("slow");
  std::optional<HttpResponse> got;
  routes_.handle(request("GET", "/v1/kv/slow"), [&got](HttpResponse r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value());
  backend_.release_all();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, 404);
}

// The server's side of a streaming answer, for tests without a connection: collects what the
// stream writes and counts an unsent backlog the test sets.
class CollectingSink final : public ResponseStream::Sink {
 public:
  void stream_write(std::string_view data) override { out += data; }
  void stream_end() override { ended = true; }
  std::size_t stream_unsent() const override { return unsent; }
  std::string take() { return std::exchange(out, std::string()); }

  std::string out;
  bool ended = false;
  std::size_t unsent = 0;
};

wire::Event put_event(std::string key, std::string value, std::uint64_t rev, std::uint64_t create,
                      std::uint64_t version) {
  return {wire::EventType::kPut, {std::move(key), std::move(value), create, rev, version}};
}
wire::Event delete_event(std::string key, std::uint64_t rev) {
  return {wire::EventType::kDelete, {std::move(key), "", 0, rev, 0}};
}

class WatchRouteTest : public KvRoutesTest {
 protected:
  // Starts a watch through the routes; the stream's output goes to sink_ from the start.
  HttpResponse start(std::string_view target, std::vector<std::string> extra_headers = {}) {
    std::string raw = "GET " + std::string(target) + " HTTP/1.1\r\nHost: kvc\r\n";
    for (const std::string& h : extra_headers) raw += h + "\r\n";
    raw += "\r\n";
    RequestParser p;
    p.feed(raw);
    KVC_CHECK(p.has_request(), "test request did not parse: " + raw);
    std::optional<HttpResponse> got;
    routes_.handle(p.take_request(), [&got](HttpResponse r) { got = std::move(r); });
    KVC_CHECK(got.has_value(), "the routes did not answer");
    if (got->stream) {
      bool ended = false;
      sink_.out += got->stream->attach(&sink_, &ended);
      sink_.ended = ended;
    }
    return *got;
  }
  WatchSink& sink(std::uint64_t handle = 1) { return *backend_.watches.at(handle).sink; }
  // The JSON messages of an ndjson output, keep-alive (empty) lines left out.
  static std::vector<JsonValue> lines(const std::string& out) {
    std::vector<JsonValue> v;
    std::size_t at = 0;
    while (at < out.size()) {
      const std::size_t nl = out.find('\n', at);
      KVC_CHECK(nl != std::string::npos, "unterminated line: " + out.substr(at));
      if (nl > at) v.push_back(*parse_json(out.substr(at, nl - at)));
      at = nl + 1;
    }
    return v;
  }

  CollectingSink sink_;
};

TEST_F(WatchRouteTest, StreamsNdjsonOneCompleteRevisionPerLine) {
  HttpResponse r = start("/v1/watch/svc%2F?prefix=true&start_revision=5");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_NE(r.stream, nullptr);
  EXPECT_EQ(r.content_type, "application/x-ndjson");
  EXPECT_EQ(r.stream_keepalive, "\n");
  ASSERT_NE(header(r, "Cache-Control"), nullptr);
  ASSERT_EQ(backend_.watches.size(), 1u);
  const wire::Request& q = backend_.watches.at(1).request;
  EXPECT_EQ(q.op, wire::Op::kWatch);
  EXPECT_EQ(q.key, "svc/");
  EXPECT_TRUE(q.prefix);
  EXPECT_EQ(q.start_revision, 5u);

  // Revision 6 is a prefix delete of two keys, split across two deliveries: nothing of it is
  // written until both have come (the position passed it).
  const std::vector<wire::Event> first = {put_event("svc/a", "1", 5, 5, 1),
                                          delete_event("svc/a", 6)};
  sink().deliver(first, {}, 6, 1);
  std::vector<JsonValue> got = lines(sink_.take());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].find("revision")->as_uint64(), 5u);
  const JsonValue& e = got[0].find("events")->array.at(0);
  EXPECT_EQ(e.find("type")->text, "put");
  EXPECT_EQ(e.find("key")->text, "svc/a");
  EXPECT_EQ(e.find("value")->text, "1");
  EXPECT_EQ(e.find("create_revision")->as_uint64(), 5u);
  EXPECT_EQ(e.find("mod_revision")->as_uint64(), 5u);
  EXPECT_EQ(e.find("version")->as_uint64(), 1u);

  sink().deliver({}, {}, 6, 1);  // a visit with nothing new changes nothing
  EXPECT_EQ(sink_.out, "");
  const std::vector<wire::Event> second = {delete_event("svc/b", 6),
                                           put_event("svc/\xff", "\x00\xfe"s, 7, 7, 1)};
  sink().deliver(second, {}, 8, 0);
  got = lines(sink_.take());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].find("revision")->as_uint64(), 6u);
  ASSERT_EQ(got[0].find("events")->array.size(), 2u);
  const JsonValue& d = got[0].find("events")->array[1];
  EXPECT_EQ(d.find("type")->text, "delete");
  EXPECT_EQ(d.find("key")->text, "svc/b");
  EXPECT_EQ(d.find("value"), nullptr);
  EXPECT_EQ(d.find("value_base64"), nullptr);
  EXPECT_EQ(d.find("mod_revision")->as_uint64(), 6u);
  // Bytes that are not UTF-8 come as base64, as in /v1/kv answers.
  const JsonValue& b = got[1].find("events")->array.at(0);
  EXPECT_EQ(*base64_decode(b.find("key_base64")->text), "svc/\xff");
  EXPECT_EQ(*base64_decode(b.find("value_base64")->text), "\x00\xfe"s);
}

TEST_F(WatchRouteTest, ServerSentEventsCarryTheRevisionAsTheirId) {
  HttpResponse r = start("/v1/watch/k", {"Accept: text/html, text/event-stream;q=0.9"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "text/event-stream");
  EXPECT_EQ(r.stream_keepalive, ": keep-alive\n\n");
  EXPECT_FALSE(backend_.watches.at(1).request.prefix);
  EXPECT_EQ(backend_.watches.at(1).request.start_revision, 0u);  // from now
  const std::vector<wire::Event> events = {put_event("k", "a", 3, 3, 1),
                                           put_event("k", "b", 4, 3, 2)};
  sink().deliver(events, {}, 5, 0);
  EXPECT_EQ(
      sink_.take(),
      "id: 3\ndata: {\"revision\":3,\"events\":[{\"type\":\"put\",\"key\":\"k\",\"value\":\"a\","
      "\"create_revision\":3,\"mod_revision\":3,\"version\":1}]}\n\n"
      "id: 4\ndata: {\"revision\":4,\"events\":[{\"type\":\"put\",\"key\":\"k\",\"value\":\"b\","
      "\"create_revision\":3,\"mod_revision\":4,\"version\":2}]}\n\n");
}

TEST_F(WatchRouteTest, PrevKvAddsTheKeyAsItWasBeforeEachEvent) {
  ASSERT_EQ(start("/v1/watch/k?prev_kv=true").status, 200);
  EXPECT_TRUE(backend_.watches.at(1).request.prev_kv);
  const std::vector<wire::Event> events = {put_event("k", "a", 3, 3, 1),
                                           put_event("k", "b", 4, 3, 2), delete_event("k", 5)};
  // The first put made the key (nothing before it: mod_revision 0).
  const std::vector<wire::KeyValue> prevs = {{}, {"k", "a", 3, 3, 1}, {"k", "b", 3, 4, 2}};
  sink().deliver(events, prevs, 6, 0);
  std::vector<JsonValue> got = lines(sink_.take());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].find("events")->array.at(0).find("prev_kv"), nullptr);
  const JsonValue* p = got[1].find("events")->array.at(0).find("prev_kv");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->find("value")->text, "a");
  EXPECT_EQ(p->find("mod_revision")->as_uint64(), 3u);
  p = got[2].find("events")->array.at(0).find("prev_kv");
  ASSERT_NE(p, nullptr);  // a delete says what it removed, whole
  EXPECT_EQ(p->find("key")->text, "k");
  EXPECT_EQ(p->find("value")->text, "b");
  EXPECT_EQ(p->find("create_revision")->as_uint64(), 3u);
  EXPECT_EQ(p->find("mod_revision")->as_uint64(), 4u);
  EXPECT_EQ(p->find("version")->as_uint64(), 2u);

  // Without it the request does not ask, and a bad value is a 400.
  ASSERT_EQ(start("/v1/watch/k").status, 200);
  EXPECT_FALSE(backend_.watches.at(2).request.prev_kv);
  HttpResponse bad = start("/v1/watch/k?prev_kv=maybe");
  EXPECT_EQ(bad.status, 400) << bad.body;
}

TEST_F(WatchRouteTest, LastEventIdResumesAfterIt) {
  // A reconnecting EventSource repeats its URL and names the last message it read.
  ASSERT_EQ(
      start("/v1/watch/k?start_revision=2", {"Accept: text/event-stream", "Last-Event-ID: 41"})
          .status,
      200);
  EXPECT_EQ(backend_.watches.at(1).request.start_revision, 42u);
  for (const char* bad :
       {"Last-Event-ID: x", "Last-Event-ID: -1", "Last-Event-ID: 18446744073709551615"}) {
    SCOPED_TRACE(bad);
    HttpResponse r = start("/v1/watch/k", {bad});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
  }
  EXPECT_EQ(backend_.watches.size(), 1u);
}

TEST_F(WatchRouteTest, BadRequestsAreRefusedBeforeAWatchStarts) {
  const struct {
    const char* method;
    const char* target;
    int status;
  } cases[] = {
      {"GET", "/v1/watch/", 400},                     // empty key, no prefix
      {"GET", "/v1/watch/k?start_revision=x", 400},   // not a number
      {"GET", "/v1/watch/k?start=3", 400},            // unknown parameter
      {"GET", "/v1/watch/k?prefix=maybe", 400},       // not a boolean
      {"GET", "/v1/watch/k?prefix=1&prefix=1", 400},  // repeated
      {"PUT", "/v1/watch/k", 405},
      {"POST", "/v1/leader", 405},
      {"GET", "/v1/leader?x=1", 400},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + c.target);
    HttpResponse r = run(c.method, c.target);
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_EQ(r.stream, nullptr);
  }
  EXPECT_TRUE(backend_.watches.empty());
  // An empty key with prefix=true watches every key.
  ASSERT_EQ(start("/v1/watch/?prefix=true").status, 200);
  EXPECT_EQ(backend_.watches.at(1).request.key, "");
  EXPECT_TRUE(backend_.watches.at(1).request.prefix);
}

TEST_F(WatchRouteTest, CompactedStartRevisionIsGoneAndNamesTheOldestRevision) {
  wire::Response compacted;
  compacted.code = Code::kFailedPrecondition;
  compacted.message = "revision 3 is compacted: the oldest available revision is 90";
  compacted.compact_revision = 90;
  backend_.next_watch_error = compacted;
  HttpResponse r = start("/v1/watch/k?start_revision=3");
  EXPECT_EQ(r.status, 410) << r.body;
  EXPECT_EQ(r.stream, nullptr);
  EXPECT_EQ(error_code(r), "failed_precondition");
  EXPECT_EQ(body(r).find("error")->find("compact_revision")->as_uint64(), 90u);
  // Other refusals keep the usual mapping.
  wire::Response stopping;
  stopping.code = Code::kShuttingDown;
  stopping.message = "member shutting down";
  backend_.next_watch_error = stopping;
  EXPECT_EQ(start("/v1/watch/k").status, 503);
}

TEST_F(WatchRouteTest, AnErrorEndsTheStreamWithAFinalErrorMessage) {
  for (const bool sse : {false, true}) {
    SCOPED_TRACE(sse ? "sse" : "ndjson");
    sink_ = CollectingSink();
    backend_.watches.clear();
    HttpResponse r =
        sse ? start("/v1/watch/k", {"Accept: text/event-stream"}) : start("/v1/watch/k");
    ASSERT_EQ(r.status, 200);
    wire::Response why;
    why.code = Code::kFailedPrecondition;
    why.message = "fell behind the history";
    why.compact_revision = 77;
    sink(backend_.watch_seq).end(why);
    EXPECT_TRUE(sink_.ended);
    const std::string msg =
        R"({"error":{"code":"failed_precondition","message":"fell behind the history","compact_revision":77}})";
    EXPECT_EQ(sink_.take(), sse ? "event: error\ndata: " + msg + "\n\n" : msg + "\n");
    EXPECT_TRUE(r.stream->closed());
  }
}

TEST_F(WatchRouteTest, AFullStreamHoldsDeliveryAndItsCloseCancelsTheWatch) {
  HttpResponse r = start("/v1/watch/k");
  ASSERT_EQ(r.status, 200);
  // Held here too: the fake drops its own reference when the watch is cancelled.
  std::shared_ptr<WatchSink> s = backend_.watches.at(1).sink;
  EXPECT_FALSE(s->full());
  sink_.unsent = (4u << 20) + 1;  // the reader left more than 4 MiB unread
  EXPECT_TRUE(s->full());
  sink_.unsent = 0;
  EXPECT_FALSE(s->closed());
  EXPECT_TRUE(backend_.cancelled.empty());
  r.stream->abandon();  // the connection closed
  EXPECT_TRUE(s->closed());
  EXPECT_EQ(backend_.cancelled, std::vector<std::uint64_t>{1});
}

TEST_F(WatchRouteTest, LeaderNamesTheLeaderAndThisMember) {
  backend_.leader_with_http = 0x22;
  backend_.leader_http_address = "127.0.0.1:8080";
  HttpResponse r = run("GET", "/v1/leader");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body,
            R"({"leader":{"id":"0000000000000022","name":"n2","client_addr":"127.0.0.1:2379",)"
            R"("http_addr":"127.0.0.1:8080"},"member_id":"0000000000000011"})"
            "\n");
  backend_.leader_with_http = 0;  // the HTTP address is left out when unknown
  EXPECT_EQ(body(run("GET", "/v1/leader")).find("leader")->find("http_addr"), nullptr);
  backend_.leader_id = 0;
  HttpResponse none = run("GET", "/v1/leader");
  EXPECT_EQ(none.status, 503) << none.body;
  EXPECT_EQ(error_code(none), "unavailable");
  EXPECT_NE(header(none, "Retry-After"), nullptr);
}

// Leases and txns (/v1/lease*, /v1/txn, and the lease and expect_revision forms of /v1/kv).
class CoordinationRouteTest : public KvRoutesTest {
 protected:
  std::string grant(std::string_view body) {
    HttpResponse r = run("POST", "/v1/lease/grant", body);
    EXPECT_EQ(r.status, 200) << r.body;
    const JsonValue v = this->body(r);
    const JsonValue* id = v.find("lease");
    return id != nullptr ? id->text : "";
  }
};

TEST_F(CoordinationRouteTest, LeaseGrantAttachTtlKeepAliveListAndRevoke) {
  HttpResponse g = run("POST", "/v1/lease/grant", R"({"ttl":30})");
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseGrant);
  EXPECT_EQ(backend_.calls.back().ttl, 30u);
  EXPECT_EQ(backend_.calls.back().lease, 0u);  // the leader picks
  const JsonValue gv = body(g);
  const std::string id = gv.find("lease")->text;
  EXPECT_EQ(id.size(), 16u) << g.body;
  EXPECT_EQ(gv.find("ttl")->as_uint64(), 30u);
  EXPECT_EQ(gv.find("revision")->as_uint64(), backend_.revision);
  // A caller may choose the id (what the docs' runnable examples do); twice is a conflict.
  EXPECT_EQ(grant(R"({"ttl":5,"lease":"1234abcd"})"), "000000001234abcd");
  EXPECT_EQ(backend_.calls.back().lease, 0x1234abcdu);
  HttpResponse again = run("POST", "/v1/lease/grant", R"({"lease":"1234abcd","ttl":5})");
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(error_code(again), "already_exists");

  // put ?lease= attaches; the key's JSON names its lease.
  ASSERT_EQ(run("PUT", "/v1/kv/svc%2Fa?lease=" + id, "x").status, 200);
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kPut);
  EXPECT_EQ(backend_.calls.back().lease, *parse_hex_u64(id));
  ASSERT_EQ(run("PUT", "/v1/kv/plain", "y").status, 200);
  EXPECT_EQ(body(run("GET", "/v1/kv/svc/a")).find("kv")->find("lease")->text, id);
  EXPECT_EQ(body(run("GET", "/v1/kv/plain")).find("kv")->find("lease"), nullptr);

  HttpResponse ttl = run("GET", "/v1/lease/" + id + "?keys=true");
  ASSERT_EQ(ttl.status, 200) << ttl.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseTtl);
  EXPECT_TRUE(backend_.calls.back().keys_only);
  EXPECT_EQ(ttl.body, R"({"lease":")" + id +
                          R"(","ttl":30,"remaining_ms":27000,"keys":[{"key":"svc/a"}]})"
                          "\n");
  HttpResponse bare = run("GET", "/v1/lease/" + id);
  EXPECT_FALSE(backend_.calls.back().keys_only);
  EXPECT_EQ(body(bare).find("keys"), nullptr) << bare.body;

  HttpResponse ka = run("POST", "/v1/lease/keepalive", R"({"lease":")" + id + R"("})");
  ASSERT_EQ(ka.status, 200) << ka.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseKeepAlive);
  EXPECT_EQ(ka.body, R"({"lease":")" + id +
                         R"(","ttl":30})"
                         "\n");

  HttpResponse list = run("GET", "/v1/lease");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseList);
  const JsonValue lv = body(list);
  ASSERT_EQ(lv.find("leases")->array.size(), 2u) << list.body;
  for (const JsonValue& l : lv.find("leases")->array) {
    EXPECT_EQ(l.find("lease")->text.size(), 16u);
    EXPECT_NE(l.find("ttl"), nullptr);
    EXPECT_NE(l.find("remaining_ms"), nullptr);
  }

  // Revoking deletes the lease's keys; both forms.
  HttpResponse rv = run("POST", "/v1/lease/revoke", R"({"lease":")" + id + R"("})");
  ASSERT_EQ(rv.status, 200) << rv.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseRevoke);
  EXPECT_EQ(body(rv).find("deleted")->as_uint64(), 1u);
  EXPECT_EQ(body(rv).find("revision")->as_uint64(), backend_.revision);
  EXPECT_EQ(run("GET", "/v1/kv/svc/a").status, 404);
  EXPECT_EQ(run("GET", "/v1/kv/plain").status, 200);
  HttpResponse del = run("DELETE", "/v1/lease/1234abcd");
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kLeaseRevoke);
  EXPECT_EQ(body(del).find("deleted")->as_uint64(), 0u);

  // Gone: every lease route answers 404.
  EXPECT_EQ(error_code(run("GET", "/v1/lease/" + id)), "not_found");
  EXPECT_EQ(run("GET", "/v1/lease/" + id).status, 404);
  EXPECT_EQ(run("POST", "/v1/lease/keepalive", R"({"lease":")" + id + R"("})").status, 404);
  EXPECT_EQ(run("DELETE", "/v1/lease/" + id).status, 404);
  EXPECT_EQ(run("PUT", "/v1/kv/k?lease=" + id, "v").status, 404);
  EXPECT_EQ(body(run("GET", "/v1/lease")).find("leases")->array.size(), 0u);
}

TEST_F(CoordinationRouteTest, MalformedLeaseRequestsAreRefusedBeforeTheBackend) {
  const struct {
    const char* method;
    const char* target;
    const char* body;
  } bad[] = {
      {"POST", "/v1/lease/grant", ""},
      {"POST", "/v1/lease/grant", "{"},
      {"POST", "/v1/lease/grant", "[]"},
      {"POST", "/v1/lease/grant", "{}"},
      {"POST", "/v1/lease/grant", R"({"ttl":0})"},
      {"POST", "/v1/lease/grant", R"({"ttl":-1})"},
      {"POST", "/v1/lease/grant", R"({"ttl":1.5})"},
      {"POST", "/v1/lease/grant", R"({"ttl":"5"})"},
      {"POST", "/v1/lease/grant", R"({"ttl":5,"tll":5})"},
      {"POST", "/v1/lease/grant", R"({"ttl":5,"ttl":6})"},
      {"POST", "/v1/lease/grant", R"({"ttl":5,"lease":"xyz"})"},
      {"POST", "/v1/lease/grant", R"({"ttl":5,"lease":5})"},
      {"POST", "/v1/lease/grant?ttl=5", R"({"ttl":5})"},
      {"POST", "/v1/lease/revoke", "{}"},
      {"POST", "/v1/lease/revoke", R"({"lease":"0"})"},
      {"POST", "/v1/lease/revoke", R"({"lease":"12345678901234567"})"},
      {"POST", "/v1/lease/keepalive", R"({"lease":"g"})"},
      {"POST", "/v1/lease/keepalive", R"({"lease":"1","ttl":5})"},
      {"GET", "/v1/lease/zz", ""},
      {"GET", "/v1/lease/", ""},
      {"GET", "/v1/lease/1?keys=maybe", ""},
      {"GET", "/v1/lease/1?key=true", ""},
      {"DELETE", "/v1/lease/1?keys=true", ""},
      {"GET", "/v1/lease?limit=1", ""},
      {"PUT", "/v1/kv/k?lease=", ""},
      {"PUT", "/v1/kv/k?lease=0", ""},
      {"PUT", "/v1/kv/k?lease=nothex", ""},
      {"PUT", "/v1/kv/k?lease=1&lease=2", ""},
  };
  for (const auto& c : bad) {
    SCOPED_TRACE(std::string(c.method) + " " + c.target + " " + c.body);
    HttpResponse r = run(c.method, c.target, c.body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
  }
  EXPECT_TRUE(backend_.calls.empty()) << "nothing reached the backend";

  const struct {
    const char* method;
    const char* target;
    const char* allow;
  } methods[] = {
      {"GET", "/v1/lease/grant", "POST"},
      {"DELETE", "/v1/lease/revoke", "POST"},
      {"PUT", "/v1/lease/keepalive", "POST"},
      {"POST", "/v1/lease", "GET, HEAD"},
      {"PUT", "/v1/lease/1", "GET, HEAD, DELETE"},
      {"GET", "/v1/txn", "POST"},
      {"PUT", "/v1/txn", "POST"},
  };
  for (const auto& m : methods) {
    SCOPED_TRACE(std::string(m.method) + " " + m.target);
    HttpResponse r = run(m.method, m.target);
    EXPECT_EQ(r.status, 405) << r.body;
    ASSERT_NE(header(r, "Allow"), nullptr);
    EXPECT_EQ(*header(r, "Allow"), m.allow);
  }
}

TEST_F(CoordinationRouteTest, ConditionalPutWithALeaseIsOneCas) {
  const std::string id = grant(R"({"ttl":10})");
  HttpResponse r = run("PUT", "/v1/kv/lock?expect_revision=0&lease=" + id, "me");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kCas);
  EXPECT_EQ(backend_.calls.back().expect_revision, 0u);
  EXPECT_EQ(backend_.calls.back().lease, *parse_hex_u64(id));
}

TEST_F(CoordinationRouteTest, DeleteWithExpectRevisionIsCompareAndDelete) {
  ASSERT_EQ(run("PUT", "/v1/kv/d", "v").status, 200);
  const std::uint64_t rev = backend_.kvs["d"].mod_revision;
  HttpResponse stale = run("DELETE", "/v1/kv/d?expect_revision=" + std::to_string(rev + 5));
  EXPECT_EQ(stale.status, 409) << stale.body;
  EXPECT_EQ(error_code(stale), "compare_failed");
  EXPECT_EQ(body(stale).find("error")->find("mod_revision")->as_uint64(), rev);
  EXPECT_EQ(backend_.calls.back().op, wire::Op::kDelete);
  EXPECT_EQ(backend_.calls.back().expect_revision, rev + 5);
  EXPECT_EQ(backend_.kvs.count("d"), 1u);

  for (const char* bad : {"0", "abc", "", "-1", "1&expect_revision=2"}) {
    SCOPED_TRACE(bad);
    HttpResponse r = run("DELETE", std::string("/v1/kv/d?expect_revision=") + bad);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
  }
  EXPECT_EQ(run("DELETE", "/v1/kv/d?expected_revision=1").status, 400);
  EXPECT_EQ(backend_.kvs.count("d"), 1u);

  HttpResponse ok = run("DELETE", "/v1/kv/d?expect_revision=" + std::to_string(rev));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(body(ok).find("deleted")->as_uint64(), 1u);
  EXPECT_EQ(backend_.kvs.count("d"), 0u);
  // A key that is gone: the compare fails, naming mod revision 0.
  HttpResponse gone = run("DELETE", "/v1/kv/d?expect_revision=" + std::to_string(rev));
  EXPECT_EQ(gone.status, 409) << gone.body;
  EXPECT_EQ(body(gone).find("error")->find("mod_revision")->as_uint64(), 0u);
}

TEST_F(CoordinationRouteTest, TxnTakesKvcCtlsJsonAndAnswersEachOpsResult) {
  ASSERT_EQ(run("PUT", "/v1/kv/cfg", "v1").status, 200);
  const std::string txn =
      R"({"compares":[{"target":"value","key":"cfg","op":"=","value":"v1"}],)"
      R"("success":[{"op":"put","key":"cfg","value":"v2"},{"op":"get","key":"cfg"},)"
      R"({"op":"del","key":"nothing"},{"op":"put","key_base64":"AP8=","value_base64":"AAE="}],)"
      R"("failure":[{"op":"get","key":"cfg"}]})";
  HttpResponse r = run("POST", "/v1/txn", txn);
  ASSERT_EQ(r.status, 200) << r.body;
  // The request is what the one parser (kvc-ctl txn --json's) makes of the body.
  Result<TxnSpec> spec = parse_txn_json(txn);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  const wire::Request& q = backend_.calls.back();
  EXPECT_EQ(q.op, wire::Op::kTxn);
  EXPECT_EQ(q.compares, spec->compares);
  EXPECT_EQ(q.then_ops, spec->then_ops);
  EXPECT_EQ(q.else_ops, spec->else_ops);
  ASSERT_EQ(q.then_ops.size(), 4u);
  EXPECT_EQ(q.then_ops[3].key, "\0\xff"s);
  EXPECT_EQ(q.then_ops[3].value, "\0\1"s);

  const std::uint64_t rev = backend_.revision;
  EXPECT_EQ(r.body, R"({"succeeded":true,"revision":)" + std::to_string(rev) +
                        R"(,"results":[{"op":"put","revision":)" + std::to_string(rev) +
                        R"(},{"op":"get","kvs":[{"key":"cfg","value":"v2","create_revision":1,)"
                        R"("mod_revision":)" +
                        std::to_string(rev) +
                        R"(,"version":2}],"more":false},{"op":"delete","deleted":0},)"
                        R"({"op":"put","revision":)" +
                        std::to_string(rev) + "}]}\n");
  EXPECT_EQ(backend_.kvs["\0\xff"s].value, "\0\1"s);

  // The compare no longer holds: the failure branch runs, and the answer says so (still 200).
  HttpResponse f = run("POST", "/v1/txn", txn);
  ASSERT_EQ(f.status, 200) << f.body;
  const JsonValue fv = body(f);
  EXPECT_FALSE(fv.find("succeeded")->boolean);
  ASSERT_EQ(fv.find("results")->array.size(), 1u);
  const JsonValue& got = fv.find("results")->array[0];
  EXPECT_EQ(got.find("op")->text, "get");
  EXPECT_EQ(value_of(got.find("kvs")->array.at(0)), "v2");
  // An empty txn is a txn.
  EXPECT_EQ(run("POST", "/v1/txn", "{}").status, 200);
}

TEST_F(CoordinationRouteTest, TxnRefusalsAndLimits) {
  const char* bad[] = {
      "",
      "{",
      "[]",
      R"({"compare":[]})",
      R"({"compares":{}})",
      R"({"compares":[{"key":"k","op":"=","value":"1"}]})",
      R"({"compares":[{"target":"mod","key":"k","op":"~","value":"1"}]})",
      R"({"compares":[{"target":"mod","key":"k","op":"=","value":"x"}]})",
      R"({"success":[{"op":"put","key":"k"}]})",
      R"({"success":[{"op":"rename","key":"k"}]})",
      R"({"success":[{"op":"put","key":"k","value":"v","lease":"zz"}]})",
      R"({"success":[{"op":"get","key_base64":"***"}]})",
      R"({"failure":[{"op":"get","key":"k","limit":-1}]})",
  };
  for (const char* b : bad) {
    SCOPED_TRACE(b);
    HttpResponse r = run("POST", "/v1/txn", b);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(error_code(r), "invalid_argument");
    EXPECT_TRUE(body(r).find("error")->find("message")->text.starts_with("txn: ")) << r.body;
  }
  EXPECT_EQ(run("POST", "/v1/txn?dry_run=1", "{}").status, 400);
  EXPECT_TRUE(backend_.calls.empty()) << "nothing reached the backend";

  // --max-request-bytes (1024 here) counts every key and value, as the member does: 413.
  const std::string big = R"({"success":[{"op":"put","key":"k","value":")" +
                          std::string(1020, 'x') + R"("},{"op":"get","key":"abcd"}]})";
  HttpResponse r = run("POST", "/v1/txn", big);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_TRUE(backend_.calls.empty());
  // --max-txn-ops is the member's: its refusal is a 400.
  backend_.max_txn_ops = 2;
  HttpResponse many = run("POST", "/v1/txn",
                          R"({"success":[{"op":"get","key":"a"},{"op":"get","key":"b"},)"
                          R"({"op":"get","key":"c"}]})");
  EXPECT_EQ(many.status, 400) << many.body;
  EXPECT_EQ(error_code(many), "invalid_argument");
  // Not the leader, and no way to reach it: 503 naming the leader, as for /v1/kv.
  wire::Response e;
  e.code = Code::kNotLeader;
  e.message = "member n2 is not the leader";
  e.leader_id = 0xabc;
  e.leader_client_addr = "127.0.0.1:2379";
  backend_.next_error = e;
  HttpResponse nl = run("POST", "/v1/txn", "{}");
  EXPECT_EQ(nl.status, 503) << nl.body;
  EXPECT_EQ(error_code(nl), "not_leader");
  EXPECT_NE(header(nl, "X-Kvc-Leader-Id"), nullptr);
  backend_.next_error = e;
  EXPECT_EQ(run("GET", "/v1/lease").status, 503);
}

}  // namespace
}  // namespace kvc::http
