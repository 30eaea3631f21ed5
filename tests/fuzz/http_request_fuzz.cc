// Fuzz target for the HTTP request path without sockets: the bytes are what a client sends on
// one connection, fed to RequestParser in pieces (the first byte picks the piece size), and
// every request it yields goes through KvRoutes to an in-memory backend and is formatted as the
// server would answer it (JSON bodies reach the JSON reader that way). Whatever the bytes, this
// must end in requests and at most one refusal, never a crash, a hang or a sanitizer report, and
// what comes out must respect the limits.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "fake_backend.h"
#include "kvc/http/json.h"
#include "kvc/http/kv_routes.h"
#include "kvc/http/parser.h"
#include "kvc/http/server.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

// Small limits, so that inputs of fuzzer size reach every limit.
constexpr kvc::http::ParserLimits kLimits{
    .max_target_bytes = 512, .max_header_bytes = 2048, .max_headers = 16, .max_body_bytes = 4096};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::http;
  if (size == 0) return 0;
  const std::size_t piece = data[0] == 0 ? size : data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  testing::FakeBackend backend;
  KvRoutes routes(backend,
                  {.max_request_bytes = 2048, .default_list_limit = 10, .max_list_limit = 100});
  RequestParser parser(kLimits);
  std::size_t fed = 0;  // bytes offered so far (pieces arrive one by one)
  std::size_t off = 0;  // bytes consumed
  for (int guard = 0; guard < 1'000'000; ++guard) {
    if (off == fed) {
      if (fed == input.size()) break;
      fed = std::min(input.size(), fed + piece);
    }
    const std::size_t n = parser.feed(input.substr(off, fed - off));
    require(n <= fed - off);
    off += n;
    (void)parser.take_expect_continue();
    if (parser.failed()) break;
    if (parser.has_request()) {
      const HttpRequest r = parser.take_request();
      require(r.target.size() <= kLimits.max_target_bytes);
      require(r.headers.size() <= kLimits.max_headers);
      require(r.body.size() <= kLimits.max_body_bytes);
      require(!r.path.empty() && r.path[0] == '/');
      (void)parse_json(r.body);
      int answers = 0;
      routes.handle(r, [&](HttpResponse resp) {
        ++answers;
        require(resp.status >= 200 && resp.status <= 599);
        const std::string bytes = format_response(resp, r.method == Method::kHead, !r.keep_alive);
        require(bytes.starts_with("HTTP/1.1 "));
      });
      require(answers == 1);  // the in-memory backend answers at once
      continue;
    }
    require(off == fed || n > 0);  // without a request, it consumes all or makes progress
  }
  if (!parser.failed()) parser.finish();
  if (parser.failed()) {
    const int s = parser.error().status;
    require(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505);
    require(!parser.error().reason.empty());
    require(parser.feed(input.substr(off)) == 0);
    require(!parser.has_request());
  }
  return 0;
}
