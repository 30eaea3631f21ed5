#include "kvc/net/address.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <charconv>
#include <cstring>
#include <memory>

namespace kvc::net {
namespace {

bool is_ipv4(const std::string& host) {
  in_addr a{};
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& host) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

// Letters, digits, '-', '_' and dots between labels of 1-63 characters, 253 at most: what a
// resolver can be asked. '_' is not valid in DNS host names but appears in /etc/hosts and
// service names, and the resolver is the judge of those.
Status check_host_name(const std::string& host) {
  if (host.empty()) return Status::invalid_argument("missing host");
  if (host.size() > 253) return Status::invalid_argument("host name longer than 253 characters");
  std::size_t label = 0;
  bool all_digits_and_dots = true;
  for (std::size_t i = 0; i < host.size(); ++i) {
    const char ch = host[i];
    if (ch == '.') {
      if (label == 0) return Status::invalid_argument("empty label in host name '" + host + "'");
      label = 0;
      continue;
    }
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!ok) {
      return Status::invalid_argument("'" + host +
                                      "' is neither an IP address nor a host name (character '" +
                                      std::string(1, ch) + "')");
    }
    if (ch < '0' || ch > '9') all_digits_and_dots = false;
    if (++label > 63) return Status::invalid_argument("host name label longer than 63 characters");
  }
  if (all_digits_and_dots) return Status::invalid_argument("'" + host + "' is not an IPv4 address");
  return Status();
}

// The status for a failed lookup of `host` (a getaddrinfo EAI_* code, or libuv's UV_EAI_*).
Status lookup_failure(const std::string& host, bool no_such_name, const char* why) {
  const std::string m = "cannot resolve host name '" + host + "': " + why;
  return no_such_name ? Status::not_found(m) : Status::unavailable(m);
}

Resolved collect(const addrinfo* list, std::uint16_t port) {
  Resolved out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
    }
    // getaddrinfo repeats an address once per socket type unless told one; keep one of each.
    bool dup = false;
    for (const sockaddr_storage& seen : out) {
      dup = dup || std::memcmp(&seen, &ss, sizeof ss) == 0;
    }
    if (!dup) out.push_back(ss);
  }
  return out;
}

addrinfo lookup_hints(const Address& a) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (a.is_ip()) hints.ai_flags = AI_NUMERICHOST;
  return hints;
}

}  // namespace

std::string Address::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool Address::is_ip() const { return is_ipv4(host) || is_ipv6(host); }

bool Address::is_loopback() const {
  if (host == "::1") return true;
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
  return false;
}

Result<Address> parse_address(std::string_view text) {
  const std::string original(text);
  auto bad = [&original](const std::string& why) {
    return Status::invalid_argument("address '" + original + "': " + why);
  };
  if (const std::size_t scheme = text.find("://"); scheme != std::string_view::npos) {
    return bad("a URL is not an address: write HOST:PORT without '" +
               std::string(text.substr(0, scheme + 3)) + "'");
  }
  Address a;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("expected [IPV6]:PORT");
    }
    a.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    if (!is_ipv6(a.host)) return bad("'" + a.host + "' in brackets is not an IPv6 address");
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected HOST:PORT");
    a.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (a.host.find(':') != std::string::npos) {
      return bad("write IPv6 addresses in brackets, [::1]:2379");
    }
    if (a.host == "localhost") a.host = "127.0.0.1";
    if (!is_ipv4(a.host)) {
      if (Status s = check_host_name(a.host); !s.ok()) return bad(s.message());
    }
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return bad("bad port");
  }
  a.port = static_cast<std::uint16_t>(port);
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

Result<Resolved> resolve_now(const Address& a) {
  const addrinfo hints = lookup_hints(a);
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(a.host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    return lookup_failure(a.host, rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL,
                          rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc));
  }
  Resolved out = collect(list, a.port);
  ::freeaddrinfo(list);
  if (out.empty()) return lookup_failure(a.host, true, "no IPv4 or IPv6 address");
  return out;
}

void resolve(uv_loop_t* loop, const Address& a, std::function<void(Result<Resolved>)> done) {
  struct Lookup {
    uv_getaddrinfo_t req{};
    std::string host;
    std::uint16_t port = 0;
    std::function<void(Result<Resolved>)> done;
  };
  auto* l = new Lookup();  // freed in the callback, which libuv always runs
  l->host = a.host;
  l->port = a.port;
  l->done = std::move(done);
  l->req.data = l;
  const addrinfo hints = lookup_hints(a);
  const int rc = uv_getaddrinfo(
      loop, &l->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<Lookup> self(static_cast<Lookup*>(req->data));
        if (status != 0) {
          if (res != nullptr) uv_freeaddrinfo(res);
          self->done(lookup_failure(
              self->host,
              status == UV_EAI_NONAME || status == UV_EAI_NODATA || status == UV_EAI_FAIL,
              uv_strerror(status)));
          return;
        }
        Resolved out = collect(res, self->port);
        uv_freeaddrinfo(res);
        if (out.empty()) {
          self->done(lookup_failure(self->host, true, "no IPv4 or IPv6 address"));
          return;
        }
        self->done(std::move(out));
      },
      l->host.c_str(), nullptr, &hints);
  if (rc != 0) {
    // Could not even be queued: answer from the loop all the same, never from inside this call.
    struct Later {
      uv_timer_t timer{};
      Status why;
      std::function<void(Result<Resolved>)> done;
    };
    auto* later = new Later();
    later->why = lookup_failure(l->host, false, uv_strerror(rc));
    later->done = std::move(l->done);
    delete l;
    uv_timer_init(loop, &later->timer);
    later->timer.data = later;
    uv_timer_start(
        &later->timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<Later*>(t->data);
          auto cb = std::move(self->done);
          const Status why = self->why;
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
          cb(why);
        },
        0, 0);
  }
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
  Result<Resolved> r = resolve_now(a);
  if (!r.ok()) return r.status();
  *out = r->front();
  return Status();
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
