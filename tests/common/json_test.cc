#include "kvc/common/json.h"

#include <gtest/gtest.h>

#include <string>

namespace kvc {
namespace {

using namespace std::string_literals;

TEST(JsonTest, ReadsEveryKindOfValue) {
  Result<JsonValue> v = parse_json(
      R"( {"s": "a\"b\\c\/\n\u00e9\ud83d\ude00", "n": -12.5e+3, "big": 18446744073709551615,
           "t": true, "f": false, "z": null, "a": [1, [], {}], "e": {}} )");
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_EQ(v->type, JsonValue::Type::kObject);
  EXPECT_EQ(v->find("s")->text, "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(v->find("n")->type, JsonValue::Type::kNumber);
  EXPECT_EQ(v->find("n")->text, "-12.5e+3");
  EXPECT_FALSE(v->find("n")->as_uint64());
  EXPECT_EQ(v->find("big")->as_uint64(), 18446744073709551615ull);
  EXPECT_TRUE(v->find("t")->boolean);
  EXPECT_FALSE(v->find("f")->boolean);
  EXPECT_EQ(v->find("z")->type, JsonValue::Type::kNull);
  EXPECT_EQ(v->find("a")->array.size(), 3u);
  EXPECT_EQ(v->find("missing"), nullptr);
}

TEST(JsonTest, KeepsRawUtf8AndNul) {
  Result<JsonValue> v = parse_json("\"\xe2\x82\xac\\u0000x\"");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->text, "\xe2\x82\xac\0x"s);
}

TEST(JsonTest, RefusesMalformedDocuments) {
  const struct {
    const char* name;
    std::string text;
  } cases[] = {
      {"empty", ""},
      {"trailing comma", R"({"a":1,})"},
      {"array trailing comma", "[1,]"},
      {"two values", "{} {}"},
      {"single quotes", "{'a':1}"},
      {"unquoted name", "{a:1}"},
      {"missing colon", R"({"a" 1})"},
      {"leading zero", "01"},
      {"bare minus", "-"},
      {"dot without digits", "1."},
      {"exponent without digits", "1e"},
      {"nan", "NaN"},
      {"bad literal", "tru"},
      {"unterminated string", "\"abc"},
      {"raw newline in string", "\"a\nb\""},
      {"bad escape", R"("\x")"},
      {"short unicode escape", R"("\u12")"},
      {"lone low surrogate", R"("\udc00")"},
      {"lone high surrogate", R"("\ud800x")"},
      {"high then non-low", R"("\ud800\u0041")"},
      {"invalid utf8", "\"\xff\""},
      {"overlong utf8", "\"\xc0\xaf\""},
      {"utf8 surrogate", "\"\xed\xa0\x80\""},
      {"truncated utf8", "\"\xe2\x82\""},
      {"too deep", std::string(100, '[') + std::string(100, ']')},
      {"unclosed object", R"({"a":1)"},
      {"comment", "{} // c"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<JsonValue> v = parse_json(c.text);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  }
}

TEST(JsonTest, ErrorsSayWhereAndWhat) {
  Result<JsonValue> v = parse_json(R"({"a": tru})");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message().rfind("invalid json at byte 10: ", 0), 0u) << v.status().message();
  EXPECT_NE(v.status().message().find("invalid literal"), std::string::npos);
  Result<JsonValue> deep = parse_json(std::string(40, '[') + std::string(40, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "invalid json: nesting deeper than 32");
}

TEST(JsonTest, KeepsMembersInOrderWithDuplicates) {
  Result<JsonValue> v = parse_json(R"({"b":1,"a":2,"b":3})");
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->object.size(), 3u);
  EXPECT_EQ(v->object[0].key, "b");
  EXPECT_EQ(v->object[1].key, "a");
  EXPECT_EQ(v->object[2].value.text, "3");
  EXPECT_EQ(v->find("b")->text, "1");
}

TEST(JsonTest, ObjectWriterKeepsOrderAndTheOneEscaper) {
  EXPECT_EQ(JsonObject().done(), "{}");
  const std::string s = JsonObject()
                            .num("n", UINT64_MAX)
                            .str("s", "a\"\n\x01\x7f\xff")
                            .boolean("t", true)
                            .null("z")
                            .raw("o", JsonObject().num("x", 1).done())
                            .bytes("key", "text")
                            .bytes("value", std::string("\xff\x00", 2))
                            .base64("blob", "hi")
                            .done();
  EXPECT_EQ(s, R"({"n":18446744073709551615,"s":"a\"\n\u0001\u007f\u00ff","t":true,"z":null,)"
               R"("o":{"x":1},"key":"text","value_base64":"/wA=","blob_base64":"aGk="})");
  Result<JsonValue> back = parse_json(s);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->find("n")->as_uint64(), UINT64_MAX);
  EXPECT_EQ(json_quote("\xe2\x82\xac"), "\"\xe2\x82\xac\"");
}

TEST(JsonTest, DepthLimitIsExact) {
  EXPECT_TRUE(parse_json("[[[]]]", 2).ok());
  EXPECT_FALSE(parse_json("[[[[]]]]", 2).ok());
}

}  // namespace
}  // namespace kvc
