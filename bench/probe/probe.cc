// kvc-bench-probe: small measurements that bench/compare-etcd needs besides kvc-bench itself.
//   fsync DIR        latency of a small append + fdatasync in DIR (the floor of a durable write)
//   rtt              round trip of a small message over TCP on 127.0.0.1 (the network floor)
//   ready ENDPOINT   waits until that member itself answers a linearizable get; prints ms
//   put-until-ok     puts through --endpoints until one succeeds; prints ms
// Each prints one JSON object on stdout. Bounded by --count or --timeout.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "cli.h"
#include "histogram.h"
#include "kvc/client/client.h"
#include "kvc/common/text.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvc::bench::Histogram;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::uint64_t us_since(Clock::time_point t0) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
}

void print_hist(const char* what, const Histogram& h, const std::string& extra) {
  std::printf(
      "{\"probe\":\"%s\",\"count\":%llu,\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,"
      "\"min_ms\":%.4f,\"max_ms\":%.4f,\"mean_ms\":%.4f%s}\n",
      what, static_cast<unsigned long long>(h.count()), h.percentile(0.5) / 1000.0,
      h.percentile(0.9) / 1000.0, h.percentile(0.99) / 1000.0, h.min() / 1000.0, h.max() / 1000.0,
      h.mean() / 1000.0, extra.c_str());
}

// append: each write grows the file, so fdatasync also flushes the new size (and, on ext4,
// the extent). overwrite: the file is written and synced first, so each fdatasync flushes data
// only: the least a durable write costs on this disk.
int probe_fsync(const std::string& dir, std::size_t size, int count, const std::string& mode,
                bool awake) {
  const std::string path = dir + "/kvc-bench-probe.fsync";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "kvc-bench-probe: open %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  std::string block(size, 'x');
  if (mode == "overwrite") {
    const std::string zeros(size * static_cast<std::size_t>(count), '\0');
    if (::pwrite(fd, zeros.data(), zeros.size(), 0) != static_cast<ssize_t>(zeros.size()) ||
        ::fsync(fd) != 0) {
      std::fprintf(stderr, "kvc-bench-probe: fill %s: %s\n", path.c_str(), std::strerror(errno));
      ::close(fd);
      ::unlink(path.c_str());
      return 1;
    }
  }
  // With `awake`, a spinning thread keeps this VM's vCPUs busy: on an overcommitted host an
  // idle vCPU that waits for an I/O completion can be descheduled by the host, and the wait for
  // it to run again (milliseconds) then hides the device's own latency.
  std::atomic<bool> stop{false};
  std::thread spinner;
  if (awake) {
    spinner = std::thread([&stop] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  Histogram h;
  for (int i = 0; i < count; ++i) {
    const Clock::time_point t0 = Clock::now();
    const auto offset = static_cast<off_t>(size * static_cast<std::size_t>(i));
    if (::pwrite(fd, block.data(), block.size(), offset) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      std::fprintf(stderr, "kvc-bench-probe: write %s: %s\n", path.c_str(), std::strerror(errno));
      stop.store(true);
      if (spinner.joinable()) spinner.join();
      ::close(fd);
      ::unlink(path.c_str());
      return 1;
    }
    h.record(us_since(t0));
  }
  stop.store(true);
  if (spinner.joinable()) spinner.join();
  ::close(fd);
  ::unlink(path.c_str());
  print_hist("fsync", h,
             ",\"bytes\":" + std::to_string(size) + ",\"mode\":\"" + mode +
                 "\",\"awake\":" + (awake ? "true" : "false"));
  return 0;
}

bool io_all(int fd, char* buf, std::size_t n, bool writing) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = writing ? ::send(fd, buf + done, n - done, MSG_NOSIGNAL)
                              : ::recv(fd, buf + done, n - done, 0);
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

int probe_rtt(std::size_t size, int count) {
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(lfd, 1) != 0 || ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::fprintf(stderr, "kvc-bench-probe: listen on 127.0.0.1: %s\n", std::strerror(errno));
    return 1;
  }
  std::thread echo([lfd, size] {
    const int c = ::accept(lfd, nullptr, nullptr);
    if (c < 0) return;
    int one = 1;
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string buf(size, '\0');
    while (io_all(c, buf.data(), size, false) && io_all(c, buf.data(), size, true)) {
    }
    ::close(c);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = 0;
  Histogram h;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "kvc-bench-probe: connect: %s\n", std::strerror(errno));
    rc = 1;
  } else {
    std::string buf(size, 'x');
    for (int i = 0; i < count; ++i) {
      const Clock::time_point t0 = Clock::now();
      if (!io_all(fd, buf.data(), size, true) || !io_all(fd, buf.data(), size, false)) {
        std::fprintf(stderr, "kvc-bench-probe: echo broke\n");
        rc = 1;
        break;
      }
      h.record(us_since(t0));
    }
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  ::shutdown(lfd, SHUT_RDWR);
  echo.join();
  ::close(lfd);
  if (rc == 0) print_hist("rtt", h, ",\"bytes\":" + std::to_string(size));
  return rc;
}

kvc::Result<std::unique_ptr<kvc::client::Client>> open_client(const std::string& endpoints,
                                                              std::uint64_t attempt_ms) {
  kvc::Result<std::vector<kvc::net::Address>> list = kvc::net::parse_address_list(endpoints);
  if (!list.ok()) return list.status();
  kvc::client::ClientOptions o;
  o.endpoints = *list;
  o.timeout_ms = attempt_ms;
  o.connect_timeout_ms = attempt_ms;
  o.name = "kvc-bench-probe";
  return kvc::client::Client::open(std::move(o));
}

// Polls until `attempt` succeeds or `timeout_ms` passes; prints the time it took.
template <typename F>
int poll(const char* what, std::uint64_t timeout_ms, std::uint64_t poll_ms, F attempt) {
  const Clock::time_point t0 = Clock::now();
  std::string last;
  int attempts = 0;
  while (ms_since(t0) < static_cast<double>(timeout_ms)) {
    ++attempts;
    kvc::wire::Response r = attempt();
    if (r.code == kvc::Code::kOk) {
      std::printf("{\"probe\":\"%s\",\"ok\":true,\"ms\":%.1f,\"attempts\":%d}\n", what,
                  ms_since(t0), attempts);
      return 0;
    }
    last = std::string(kvc::code_name(r.code)) + ": " + r.message;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  std::printf("{\"probe\":\"%s\",\"ok\":false,\"ms\":%.1f,\"attempts\":%d}\n", what, ms_since(t0),
              attempts);
  std::fprintf(stderr, "kvc-bench-probe: %s: gave up after %llu ms; last error: %s\n", what,
               static_cast<unsigned long long>(timeout_ms), last.c_str());
  return kvc::kExitTimeout;
}

}  // namespace

int main(int argc, char** argv) {
  kvc::LogOptions log;
  log.level = "off";
  CLI::App app("kvc-bench-probe: floors and probes for bench/compare-etcd.", "kvc-bench-probe");
  kvc::cli::add_common_flags(app, log);
  app.require_subcommand(1);
  std::size_t size = 300;
  int count = 1000;
  std::string dir, endpoint, endpoints, timeout = "30s", attempt = "500ms", poll_every = "10ms";
  std::string key = "kvc-bench-probe";
  auto* fsync_cmd = app.add_subcommand("fsync", "Latency of a small append + fdatasync");
  fsync_cmd->add_option("dir", dir, "A directory on the filesystem to measure")->required();
  fsync_cmd->add_option("--size", size, "Bytes per write")->capture_default_str();
  fsync_cmd->add_option("--count", count, "Writes")->capture_default_str();
  std::string mode = "append";
  fsync_cmd->add_option("--mode", mode, "append (the file grows) or overwrite (data only)")
      ->check(CLI::IsMember({"append", "overwrite"}))
      ->capture_default_str();
  bool awake = false;
  fsync_cmd->add_flag("--awake", awake,
                      "Keep a CPU busy meanwhile, so an idle vCPU's wake-up "
                      "does not count");
  auto* rtt_cmd = app.add_subcommand("rtt", "Round trip of a message over TCP on 127.0.0.1");
  rtt_cmd->add_option("--size", size, "Bytes each way")->capture_default_str();
  rtt_cmd->add_option("--count", count, "Round trips")->capture_default_str();
  auto* ready_cmd =
      app.add_subcommand("ready", "Wait until ENDPOINT itself answers a linearizable get");
  ready_cmd->add_option("endpoint", endpoint, "HOST:PORT of the member")->required();
  auto* put_cmd = app.add_subcommand("put-until-ok", "Put through --endpoints until it succeeds");
  put_cmd->add_option("--endpoints", endpoints, "Comma-separated HOST:PORT")->required();
  for (auto* c : {ready_cmd, put_cmd}) {
    c->add_option("--timeout", timeout, "Give up after this long")->capture_default_str();
    c->add_option("--attempt", attempt, "Deadline of one attempt")->capture_default_str();
    c->add_option("--poll", poll_every, "Pause between failed attempts")->capture_default_str();
    c->add_option("--key", key, "The key read or written")->capture_default_str();
  }
  if (auto early = kvc::cli::parse_and_setup(app, argc, argv, log)) return *early;
  if (size == 0 || count <= 0) {
    std::fprintf(stderr, "kvc-bench-probe: --size and --count must be positive\n");
    return kvc::kExitUsage;
  }
  if (fsync_cmd->parsed()) return probe_fsync(dir, size, count, mode, awake);
  if (rtt_cmd->parsed()) return probe_rtt(size, count);
  kvc::Result<std::uint64_t> t = kvc::parse_duration_ms(timeout);
  kvc::Result<std::uint64_t> a = kvc::parse_duration_ms(attempt);
  kvc::Result<std::uint64_t> p = kvc::parse_duration_ms(poll_every);
  if (!t.ok() || !a.ok() || !p.ok()) {
    std::fprintf(stderr, "kvc-bench-probe: bad duration in --timeout, --attempt or --poll\n");
    return kvc::kExitUsage;
  }
  auto c = open_client(ready_cmd->parsed() ? endpoint : endpoints, *a);
  if (!c.ok()) return kvc::cli::fail("kvc-bench-probe", c.status());
  if (ready_cmd->parsed()) {
    kvc::Result<kvc::net::Address> target = kvc::net::parse_address(endpoint);
    if (!target.ok()) return kvc::cli::fail("kvc-bench-probe", target.status());
    return poll("ready", *t, *p, [&] {
      return (*c)->call_sync({.op = kvc::wire::Op::kGet, .key = key},
                             {.timeout_ms = *a, .target = *target});
    });
  }
  return poll("put-until-ok", *t, *p, [&] {
    return (*c)->call_sync({.op = kvc::wire::Op::kPut, .key = key, .value = "x"},
                           {.timeout_ms = *a});
  });
}
