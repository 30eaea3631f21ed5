// Ports for the servers the tests start on 127.0.0.1: free_port() (header-only; the process and
// chaos harnesses use it). Why not bind(0) and close: that hands out a port from the kernel's
// ephemeral range, which any outgoing connection on the machine may take next (a client's own
// end), and which another test process asking the same way may be handed too, before the member
// that was meant to listen there has bound it ("address already in use", a flake under ctest
// -j2). So: a port below the ephemeral range (ip_local_port_range), from a sequence that starts
// at a per-process random point (pid and time), never handed out twice by one process, and
// checked to be bindable right now. Two test processes then collide only if their sequences
// meet within the same moment, and outgoing connections never take these ports. Thread-safe.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>

namespace kvc::test {

inline bool port_bindable(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A port from the kernel (bind to port 0): the fallback when no range below the ephemeral one
// is usable.
inline std::uint16_t kernel_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A port on 127.0.0.1 that nothing listens on now and that this process has not handed out.
inline std::uint16_t free_port() {
  static const std::uint32_t low = [] {
    std::uint32_t lo = 32768, hi = 60999;
    std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
    if (!(f >> lo >> hi)) lo = 32768;
    return lo;
  }();
  constexpr std::uint32_t kFirst = 10000;  // below: well-known services and their neighbours
  if (low < kFirst + 2000) return kernel_port();
  const std::uint32_t span = low - kFirst;
  static std::atomic<std::uint32_t> next{[span] {
    const auto t =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(::getpid()) * 7919u + t) % span);
  }()};
  for (std::uint32_t tries = 0; tries < span; ++tries) {
    const auto port = static_cast<std::uint16_t>(kFirst + next.fetch_add(1) % span);
    if (port_bindable(port)) return port;
  }
  return kernel_port();
}

}  // namespace kvc::test
