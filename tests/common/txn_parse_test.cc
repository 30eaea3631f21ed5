#include "kvc/common/txn_parse.h"

#include <gtest/gtest.h>

#include <string>

namespace kvc {
namespace {

using namespace std::string_literals;

// The same txn in both forms reads the same: kvc-ctl's text and JSON, and HTTP's JSON.
TEST(TxnParseTest, TextAndJsonFormsAgree) {
  const std::string text =
      "# a comment\n"
      "mod(\"k\") > \"0\"\n"
      "value(\"v\") = \"a b\"\n"
      "missing(\"gone\")\n"
      "lease(\"l\") != 1234abcd\n"
      "\n"
      "put k \"x\\ny\" --lease 1234abcd\n"
      "get p/ --prefix --limit 10\n"
      "\n"
      "del k\n"
      "del q/ --prefix\n";
  const std::string json =
      R"({"compares":[{"target":"mod","key":"k","op":">","value":"0"},)"
      R"({"target":"value","key":"v","op":"=","value":"a b"},{"target":"missing","key":"gone"},)"
      R"({"target":"lease","key_base64":"bA==","op":"!=","value":"1234abcd"}],)"
      R"("success":[{"op":"put","key":"k","value":"x\ny","lease":"1234abcd"},)"
      R"({"op":"get","key":"p/","prefix":true,"limit":10}],)"
      R"("failure":[{"op":"del","key":"k"},{"op":"delete","key":"q/","prefix":true}]})";
  Result<TxnSpec> t = parse_txn_text(text);
  ASSERT_TRUE(t.ok()) << t.status().message();
  Result<TxnSpec> j = parse_txn_json(json);
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ(t->compares, j->compares);
  EXPECT_EQ(t->then_ops, j->then_ops);
  EXPECT_EQ(t->else_ops, j->else_ops);
  ASSERT_EQ(j->compares.size(), 4u);
  EXPECT_EQ(j->compares[2].target, CompareTarget::kCreateRevision);
  EXPECT_EQ(j->compares[2].op, CompareOp::kEqual);
  EXPECT_EQ(j->compares[3].number, 0x1234abcdu);
  ASSERT_EQ(j->then_ops.size(), 2u);
  EXPECT_EQ(j->then_ops[0].value, "x\ny");
  EXPECT_EQ(j->then_ops[0].lease, 0x1234abcdu);
  EXPECT_EQ(j->then_ops[1].type, TxnOpType::kGetPrefix);
  EXPECT_EQ(j->then_ops[1].limit, 10u);
  EXPECT_EQ(j->else_ops[1].type, TxnOpType::kDeletePrefix);
}

TEST(TxnParseTest, JsonKeysAndValuesMayBeBase64) {
  Result<TxnSpec> j =
      parse_txn_json(R"({"success":[{"op":"put","key_base64":"AP8=","value_base64":"AAE="}]})");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ(j->then_ops.at(0).key, "\0\xff"s);
  EXPECT_EQ(j->then_ops.at(0).value, "\0\1"s);
  Result<TxnSpec> empty = parse_txn_json("{}");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->compares.empty() && empty->then_ops.empty() && empty->else_ops.empty());
}

TEST(TxnParseTest, RefusesMalformedTxns) {
  const char* json[] = {
      "",
      "[]",
      R"({"compares":[],"extra":1})",
      R"({"success":{}})",
      R"({"compares":[{"key":"k","op":"=","value":"1"}]})",
      R"({"compares":[{"target":"size","key":"k","op":"=","value":"1"}]})",
      R"({"compares":[{"target":"mod","key":"k","value":"1"}]})",
      R"({"compares":[{"target":"mod","key":"k","op":"=","value":"one"}]})",
      R"({"success":[{"op":"put","key":"k"}]})",
      R"({"success":[{"key":"k"}]})",
      R"({"success":["put"]})",
      R"({"success":[{"op":"get"}]})",
      R"({"failure":[{"op":"get","key":"k","limit":1.5}]})",
      R"({"success":[{"op":"put","key":"k","value":"v","lease":"0"}]})",
  };
  for (const char* j : json) {
    SCOPED_TRACE(j);
    Result<TxnSpec> t = parse_txn_json(j);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), Code::kInvalidArgument);
  }
  const struct {
    const char* text;
    const char* says;
  } text[] = {
      {"mod(\"k\") ~ \"1\"\n", "line 1"}, {"\nput k\n", "line 2"},
      {"\n\nfrob k\n", "line 3"},         {"\n\n\n\nput k v\n", "after the failure ops"},
      {"value(\"k) = \"1\"\n", "line 1"},
  };
  for (const auto& c : text) {
    SCOPED_TRACE(c.text);
    Result<TxnSpec> t = parse_txn_text(c.text);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find(c.says), std::string::npos) << t.status().message();
  }
}

TEST(TxnParseTest, LeaseIds) {
  EXPECT_EQ(*parse_lease_id("1234abcd"), 0x1234abcdu);
  EXPECT_EQ(*parse_lease_id("000000001234abcd"), 0x1234abcdu);
  for (const char* bad : {"", "0", "g", "12345678901234567", "-1", " 1"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(parse_lease_id(bad).status().code(), Code::kInvalidArgument);
  }
}

}  // namespace
}  // namespace kvc
