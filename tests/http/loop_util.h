// Test helpers for code on a libuv loop, all driven by the test's own loop on the test thread
// (no threads, no sleeps): running the loop until a condition holds (bounded in time), running
// a child process such as curl with its output captured (killed by its pid if it overruns), a raw
// TCP client for byte-level input, and a reader of HTTP/1.1 responses.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/net/address.h"

namespace kvc::http::testing {

// A loop with a deadline timer; every wait is bounded.
class TestLoop {
 public:
  TestLoop();
  // Closes every handle still open and the loop; returns false when some were left open.
  ~TestLoop();
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  std::uint64_t now() { return uv_now(&loop_); }

  // Runs the loop until `done()` or `timeout_ms` pass; returns done().
  template <typename Pred>
  bool run_until(Pred done, std::uint64_t timeout_ms = 10'000) {
    arm(timeout_ms);
    for (int i = 0; i < 10'000'000 && !done() && !expired_; ++i) uv_run(&loop_, UV_RUN_ONCE);
    disarm();
    return done();
  }
  // Runs what is ready now without waiting (a few passes), e.g. to show nothing else happens.
  void run_ready() {
    for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  }
  // Closes every open handle and runs the loop until they are closed.
  void drain();

 private:
  void arm(std::uint64_t timeout_ms);
  void disarm();

  uv_loop_t loop_{};
  uv_timer_t deadline_{};
  bool expired_ = false;
};

struct ProcessResult {
  std::int64_t exit_status = -1;
  int term_signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
};
// Runs `argv` (argv[0] found through PATH) with stdin closed, capturing stdout and stderr, while
// the loop keeps serving; a child still running after `timeout_ms` is killed (SIGKILL by pid).
ProcessResult run_process(TestLoop& loop, const std::vector<std::string>& argv,
                          std::uint64_t timeout_ms = 15'000);

// A raw TCP client on the loop: connect, write bytes, collect everything the server sends.
class RawClient {
 public:
  // `read` false: never reads. `small_window`: the smallest receive buffer the kernel allows
  // (always so without reading), so that a client that stops reading (stop_reading) soon
  // pushes back on the server.
  RawClient(TestLoop& loop, const net::Address& to, bool read = true, bool small_window = false);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const;
  void send(std::string bytes);
  void shutdown_write();
  // Stops reading from the socket (what the server sends then waits in the kernel's buffers).
  void stop_reading();
  void close();

  const std::string& received() const;
  bool peer_closed() const;              // EOF or error from the server side
  std::uint64_t peer_closed_at() const;  // loop time (ms)

 private:
  struct State;
  std::shared_ptr<State> s_;  // shared with libuv callbacks until the handle closes
};

struct HttpAnswer {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  const std::string* header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? nullptr : &it->second;
  }
};
// Splits bytes into HTTP/1.1 responses (bodies by Content-Length; no body for answers to HEAD
// when `head`); interim 1xx answers are kept. Fails on anything it cannot read, and reports
// trailing bytes of an incomplete response through `rest`.
std::vector<HttpAnswer> parse_answers(std::string_view bytes, bool head = false,
                                      std::string* rest = nullptr);

}  // namespace kvc::http::testing
