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
                          "127.0.0.1:12x", "::1:80", "[::1]80", "example.com:80", "[::1"}) {
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

}  // namespace
}  // namespace kvc::net
