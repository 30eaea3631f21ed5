// Idle client connections for kvc-bench --idle-conns: N TCP connections to the members, spread
// over the endpoints in turn, each of which completes the client handshake (the hello, in plain
// TCP: no TLS, so not against members with certificates or a secret) and then sends nothing more
// while it is held. They show
// what an open but quiet connection costs a member (memory, accept limits, and the effect on the
// throughput of the real clients beside them).
//
// Connections are opened one after another over blocking sockets with per-step timeouts, so the
// opening is bounded: each connect, send and hello reply waits at most `step_timeout_ms`, and
// opening stops early after 16 failures in a row (the member is gone or refuses everything).
// Thread-compatible: one owner; the destructor closes every socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/net/address.h"

namespace kvc::bench {

struct IdleSummary {
  std::size_t requested = 0;
  std::size_t opened = 0;     // the member answered the hello with ok: accepted and held
  std::size_t refused = 0;    // the member answered with a refusal (e.g. --max-client-connections)
  std::size_t failed = 0;     // no TCP connection, or no valid answer in time
  std::size_t not_tried = 0;  // left out after 16 failures in a row
  std::vector<std::size_t> per_endpoint;  // opened, by endpoint index
  double open_s = 0;                      // time spent opening them
  std::string first_error;                // one full message, for the report
  std::int64_t open_at_end = -1;          // held connections still open when checked (-1: not)
};

class IdleConnections {
 public:
  IdleConnections() = default;
  ~IdleConnections();
  IdleConnections(IdleConnections&& o) noexcept;
  IdleConnections& operator=(IdleConnections&& o) noexcept;
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;

  // Opens `n` connections over `endpoints` in turn (connection i goes to endpoint i mod size).
  // Fails only when no endpoint is given; connections that could not be opened are counted in
  // the summary.
  static Result<IdleConnections> open(const std::vector<net::Address>& endpoints, std::size_t n,
                                      std::uint64_t step_timeout_ms);

  // How many of the held connections are still open: not closed by the member and with nothing
  // unread from it (an idle connection receives nothing). Does not block. Also records the
  // count in summary().open_at_end.
  std::size_t check_open();

  const IdleSummary& summary() const { return summary_; }
  std::size_t size() const { return fds_.size(); }
  void close_all();

 private:
  std::vector<int> fds_;
  IdleSummary summary_;
};

// File descriptors this process may open: raises the soft RLIMIT_NOFILE to the hard limit and
// returns the new soft limit (or an error when getrlimit/setrlimit fail).
Result<std::uint64_t> raise_fd_limit();

}  // namespace kvc::bench
