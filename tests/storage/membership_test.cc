#include "kvc/storage/membership.h"

#include <gtest/gtest.h>

#include "kvc/storage/data_dir.h"

namespace kvc::storage {
namespace {

Membership sample() {
  Membership m;
  m.members = {
      {.id = 5, .name = "m1", .peer_addr = "10.0.0.1:2380", .client_addr = "10.0.0.1:2379"},
      {.id = 9, .name = "m2", .peer_addr = "10.0.0.2:2380"},
      {.id = 200, .name = "m3", .peer_addr = "[::1]:2380", .learner = true}};
  return m;
}

TEST(MembershipTest, RoundTripsAndGivesTheConfState) {
  for (const Membership& m : {Membership(), sample()}) {
    Result<Membership> back = decode_membership(encode_membership(m));
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, m);
  }
  EXPECT_EQ(sample().to_conf_state(), (raft::ConfState{{5, 9}, {200}}));
  EXPECT_EQ(sample().find(9)->name, "m2");
  EXPECT_EQ(sample().find(10), nullptr);
  EXPECT_EQ(sample().find_name("m3")->id, 200u);
}

TEST(MembershipTest, EveryTruncationFails) {
  const std::string good = encode_membership(sample());
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(decode_membership(good.substr(0, n)).ok()) << "length " << n;
  }
  EXPECT_FALSE(decode_membership(good + "x").ok()) << "trailing byte";
}

TEST(MembershipTest, InvalidContentIsRefused) {
  Membership unsorted = sample();
  std::swap(unsorted.members[0], unsorted.members[1]);
  EXPECT_EQ(validate_membership(unsorted).code(), Code::kInvalidArgument);
  Membership zero = sample();
  zero.members[0].id = 0;
  EXPECT_FALSE(validate_membership(zero).ok());
  Membership dup_name = sample();
  dup_name.members[1].name = "m1";
  EXPECT_FALSE(validate_membership(dup_name).ok());
  // Hand-built bytes with unknown flags or version.
  std::string bytes = encode_membership(sample());
  std::string bad_flags = bytes;
  bad_flags.back() = '\x04';
  EXPECT_EQ(decode_membership(bad_flags).status().code(), Code::kCorruption);
  std::string bad_version = bytes;
  bad_version[0] = '\x03';
  EXPECT_EQ(decode_membership(bad_version).status().code(), Code::kCorruption);
  // A count far beyond the bytes present is refused before allocating for it.
  EXPECT_FALSE(decode_membership(std::string("\x01\xff\xff\xff\xff\x0f", 6)).ok());
}

TEST(MembershipTest, RemovedIdsRoundTripAsVersionTwo) {
  Membership m = sample();
  m.add_removed(77);
  m.add_removed(3);
  m.add_removed(77);  // once only
  EXPECT_EQ(m.removed, (std::vector<std::uint64_t>{3, 77}));
  EXPECT_TRUE(m.was_removed(3));
  EXPECT_FALSE(m.was_removed(5));
  const std::string bytes = encode_membership(m);
  EXPECT_EQ(bytes[0], '\x02');
  Result<Membership> back = decode_membership(bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, m);
  EXPECT_NE(describe_membership(m).find("removed 0000000000000003 000000000000004d"),
            std::string::npos);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_membership(bytes.substr(0, n)).ok()) << "length " << n;
  }
}

// A membership without removed ids is still written as version 1, byte for byte what earlier
// members wrote, and version 1 bytes (from an older state or snapshot) are read.
TEST(MembershipTest, VersionOneIsWrittenWithoutRemovedIdsAndStillRead) {
  // u8 version 1, count 1, id 5, "m1", "h:1", "", flags learner.
  const std::string v1("\x01\x01\x05\x02m1\x03h:1\x00\x01", 12);
  Result<Membership> m = decode_membership(v1);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_EQ(m->members.size(), 1u);
  EXPECT_EQ(m->members[0], (Member{.id = 5, .name = "m1", .peer_addr = "h:1", .learner = true}));
  EXPECT_TRUE(m->removed.empty());
  EXPECT_EQ(encode_membership(*m), v1);
}

TEST(MembershipTest, BadRemovedIdsAreRefused) {
  Membership both = sample();
  both.removed = {9};  // also a member
  EXPECT_EQ(validate_membership(both).code(), Code::kInvalidArgument);
  Membership unsorted = sample();
  unsorted.removed = {8, 7};
  EXPECT_FALSE(validate_membership(unsorted).ok());
  Membership zero = sample();
  zero.removed = {0};
  EXPECT_FALSE(validate_membership(zero).ok());
  // Version 2 with an empty removed list is never written, so it is refused as damage.
  std::string empty_list = encode_membership(Membership());
  empty_list[0] = '\x02';
  empty_list += '\x00';
  EXPECT_EQ(decode_membership(empty_list).status().code(), Code::kCorruption);
  // Decoded ids obey the same rules: 5 is a member of this encoding.
  Membership one;
  one.members = {{.id = 5, .name = "m1", .peer_addr = "h:1"}};
  one.removed = {6};
  std::string bytes = encode_membership(one);
  bytes.back() = '\x05';
  EXPECT_EQ(decode_membership(bytes).status().code(), Code::kCorruption);
}

TEST(MembershipTest, ParsesInitialCluster) {
  Result<Membership> m = parse_initial_cluster("tok", "b=h2:2,a=h1:1, c=[::1]:3");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_EQ(m->members.size(), 3u);
  for (const Member& x : m->members) {
    EXPECT_EQ(x.id, derive_member_id("tok", x.name));
    EXPECT_TRUE(x.client_addr.empty());
    EXPECT_FALSE(x.learner);
  }
  EXPECT_TRUE(validate_membership(*m).ok());
  EXPECT_EQ(sorted_initial_cluster(*m), "a=h1:1,b=h2:2,c=[::1]:3");
  EXPECT_NE(describe_membership(*m).find("a (id "), std::string::npos);
}

TEST(MembershipTest, RefusesBadInitialCluster) {
  const char* const bad[] = {"",        "a",         "a=",    "=h:1",        "a=h",
                             "a=h:0",   "a=h:70000", "a=:1",  "a=h:1,a=h:2", "a=h:1,b=h:1",
                             "a b=h:1", "a=h:1,",    "a=h:x1"};
  for (const char* s : bad) {
    Result<Membership> m = parse_initial_cluster("tok", s);
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << "'" << s << "'";
  }
}

}  // namespace
}  // namespace kvc::storage
