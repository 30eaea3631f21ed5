#include "kvc/common/text.h"

#include <gtest/gtest.h>

#include <random>

namespace kvc {
namespace {

TEST(TextTest, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(TextTest, Base64KnownVectorsAndRoundTrip) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  std::mt19937 rng(3);
  for (int n = 0; n < 100; ++n) {
    std::string s(static_cast<std::size_t>(n), '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    Result<std::string> back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  for (const char* bad : {"Zg=", "Z===", "Zg=a", "Zm9v!", "Zg==Zg=="}) {
    EXPECT_FALSE(base64_decode(bad).ok()) << bad;
  }
}

TEST(TextTest, Durations) {
  const struct {
    const char* in;
    std::uint64_t ms;
  } good[] = {{"5", 5000},    {"5s", 5000},    {"250ms", 250}, {"1.5s", 1500},
              {"2m", 120000}, {"1h", 3600000}, {"0", 0}};
  for (const auto& c : good) {
    Result<std::uint64_t> r = parse_duration_ms(c.in);
    ASSERT_TRUE(r.ok()) << c.in;
    EXPECT_EQ(*r, c.ms) << c.in;
  }
  for (const char* bad : {"", "s", "5x", "-1s", "1..5s", "5 s"}) {
    EXPECT_FALSE(parse_duration_ms(bad).ok()) << bad;
  }
}

TEST(TextTest, JsonEscapeKeepsTextAndEscapesTheRest) {
  EXPECT_EQ(json_escape("a\"b\\c\n\t\r"), "a\\\"b\\\\c\\n\\t\\r");
  EXPECT_EQ(json_escape("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(json_escape(std::string("\x01\x7f", 2)), "\\u0001\\u007f");
  EXPECT_EQ(json_escape("\xff"), "\\u00ff");
  EXPECT_EQ(json_escape("\xc3"), "\\u00c3");  // a truncated sequence
}

// The one JSON form of keys and values: text when it is valid UTF-8, else base64 under
// NAME_base64; exactly one of the two.
TEST(TextTest, BackslashEscapeForQuotedTextAndPrometheus) {
  const std::string bytes = "a\\b\"c\nd\te\rf\x01g\x7fh\xc3\xa9";
  EXPECT_EQ(backslash_escape(bytes), "a\\\\b\\\"c\\nd\\te\\rf\\x01g\\x7fh\xc3\xa9");
  EXPECT_EQ(backslash_escape(bytes, {.hex_non_ascii = true}),
            "a\\\\b\\\"c\\nd\\te\\rf\\x01g\\x7fh\\xc3\\xa9");
  // Prometheus label values: only \\, \" and \n; HELP text: only \\ and \n.
  EXPECT_EQ(backslash_escape(bytes, {.tab_cr = false, .hex_controls = false}),
            "a\\\\b\\\"c\\nd\te\rf\x01g\x7fh\xc3\xa9");
  EXPECT_EQ(backslash_escape(bytes, {.quote = false, .tab_cr = false, .hex_controls = false}),
            "a\\\\b\"c\\nd\te\rf\x01g\x7fh\xc3\xa9");
}

TEST(TextTest, JsonBytesMemberIsTextOrBase64) {
  const struct {
    const char* name;
    std::string bytes;
    std::string want;
  } cases[] = {
      {"text", "/a/b", R"("key":"/a/b")"},
      {"escaped text", "a\"b\nc", R"("key":"a\"b\nc")"},
      {"utf-8", "\xe6\xbc\xa2", "\"key\":\"\xe6\xbc\xa2\""},
      {"empty", "", R"("key":"")"},
      {"nul is valid utf-8", std::string("a\0b", 3), R"("key":"a\u0000b")"},
      {"binary", std::string("\xff\x00\x01", 3), R"("key_base64":"/wAB")"},
      {"overlong", "\xc0\xaf", R"("key_base64":"wK8=")"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(json_bytes_member("key", c.bytes), c.want);
  }
}

TEST(TextTest, IdHexIsSixteenDigits) {
  EXPECT_EQ(id_hex(0), "0000000000000000");
  EXPECT_EQ(id_hex(0x1a2b), "0000000000001a2b");
  EXPECT_EQ(id_hex(~0ull), "ffffffffffffffff");
  EXPECT_EQ(id_hex(9007199254740993ull), "0020000000000001");  // 2^53 + 1: no rounding
}

TEST(TextTest, HexEncodeDecodeAndNumbers) {
  const std::string bytes("\x00\x01\x7f\x80\xab\xff", 6);
  EXPECT_EQ(hex_encode(bytes), "00017f80abff");
  EXPECT_EQ(hex_encode(""), "");
  Result<std::string> back = hex_decode("00017F80abFF");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, bytes);
  EXPECT_EQ(hex_decode("abc").status().message(), "odd number of hex digits");
  EXPECT_EQ(hex_decode("zz").status().message(), "bad hex digit");
  EXPECT_EQ(hex_digit_value('7'), 7);
  EXPECT_EQ(hex_digit_value('F'), 15);
  EXPECT_EQ(hex_digit_value('g'), -1);

  EXPECT_EQ(u32_hex(0x1234abu), "001234ab");
  EXPECT_EQ(parse_hex_u64("00000000000000ff"), 0xffu);
  EXPECT_EQ(parse_hex_u64(id_hex(UINT64_MAX)), UINT64_MAX);
  EXPECT_EQ(parse_hex_u64("1"), 1u);
  const char* refused[] = {"", "00000000000000000", "00FF", "0x1", "-1", "12 "};
  for (const char* r : refused) {
    SCOPED_TRACE(r);
    EXPECT_FALSE(parse_hex_u64(r).has_value());
  }
}

TEST(TextTest, HumanBytes) {
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(human_bytes(64ull << 20), "64.0 MiB");
  EXPECT_EQ(human_bytes(3ull << 40), "3.0 TiB");
}

TEST(TextTest, DisplayWidthCountsColumns) {
  const struct {
    const char* text;
    std::size_t width;
  } cases[] = {
      {"", 0},
      {"abc", 3},
      {"caf\xc3\xa9", 4},               // é precomposed
      {"cafe\xcc\x81", 4},              // e + combining acute
      {"\xe6\xbc\xa2\xe5\xad\x97", 4},  // 漢字
      {"\xef\xbc\xa1", 2},              // fullwidth A
      {"\xea\xb0\x80", 2},              // Hangul syllable
      {"\xf0\x9f\x98\x80", 2},          // 😀
      {"a\xe2\x80\x8b"
       "b",
       2},          // zero-width space
      {"\xff", 1},  // an invalid byte counts one
  };
  for (const auto& c : cases) EXPECT_EQ(display_width(c.text), c.width) << c.text;
}

TEST(TextTest, TerminalCellEscapesAndTruncatesByDisplayWidth) {
  EXPECT_EQ(terminal_cell("plain"), "plain");
  EXPECT_EQ(terminal_cell("a\tb\nc\\"), "a\\tb\\nc\\\\");
  EXPECT_EQ(terminal_cell(std::string("\x00\xff\x1b", 3)), "\\x00\\xff\\x1b");
  EXPECT_EQ(terminal_cell("\xc2\x85"), "\\xc2\\x85");  // NEL, a C1 control
  EXPECT_EQ(terminal_cell("\xe6\xbc\xa2"), "\xe6\xbc\xa2");
  // Exactly the limit fits; one more column is cut to the limit with an ellipsis.
  EXPECT_EQ(terminal_cell("abcde", 5), "abcde");
  EXPECT_EQ(terminal_cell("abcdef", 5), "abcd\xe2\x80\xa6");
  // A wide character that would straddle the limit is left out whole.
  EXPECT_EQ(terminal_cell("ab\xe6\xbc\xa2\xe5\xad\x97x", 5), "ab\xe6\xbc\xa2\xe2\x80\xa6");
  EXPECT_EQ(display_width(terminal_cell("ab\xe6\xbc\xa2\xe5\xad\x97x", 5)), 5u);
  // Escapes count their printed width.
  EXPECT_EQ(terminal_cell("\xff\xff\xff", 10), "\\xff\\xff\xe2\x80\xa6");
  EXPECT_EQ(terminal_cell("abc", 0), "");
  // A 100 KB value, text or binary, becomes a cell of at most 64 columns.
  std::string big(100 * 1024, 'v');
  std::string binary(100 * 1024, '\x80');
  for (const std::string* v : {&big, &binary}) {
    const std::string cell = terminal_cell(*v, 64);
    // Text fills the 64 columns; escapes (4 columns each) stop where the next would not fit.
    EXPECT_LE(display_width(cell), 64u);
    EXPECT_GE(display_width(cell), 61u);
    EXPECT_LT(cell.size(), 200u);
    EXPECT_EQ(cell.substr(cell.size() - 3), "\xe2\x80\xa6");
  }
  EXPECT_EQ(display_width(terminal_cell(big, 64)), 64u);
}

TEST(TextTest, NearestNameSuggestsLikelyTypos) {
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
  const std::vector<std::string> keys = {"election-timeout", "heartbeat-interval", "name",
                                         "data-dir",         "listen-peer",        "listen-client"};
  EXPECT_EQ(nearest_name("election-timout", keys), "election-timeout");
  EXPECT_EQ(nearest_name("data_dir", keys), "data-dir");
  EXPECT_EQ(nearest_name("nmae", keys), "name");
  EXPECT_EQ(nearest_name("listen-clients", keys), "listen-client");
  EXPECT_EQ(nearest_name("completely-unrelated", keys), "");
  EXPECT_EQ(nearest_name("x", {}), "");
}

}  // namespace
}  // namespace kvc
