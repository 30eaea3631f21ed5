#include "loop_util.h"

#include <cctype>
#include <csignal>
#include <cstdlib>

#include "kvc/common/check.h"

namespace kvc::http::testing {

TestLoop::TestLoop() {
  KVC_CHECK(uv_loop_init(&loop_) == 0, "uv_loop_init");
  uv_timer_init(&loop_, &deadline_);
  deadline_.data = this;
}

TestLoop::~TestLoop() {
  drain();
  const int rc = uv_loop_close(&loop_);
  KVC_CHECK(rc == 0, "test loop closed with handles still open");
}

void TestLoop::arm(std::uint64_t timeout_ms) {
  expired_ = false;
  uv_timer_start(
      &deadline_, [](uv_timer_t* t) { static_cast<TestLoop*>(t->data)->expired_ = true; },
      timeout_ms, 0);
}

void TestLoop::disarm() { uv_timer_stop(&deadline_); }

void TestLoop::drain() {
  // Let handles that are closing finish, then close whatever is left.
  for (int i = 0; i < 1000 && uv_loop_alive(&loop_) != 0; ++i) {
    if (uv_run(&loop_, UV_RUN_NOWAIT) == 0) break;
    if (i > 100) break;
  }
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (uv_is_closing(h) == 0) uv_close(h, nullptr);
      },
      nullptr);
  for (int i = 0; i < 1000 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

struct Child {
  uv_process_t proc{};
  uv_pipe_t out{};
  uv_pipe_t err{};
  int open = 0;
  bool exited = false;
  ProcessResult result;
  char buf[64 << 10];

  static void closed(uv_handle_t* h) { --static_cast<Child*>(h->data)->open; }
  void read(uv_pipe_t* pipe) {
    pipe->data = this;
    // Which pipe the bytes came from decides where they go.
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(pipe),
        [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
          auto* c = static_cast<Child*>(h->data);
          *b = uv_buf_init(c->buf, sizeof c->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* c = static_cast<Child*>(s->data);
          std::string& target =
              s == reinterpret_cast<uv_stream_t*>(&c->out) ? c->result.out : c->result.err;
          if (n > 0) {
            target.append(b->base, static_cast<std::size_t>(n));
            return;
          }
          if (n < 0) {
            uv_read_stop(s);
            uv_close(reinterpret_cast<uv_handle_t*>(s), &Child::closed);
          }
        });
  }
};

}  // namespace

ProcessResult run_process(TestLoop& loop, const std::vector<std::string>& argv,
                          std::uint64_t timeout_ms) {
  auto child = std::make_unique<Child>();
  Child* c = child.get();
  uv_pipe_init(loop.get(), &c->out, 0);
  uv_pipe_init(loop.get(), &c->err, 0);
  c->out.data = c;
  c->err.data = c;
  c->proc.data = c;
  c->open = 3;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&c->out);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&c->err);
  uv_process_options_t opts{};
  opts.file = args[0];
  opts.args = args.data();
  opts.stdio_count = 3;
  opts.stdio = stdio;
  opts.exit_cb = [](uv_process_t* p, std::int64_t status, int sig) {
    auto* ch = static_cast<Child*>(p->data);
    ch->exited = true;
    ch->result.exit_status = status;
    ch->result.term_signal = sig;
    uv_close(reinterpret_cast<uv_handle_t*>(p), &Child::closed);
  };
  const int rc = uv_spawn(loop.get(), &c->proc, &opts);
  if (rc != 0) {
    c->result.err = std::string("spawn ") + argv[0] + ": " + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->proc), &Child::closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->out), &Child::closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->err), &Child::closed);
    loop.run_until([c] { return c->open == 0; }, 5000);
    return c->result;
  }
  c->read(&c->out);
  c->read(&c->err);
  if (!loop.run_until([c] { return c->open == 0; }, timeout_ms)) {
    c->result.timed_out = true;
    if (!c->exited) uv_process_kill(&c->proc, SIGKILL);
    loop.run_until([c] { return c->open == 0; }, 5000);
  }
  ProcessResult r = c->result;
  if (c->open != 0) {
    (void)child.release();  // libuv still holds it; leak rather than free memory in use
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

struct RawClient::State {
  uv_tcp_t tcp{};
  uv_connect_t connect_req{};
  uv_shutdown_t shutdown_req{};
  bool connected = false;
  bool failed = false;
  bool peer_closed = false;
  bool closing = false;
  bool read = true;
  std::uint64_t peer_closed_at = 0;
  std::string received;
  char buf[64 << 10];
  std::shared_ptr<State> self;  // held while the handle is open

  void start_reading() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
          auto* s = static_cast<State*>(h->data);
          *b = uv_buf_init(s->buf, sizeof s->buf);
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          auto* s = static_cast<State*>(st->data);
          if (n > 0) {
            s->received.append(b->base, static_cast<std::size_t>(n));
            return;
          }
          if (n < 0) {
            s->peer_closed = true;
            s->peer_closed_at = uv_now(st->loop);
            uv_read_stop(st);
          }
        });
  }
};

RawClient::RawClient(TestLoop& loop, const net::Address& to, bool read, bool small_window)
    : s_(std::make_shared<State>()) {
  s_->self = s_;
  s_->read = read;
  sockaddr_storage ss{};
  KVC_CHECK(net::to_sockaddr(to, &ss).ok(), "bad address");
  KVC_CHECK(uv_tcp_init_ex(loop.get(), &s_->tcp, ss.ss_family) == 0, "socket");
  if (!read || small_window) {
    // A client that never reads gets the smallest receive buffer the kernel allows, set before
    // the connection exists so its window never grows: what the server can hand to the kernel
    // is then bounded by its own send buffer, whatever tcp_rmem allows (32 MiB on Debian).
    int small = 4096;
    KVC_CHECK(uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(&s_->tcp), &small) == 0,
              "SO_RCVBUF");
  }
  s_->tcp.data = s_.get();
  s_->connect_req.data = s_.get();
  const int rc = uv_tcp_connect(&s_->connect_req, &s_->tcp, reinterpret_cast<sockaddr*>(&ss),
                                [](uv_connect_t* req, int status) {
                                  auto* s = static_cast<State*>(req->data);
                                  if (status != 0) {
                                    s->failed = true;
                                    return;
                                  }
                                  s->connected = true;
                                  if (s->read) s->start_reading();
                                });
  if (rc != 0) s_->failed = true;
  State* s = s_.get();
  loop.run_until([s] { return s->connected || s->failed; }, 5000);
}

RawClient::~RawClient() { close(); }

bool RawClient::connected() const { return s_->connected; }

void RawClient::stop_reading() {
  if (s_->connected && !s_->closing) uv_read_stop(reinterpret_cast<uv_stream_t*>(&s_->tcp));
}

void RawClient::send(std::string bytes) {
  if (!s_->connected || s_->closing) return;
  struct Write {
    uv_write_t req{};
    std::string data;
    std::shared_ptr<State> hold;
  };
  auto* w = new Write();  // freed in the write callback
  w->data = std::move(bytes);
  w->hold = s_;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&s_->tcp), &buf, 1,
                          [](uv_write_t* req, int) { delete static_cast<Write*>(req->data); });
  if (rc != 0) delete w;
}

void RawClient::shutdown_write() {
  if (!s_->connected || s_->closing) return;
  s_->shutdown_req.data = s_.get();
  uv_shutdown(&s_->shutdown_req, reinterpret_cast<uv_stream_t*>(&s_->tcp),
              [](uv_shutdown_t*, int) {});
}

void RawClient::close() {
  if (s_->closing) return;
  s_->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&s_->tcp), [](uv_handle_t* h) {
    auto* s = static_cast<State*>(h->data);
    std::shared_ptr<State> last = std::move(s->self);
  });
}

const std::string& RawClient::received() const { return s_->received; }
bool RawClient::peer_closed() const { return s_->peer_closed; }
std::uint64_t RawClient::peer_closed_at() const { return s_->peer_closed_at; }

// ---------------------------------------------------------------------------------------------

std::vector<HttpAnswer> parse_answers(std::string_view bytes, bool head, std::string* rest) {
  std::vector<HttpAnswer> out;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const std::size_t end = bytes.find("\r\n\r\n", pos);
    if (end == std::string_view::npos) break;
    const std::string_view head_block = bytes.substr(pos, end - pos);
    HttpAnswer a;
    const std::size_t line_end = head_block.find("\r\n");
    const std::string_view status_line = head_block.substr(0, line_end);
    KVC_CHECK(status_line.starts_with("HTTP/1.1 ") && status_line.size() >= 12,
              "bad status line: " + std::string(status_line));
    a.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
    std::size_t hp = line_end == std::string_view::npos ? head_block.size() : line_end + 2;
    while (hp < head_block.size()) {
      std::size_t e = head_block.find("\r\n", hp);
      if (e == std::string_view::npos) e = head_block.size();
      const std::string_view h = head_block.substr(hp, e - hp);
      const std::size_t colon = h.find(':');
      KVC_CHECK(colon != std::string_view::npos, "bad header line: " + std::string(h));
      std::string name(h.substr(0, colon));
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string_view value = h.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      KVC_CHECK(a.headers.count(name) == 0, "repeated header " + name);
      a.headers[name] = std::string(value);
      hp = e + 2;
    }
    std::size_t body_len = 0;
    if (a.status >= 200 && !head) {
      const std::string* cl = a.header("content-length");
      KVC_CHECK(cl != nullptr, "a final answer without Content-Length");
      body_len = static_cast<std::size_t>(std::strtoull(cl->c_str(), nullptr, 10));
    }
    if (end + 4 + body_len > bytes.size()) break;
    a.body = std::string(bytes.substr(end + 4, body_len));
    pos = end + 4 + body_len;
    out.push_back(std::move(a));
  }
  if (rest != nullptr) *rest = std::string(bytes.substr(pos));
  return out;
}

}  // namespace kvc::http::testing
