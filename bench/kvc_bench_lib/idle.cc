#include "idle.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "kvc/common/version.h"
#include "kvc/wire/frame.h"
#include "kvc/wire/handshake.h"
#include "kvc/wire/messages.h"

namespace kvc::bench {
namespace {

constexpr int kMaxFailuresInARow = 16;

Status write_all(int fd, std::string_view data, const std::string& where) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Status::unavailable("sending the hello to " + where + ": " +
                                 std::strerror(n < 0 ? errno : EPIPE));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status();
}

// One idle connection: connect, hello, the member's reply. Returns
// the open socket, or kFailedPrecondition/the member's code for a refusal (`*refused` set), or
// another error.
Result<int> open_one(const net::Address& a, std::uint64_t timeout_ms, bool* refused) {
  *refused = false;
  const std::string where = a.to_string();
  sockaddr_storage ss{};
  KVC_RETURN_IF_ERROR(net::to_sockaddr(a, &ss));
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::from_errno("socket", errno);
  auto fail = [fd](Status s) -> Result<int> {
    ::close(fd);
    return s;
  };
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_ms % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
  const socklen_t len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return fail(Status::unavailable("connect to " + where + ": " + std::strerror(errno)));
  }
  wire::DialerHandshake handshake(
      {.role = wire::Role::kClient, .name = "kvc-bench-idle", .software_version = kvc::version()});
  wire::HandshakeStep hello = handshake.start();
  if (hello.action != wire::HandshakeAction::kContinue) return fail(hello.why);
  if (Status s = write_all(fd, hello.frames, where); !s.ok()) return fail(s);
  wire::FrameDecoder decoder(1 << 20);
  std::string_view payload;
  bool has = false;
  for (int reads = 0; !has; ++reads) {
    if (Status s = decoder.next(&payload, &has); !s.ok()) {
      return fail(s.with_context("the hello reply of " + where));
    }
    if (has) break;
    if (reads >= 256) return fail(Status::corruption("no complete hello reply from " + where));
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return fail(Status::timeout("no hello reply from " + where + " within " +
                                  std::to_string(timeout_ms) + " ms"));
    }
    if (n <= 0)
      return fail(Status::unavailable(where + " closed the connection before its hello reply"));
    decoder.feed(buf, static_cast<std::size_t>(n));
  }
  Result<wire::Envelope> frame = wire::open_envelope(payload);
  if (!frame.ok()) return fail(frame.status().with_context("the hello reply of " + where));
  wire::HandshakeStep step = handshake.on_frame(*frame);
  if (!step.frames.empty()) {
    if (Status s = write_all(fd, step.frames, where); !s.ok()) return fail(s);
  }
  switch (step.action) {
    case wire::HandshakeAction::kOpen:
      return fd;
    case wire::HandshakeAction::kRefuse:
      *refused = handshake.failure() == wire::DialerHandshake::Failure::kRefused;
      return fail(step.why.with_context(where));
    case wire::HandshakeAction::kContinue:
    case wire::HandshakeAction::kClose:
      break;
  }
  return fail(
      Status::corruption(where + " did not answer like a kvc member: " + step.why.message()));
}

}  // namespace

IdleConnections::~IdleConnections() { close_all(); }

IdleConnections::IdleConnections(IdleConnections&& o) noexcept
    : fds_(std::move(o.fds_)), summary_(std::move(o.summary_)) {
  o.fds_.clear();
}

IdleConnections& IdleConnections::operator=(IdleConnections&& o) noexcept {
  if (this != &o) {
    close_all();
    fds_ = std::move(o.fds_);
    summary_ = std::move(o.summary_);
    o.fds_.clear();
  }
  return *this;
}

void IdleConnections::close_all() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

Result<IdleConnections> IdleConnections::open(const std::vector<net::Address>& endpoints,
                                              std::size_t n, std::uint64_t step_timeout_ms) {
  if (endpoints.empty()) return Status::invalid_argument("idle connections: no endpoint given");
  IdleConnections out;
  IdleSummary& s = out.summary_;
  s.requested = n;
  s.per_endpoint.assign(endpoints.size(), 0);
  out.fds_.reserve(n);
  const auto t0 = std::chrono::steady_clock::now();
  int in_a_row = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (in_a_row >= kMaxFailuresInARow) {
      s.not_tried = n - i;
      break;
    }
    const std::size_t e = i % endpoints.size();
    bool refused = false;
    Result<int> fd = open_one(endpoints[e], step_timeout_ms, &refused);
    if (fd.ok()) {
      out.fds_.push_back(*fd);
      ++s.opened;
      ++s.per_endpoint[e];
      in_a_row = 0;
      continue;
    }
    ++(refused ? s.refused : s.failed);
    ++in_a_row;
    if (s.first_error.empty()) s.first_error = fd.status().message();
  }
  s.open_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::size_t IdleConnections::check_open() {
  std::vector<pollfd> p(fds_.size());
  for (std::size_t i = 0; i < fds_.size(); ++i) p[i] = {fds_[i], POLLIN | POLLRDHUP, 0};
  std::size_t open = 0;
  if (!p.empty() && ::poll(p.data(), p.size(), 0) < 0) {
    summary_.open_at_end = -1;
    return 0;
  }
  for (const pollfd& x : p) {
    if ((x.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0) ++open;
  }
  summary_.open_at_end = static_cast<std::int64_t>(open);
  return open;
}

Result<std::uint64_t> raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0)
    return Status::from_errno("getrlimit(RLIMIT_NOFILE)", errno);
  if (r.rlim_cur < r.rlim_max) {
    // An unlimited hard limit is capped by the kernel's nr_open (default 2^20).
    r.rlim_cur = r.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) {
      return Status::from_errno("setrlimit(RLIMIT_NOFILE)", errno);
    }
  }
  return static_cast<std::uint64_t>(r.rlim_cur);
}

}  // namespace kvc::bench
