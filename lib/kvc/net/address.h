// "HOST:PORT" endpoints as kvc's flags spell them: an IPv4 address, "[IPv6]", or a host name
// ("localhost" is taken as 127.0.0.1 without asking a resolver), and a port 0-65535. Parsing
// checks only the spelling; a host name is resolved when it is used: by resolve() (libuv's
// uv_getaddrinfo, asynchronously on a loop) before each connection attempt, so a name that moves
// to another address is followed on the next reconnect, or by resolve_now() / to_sockaddr()
// (blocking) for what happens once at start-up, such as binding a listener. Pure functions
// except the resolvers; thread-safe.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::net {

struct Address {
  std::string host;  // as given, without brackets ("127.0.0.1", "::1", "db1.example.com")
  std::uint16_t port = 0;

  std::string to_string() const;  // "127.0.0.1:2379", "[::1]:2379", "db1:2379"
  // An IP literal (no resolver needed).
  bool is_ip() const;
  // A loopback IP literal. A host name is not resolved here and counts as not loopback.
  bool is_loopback() const;
  friend bool operator==(const Address&, const Address&) = default;
};

// Fails with kInvalidArgument saying what is wrong with the spelling: no port, a bad port, an
// unbracketed IPv6 address, a URL ("http://..."), characters a host name cannot hold.
Result<Address> parse_address(std::string_view text);
// A comma-separated list ("a:1,b:2"); empty items are an error.
Result<std::vector<Address>> parse_address_list(std::string_view text);

// The socket addresses a host resolves to, in the resolver's order, each with the port set.
// Failures: kNotFound when the name does not exist, kUnavailable when the resolver failed
// (e.g. no DNS server answered); the message names the host.
using Resolved = std::vector<sockaddr_storage>;
// Blocking (getaddrinfo): for start-up checks and blocking tools, never on a running loop.
Result<Resolved> resolve_now(const Address& a);
// On `loop` (uv_getaddrinfo in libuv's thread pool); `done` runs on the loop thread, once. An IP
// literal is answered without a lookup (still from the loop, never from inside this call).
void resolve(uv_loop_t* loop, const Address& a, std::function<void(Result<Resolved>)> done);

// Fills a sockaddr_storage for bind/connect: an IP literal as is, a host name via resolve_now()
// (its first address; blocking).
Status to_sockaddr(const Address& a, sockaddr_storage* out);
// The address a socket is bound to / connected to ("127.0.0.1:40123").
std::string sockaddr_to_string(const sockaddr* sa);

}  // namespace kvc::net
