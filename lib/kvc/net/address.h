// "HOST:PORT" endpoints as kvc's flags spell them: an IPv4 address, "[IPv6]", or "localhost"
// (meaning 127.0.0.1), and a port 0-65535. Parsing never resolves names through DNS: a member's
// addresses must not depend on a resolver during an incident. Pure functions; thread-safe.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::net {

struct Address {
  std::string host;  // as given, without brackets ("127.0.0.1", "::1")
  std::uint16_t port = 0;

  std::string to_string() const;  // "127.0.0.1:2379", "[::1]:2379"
  bool is_loopback() const;
  friend bool operator==(const Address&, const Address&) = default;
};

Result<Address> parse_address(std::string_view text);
// A comma-separated list ("a:1,b:2"); empty items are an error.
Result<std::vector<Address>> parse_address_list(std::string_view text);
// Fills a sockaddr_storage for bind/connect.
Status to_sockaddr(const Address& a, sockaddr_storage* out);
// The address a socket is bound to / connected to ("127.0.0.1:40123").
std::string sockaddr_to_string(const sockaddr* sa);

}  // namespace kvc::net
