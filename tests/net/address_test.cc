#include "kvc/net/address.h"

#include <gtest/gtest.h>

namespace kvc::net {
namespace {

TEST(AddressTest, ParsesAndFormats) {
  const struct {
    const char* in;
    const char* host;
    int port;
    const char* out;
  } cases[] = {
      {"127.0.0.1:2379", "127.0.0.1", 2379, "127.0.0.1:2379"},
      {"localhost:1", "127.0.0.1", 1, "127.0.0.1:1"},
      {"[::1]:80", "::1", 80, "[::1]:80"},
      {"0.0.0.0:0", "0.0.0.0", 0, "0.0.0.0:0"},
      {"db-1.example.com:2380", "db-1.example.com", 2380, "db-1.example.com:2380"},
      {"kvc_1:1", "kvc_1", 1, "kvc_1:1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    Result<Address> a = parse_address(c.in);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    EXPECT_EQ(a->host, c.host);
    EXPECT_EQ(a->port, c.port);
    EXPECT_EQ(a->to_string(), c.out);
  }
}

TEST(AddressTest, RejectsBadInput) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:12x", "::1:80", "[::1]80", "[::1", ":80", "127.0.0.300:1",
                          "1.2.3:1", "[example.com]:1", "a b:1", "a..b:1", "a/b:1"}) {
    SCOPED_TRACE(bad);
    Result<Address> a = parse_address(bad);
    EXPECT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
  }
}

TEST(AddressTest, ListAndLoopback) {
  Result<std::vector<Address>> l = parse_address_list("127.0.0.1:1,127.0.0.2:2,[::1]:3");
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 3u);
  for (const Address& a : *l) EXPECT_TRUE(a.is_loopback());
  EXPECT_FALSE(parse_address("10.0.0.1:1")->is_loopback());
  EXPECT_FALSE(parse_address_list("127.0.0.1:1,,127.0.0.1:2").ok());
}

TEST(AddressTest, SaysWhatIsWrong) {
  const struct {
    const char* in;
    const char* want;
  } cases[] = {
      {"http://127.0.0.1:2379", "a URL is not an address"},
      {"::1:2379", "brackets"},
      {"my host:1", "neither an IP address nor a host name"},
      {"10.0.0.256:1", "not an IPv4 address"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    Result<Address> a = parse_address(c.in);
    ASSERT_FALSE(a.ok());
    EXPECT_NE(a.status().message().find(c.want), std::string::npos) << a.status().message();
  }
}

TEST(AddressTest, HostNamesAreNotIpLiterals) {
  EXPECT_TRUE(parse_address("127.0.0.1:1")->is_ip());
  EXPECT_TRUE(parse_address("[::1]:1")->is_ip());
  EXPECT_TRUE(parse_address("localhost:1")->is_ip());  // taken as 127.0.0.1
  EXPECT_FALSE(parse_address("db1:1")->is_ip());
  EXPECT_FALSE(parse_address("db1:1")->is_loopback());
}

TEST(AddressTest, ResolvesNamesBlocking) {
  // "localhost" asked of the resolver (parse_address would map it without one).
  Result<Resolved> r = resolve_now(Address{.host = "localhost", .port = 2379});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  bool loopback = false;
  for (const sockaddr_storage& ss : *r) {
    Result<Address> a = parse_address(sockaddr_to_string(reinterpret_cast<const sockaddr*>(&ss)));
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->port, 2379);
    loopback = loopback || a->is_loopback();
  }
  EXPECT_TRUE(loopback);
  sockaddr_storage ss{};
  EXPECT_TRUE(to_sockaddr(Address{.host = "localhost", .port = 1}, &ss).ok());

  Result<Resolved> none = resolve_now(Address{.host = "no-such-host.invalid", .port = 1});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("cannot resolve host name 'no-such-host.invalid'"),
            std::string::npos)
      << none.status().message();
}

TEST(AddressTest, ResolvesNamesOnALoop) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<Result<Resolved>> got;
  for (const char* host : {"localhost", "127.0.0.1", "no-such-host.invalid"}) {
    resolve(&loop, Address{.host = host, .port = 7},
            [&got](Result<Resolved> r) { got.push_back(std::move(r)); });
  }
  EXPECT_TRUE(got.empty()) << "answered from inside resolve()";
  uv_run(&loop, UV_RUN_DEFAULT);  // returns once every lookup answered
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ASSERT_EQ(got.size(), 3u);
  int ok = 0;
  for (const auto& r : got) ok += r.ok() ? 1 : 0;
  EXPECT_EQ(ok, 2);
  for (const auto& r : got) {
    if (r.ok()) continue;
    EXPECT_TRUE(r.status().code() == Code::kNotFound || r.status().code() == Code::kUnavailable);
  }
}

}  // namespace
}  // namespace kvc::net
