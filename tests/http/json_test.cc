#include "kvc/http/json.h"

#include <gtest/gtest.h>

#include <string>

namespace kvc::http {
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

TEST(JsonTest, DepthLimitIsExact) {
  EXPECT_TRUE(parse_json("[[[]]]", 2).ok());
  EXPECT_FALSE(parse_json("[[[[]]]]", 2).ok());
}

}  // namespace
}  // namespace kvc::http
