// A fault-injecting TCP proxy on loopback for the chaos tests: one listening port in front of
// each member's peer port, so that every Raft connection between members passes through it and
// can be cut, delayed or made lossy per link and per direction. A member dials another at the
// address in --initial-cluster (the proxy port) and sends its Raft messages on that connection
// only; the connection's first frame is a Hello naming the sender, so the proxy in front of
// member B knows which member A each connection comes from and applies the fault of link
// (A -> B). Frames are parsed (4-byte length prefix, wire/frame.h), so loss and delay act on
// whole messages and the stream stays well-framed. What comes back on a connection (only the
// HelloReply) is forwarded as is. Client connections do not pass through the proxy.
//
// With TLS on the peer ports (a cluster with a secret or certificates) the stream is TLS records,
// not frames: the proxy cuts records (5-byte header) instead, and learns the sender from the
// kernel instead of the Hello (the dialling socket's inode in /proc/net/tcp, the kvc-node
// process that holds it, that process's --name). Loss and delay then act on records: a lost
// record breaks the TLS stream, so the receiving member closes the link and the sender redials
// (loss becomes connection churn rather than silent gaps; a black hole stays a black hole).
//
// The proxy runs its own thread (a poll loop); every public method is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "kvc/common/status.h"

namespace kvc::chaos {

// The fault on one directed link (from -> to). The default is a healthy link.
struct LinkFault {
  bool cut = false;             // open connections are closed and new ones refused
  double drop = 0;              // probability that a message is discarded (1: a black hole,
                                // the connection stays up and silent)
  std::uint32_t delay_ms = 0;   // every message is held this long ...
  std::uint32_t jitter_ms = 0;  // ... plus up to this much more (order is kept)

  bool healthy() const { return !cut && drop <= 0 && delay_ms == 0 && jitter_ms == 0; }
  std::string to_string() const;  // "cut", "drop=0.25 delay=50ms+20ms", "healthy"
  friend bool operator==(const LinkFault&, const LinkFault&) = default;
};

struct ProxyStats {
  std::uint64_t connections = 0;       // accepted
  std::uint64_t connections_cut = 0;   // closed or refused because their link was cut
  std::uint64_t frames_forwarded = 0;  // sender -> member
  std::uint64_t frames_dropped = 0;
  std::uint64_t frames_delayed = 0;
  std::uint64_t bytes_forwarded = 0;
  // TLS: connections whose sender was learned from the kernel, and those it could not be (no
  // fault applies to them).
  std::uint64_t senders_found = 0;
  std::uint64_t senders_unknown = 0;
};

class FaultProxy {
 public:
  // `seed` drives the loss and jitter choices; `tls`: the peer ports speak TLS (see above).
  explicit FaultProxy(std::uint64_t seed, bool tls = false);
  // Stops the thread and closes every socket.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // Starts the proxy's thread. Call once, before or after add_member.
  Status start();

  // Listens on 127.0.0.1 port 0 for connections to member `index` (whose peer listener is on
  // 127.0.0.1:`target_port`) and returns the port bound. `name` is the member's --name, which
  // its own outgoing connections carry in their Hello.
  Result<std::uint16_t> add_member(int index, const std::string& name, std::uint16_t target_port);

  // Sets the fault of link (from -> to); a cut closes that link's open connections at once.
  void set_fault(int from, int to, const LinkFault& fault);
  LinkFault fault(int from, int to) const;
  // Every link healthy again.
  void heal_all();
  // The links that are not healthy, keyed by (from, to).
  std::map<std::pair<int, int>, LinkFault> faults() const;

  ProxyStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::chaos
