#include "kvc/net/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace kvc::net {

std::string Address::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool Address::is_loopback() const {
  if (host == "::1") return true;
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
  return false;
}

Result<Address> parse_address(std::string_view text) {
  const std::string original(text);
  Address a;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::invalid_argument("address '" + original + "': expected [IPV6]:PORT");
    }
    a.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::invalid_argument("address '" + original + "': expected HOST:PORT");
    }
    a.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (a.host.find(':') != std::string::npos) {
      return Status::invalid_argument("address '" + original +
                                      "': write IPv6 addresses in brackets, [::1]:2379");
    }
  }
  if (a.host == "localhost") a.host = "127.0.0.1";
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return Status::invalid_argument("address '" + original + "': bad port");
  }
  a.port = static_cast<std::uint16_t>(port);
  sockaddr_storage ss{};
  KVC_RETURN_IF_ERROR(to_sockaddr(a, &ss).with_context("address '" + original + "'"));
  return a;
}

Result<std::vector<Address>> parse_address_list(std::string_view text) {
  std::vector<Address> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    Result<Address> a = parse_address(text.substr(pos, comma - pos));
    if (!a.ok()) return a.status();
    out.push_back(std::move(*a));
    pos = comma + 1;
  }
  return out;
}

Status to_sockaddr(const Address& a, sockaddr_storage* out) {
  std::memset(out, 0, sizeof *out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (::inet_pton(AF_INET, a.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(a.port);
    return Status();
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (::inet_pton(AF_INET6, a.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(a.port);
    return Status();
  }
  return Status::invalid_argument("'" + a.host +
                                  "' is not an IP address (kvc does not resolve host names)");
}

std::string sockaddr_to_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "?";
}

}  // namespace kvc::net
