#include "kvc/storage/command.h"

#include <gtest/gtest.h>

#include <limits>

namespace kvc::storage {
namespace {

TEST(CommandTest, EveryOpRoundTrips) {
  const Command cases[] = {
      {.op = CommandOp::kPut, .request_id = 7, .key = "a", .value = std::string("v\0\xff", 3)},
      {.op = CommandOp::kDelete, .request_id = 0, .key = "k"},
      {.op = CommandOp::kDeletePrefix, .request_id = 1u << 30, .key = ""},
      {.op = CommandOp::kCas,
       .request_id = std::numeric_limits<std::uint64_t>::max(),
       .key = std::string(300, 'k'),
       .value = "",
       .expect_revision = 123456789012},
      {.op = CommandOp::kBarrier, .request_id = 5},
      {.op = CommandOp::kHashVerdict,
       .request_id = 6,
       .expect_revision = 77,
       .hash = 0xfedcba9876543210ull},
      {.op = CommandOp::kLeaseGrant, .request_id = 8, .lease = 0x7fffffffffffffffull, .ttl = 30},
      {.op = CommandOp::kLeaseRevoke, .request_id = 9, .lease = 1},
      {.op = CommandOp::kPutLease, .request_id = 10, .key = "k", .value = "v", .lease = 42},
      {.op = CommandOp::kTxn,
       .request_id = 11,
       .compares = {{.target = CompareTarget::kValue,
                     .op = CompareOp::kNotEqual,
                     .key = "a",
                     .value = std::string("x\0", 2)},
                    {.target = CompareTarget::kModRevision,
                     .op = CompareOp::kLess,
                     .key = "b",
                     .number = 1ull << 40}},
       .then_ops = {{.type = TxnOpType::kPut, .key = "a", .value = "1", .lease = 42},
                    {.type = TxnOpType::kDeletePrefix, .key = "z/"},
                    {.type = TxnOpType::kGetPrefix, .key = "", .limit = 5}},
       .else_ops = {{.type = TxnOpType::kGet, .key = "a"},
                    {.type = TxnOpType::kDelete, .key = "b"}}},
      {.op = CommandOp::kTxn, .request_id = 12},
  };
  for (const Command& c : cases) {
    SCOPED_TRACE(describe_command(c));
    Result<Command> back = decode_command(encode_command(c));
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, c);
  }
}

TEST(CommandTest, EveryTruncationIsCorruption) {
  const std::string full = encode_command({.op = CommandOp::kCas,
                                           .request_id = 300,
                                           .key = "key",
                                           .value = "val",
                                           .expect_revision = 99});
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(decode_command(full.substr(0, n)).status().code(), Code::kCorruption) << n;
  }
  EXPECT_EQ(decode_command(full + "x").status().code(), Code::kCorruption);
}

TEST(CommandTest, EveryTruncationOfATxnIsCorruption) {
  const std::string full =
      encode_command({.op = CommandOp::kTxn,
                      .request_id = 3,
                      .compares = {{.target = CompareTarget::kVersion,
                                    .op = CompareOp::kGreater,
                                    .key = "c",
                                    .number = 2}},
                      .then_ops = {{.type = TxnOpType::kPut, .key = "a", .value = "1", .lease = 9}},
                      .else_ops = {{.type = TxnOpType::kGetPrefix, .key = "p", .limit = 3}}});
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(decode_command(full.substr(0, n)).status().code(), Code::kCorruption) << n;
  }
  EXPECT_EQ(decode_command(full + "x").status().code(), Code::kCorruption);
}

TEST(CommandTest, TxnValidationRefusesTwoWritesOfOneKey) {
  Command c{.op = CommandOp::kTxn};
  c.then_ops = {{.type = TxnOpType::kPut, .key = "a/1"}, {.type = TxnOpType::kGet, .key = "a/1"}};
  EXPECT_TRUE(validate_txn(c).ok());
  c.then_ops.push_back({.type = TxnOpType::kDelete, .key = "a/1"});
  EXPECT_EQ(validate_txn(c).code(), Code::kInvalidArgument);
  c.then_ops = {{.type = TxnOpType::kPut, .key = "a/1"},
                {.type = TxnOpType::kDeletePrefix, .key = "a/"}};
  EXPECT_EQ(validate_txn(c).code(), Code::kInvalidArgument);
  // The two branches are separate: the same key in each is fine.
  c.then_ops = {{.type = TxnOpType::kPut, .key = "a/1"}};
  c.else_ops = {{.type = TxnOpType::kDelete, .key = "a/1"}};
  EXPECT_TRUE(validate_txn(c).ok());
}

TEST(CommandTest, UnknownVersionAndOpAreCorruption) {
  std::string c = encode_command({.op = CommandOp::kDelete, .key = "k"});
  std::string bad_version = c;
  bad_version[0] = 2;
  EXPECT_EQ(decode_command(bad_version).status().code(), Code::kCorruption);
  std::string bad_op = c;
  bad_op[1] = 11;
  EXPECT_EQ(decode_command(bad_op).status().code(), Code::kCorruption);
}

TEST(CommandTest, HugeLengthDoesNotAllocate) {
  std::string c;
  c += static_cast<char>(kCommandVersion);
  c += static_cast<char>(CommandOp::kPut);
  put_varint(c, 1);
  put_varint(c, std::numeric_limits<std::uint64_t>::max());  // key length far past the end
  EXPECT_EQ(decode_command(c).status().code(), Code::kCorruption);
}

TEST(VarintTest, RoundTripsAndRejectsOverflow) {
  for (std::uint64_t v : {0ull, 1ull, 127ull, 128ull, 16383ull, 16384ull, ~0ull}) {
    std::string s;
    put_varint(s, v);
    std::string_view in = s;
    std::uint64_t got = 1;
    ASSERT_TRUE(get_varint(in, got));
    EXPECT_EQ(got, v);
    EXPECT_TRUE(in.empty());
  }
  std::string eleven(11, '\xff');
  std::string_view in = eleven;
  std::uint64_t v;
  EXPECT_FALSE(get_varint(in, v));
}

TEST(CommandTest, DescribeEscapesBinary) {
  EXPECT_EQ(describe_command({.op = CommandOp::kPut, .request_id = 3, .key = "a\n", .value = "ok"}),
            "put key=a\\x0a value=ok request_id=3");
}

}  // namespace
}  // namespace kvc::storage
