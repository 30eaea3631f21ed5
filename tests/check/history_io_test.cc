// JSON Lines histories: exact format, byte-exact round trips, tolerant reading of valid JSON,
// and a clear Status (never a crash) for each kind of malformed input.
#include "kvc/check/history_io.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>

#include "kvc/check/linearizability.h"
#include "kvc/check/random_history.h"
#include "support/test_dir.h"

namespace kvc::check {
namespace {

void expect_same(const Operation& a, const Operation& b) {
  EXPECT_EQ(a.client, b.client);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.expect_revision, b.expect_revision);
  EXPECT_EQ(a.outcome, b.outcome);
  EXPECT_EQ(a.found, b.found);
  EXPECT_EQ(a.read_value, b.read_value);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.invoke_time, b.invoke_time);
  EXPECT_EQ(a.response_time, b.response_time);
}

void expect_same(const History& a, const History& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(i);
    expect_same(a[i], b[i]);
  }
}

Operation sample_cas() {
  Operation op;
  op.client = 3;
  op.kind = OpKind::kCas;
  op.key = "k";
  op.value = "v7";
  op.expect_revision = 12;
  op.found = true;
  op.revision = 15;
  op.invoke_time = 40;
  op.response_time = 52;
  return op;
}

TEST(HistoryIoTest, WritesTheDocumentedFormat) {
  EXPECT_EQ(operation_to_json(sample_cas()),
            R"({"client":3,"kind":"cas","key":"k","value":"v7","expect_revision":12,)"
            R"("outcome":"ok","found":true,"read_value":"","revision":15,"invoke_time":40,)"
            R"("response_time":52})");
  Operation op;
  op.kind = OpKind::kPut;
  op.key = "caf\xc3\xa9 \"q\"\n";
  op.value = std::string("\xff\x00", 2);
  op.outcome = Outcome::kUnknown;
  op.response_time = kNever;
  EXPECT_EQ(operation_to_json(op),
            R"({"client":0,"kind":"put","key":"caf)"
            "\xc3\xa9"
            R"( \"q\"\n","value_hex":"ff00","expect_revision":0,"outcome":"unknown",)"
            R"("found":false,"read_value":"","revision":0,"invoke_time":0,"response_time":null})");
}

TEST(HistoryIoTest, RoundTripsRandomHistories) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const History h = random_history({.seed = seed,
                                      .operations = 200,
                                      .clients = 5,
                                      .keys = 3,
                                      .unknown_fraction = 0.1,
                                      .failed_fraction = 0.05,
                                      .binary_values = true});
    const Result<History> back = history_from_jsonl(history_to_jsonl(h));
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    expect_same(h, *back);
  }
}

TEST(HistoryIoTest, RoundTripsArbitraryBytesAndExtremeNumbers) {
  std::mt19937_64 rng(17);
  History h;
  for (int i = 0; i < 500; ++i) {
    Operation op;
    op.client = rng();
    op.kind = static_cast<OpKind>(rng() % 4);
    op.outcome = static_cast<Outcome>(rng() % 3);
    auto bytes = [&] {
      std::string s(rng() % 12, '\0');
      for (char& c : s) c = static_cast<char>(rng() % 256);
      return s;
    };
    op.key = bytes();
    op.value = bytes();
    op.read_value = bytes();
    op.found = rng() % 2 == 0;
    op.expect_revision = i % 7 == 0 ? kNever : rng();
    op.revision = rng();
    op.invoke_time = rng() % 1000;
    op.response_time = i % 5 == 0 ? kNever : op.invoke_time + rng() % 1000;
    h.push_back(op);
  }
  const Result<History> back = history_from_jsonl(history_to_jsonl(h));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  expect_same(h, *back);
}

TEST(HistoryIoTest, ReadsAnyValidSpelling) {
  const std::string text =
      "\n"
      "  { \"response_time\" : null , \"kind\":\"get\", \"found\":true,\r\n"
      "{\"kind\":\"put\",\"key\":\"\\u00e9\\ud83d\\ude00\\/\\b\\f\",\"future\":{\"a\":[1,-2.5e3,"
      "true,null,\"x\"]},\"outcome\":\"ok\",\"invoke_time\":1,\"response_time\":2}\n"
      "   \t\n"
      "{\"key_hex\":\"00FFab\",\"kind\":\"delete\",\"outcome\":\"failed\",\"response_time\":0}";
  // The first line is malformed on purpose; check the rest, then the whole.
  const Result<History> rest = history_from_jsonl(text.substr(text.find("{\"kind\"")));
  ASSERT_TRUE(rest.ok()) << rest.status().to_string();
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].key, "\xc3\xa9\xf0\x9f\x98\x80/\b\f");
  EXPECT_EQ((*rest)[0].response_time, 2u);
  EXPECT_EQ((*rest)[1].key, std::string("\x00\xff\xab", 3));
  EXPECT_EQ((*rest)[1].kind, OpKind::kDelete);
  EXPECT_EQ((*rest)[1].outcome, Outcome::kFailed);
  const Result<History> whole = history_from_jsonl(text);
  ASSERT_FALSE(whole.ok());
  EXPECT_EQ(whole.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(whole.status().message().rfind("line 2: ", 0), 0u) << whole.status().message();
}

TEST(HistoryIoTest, RejectsMalformedLines) {
  const struct {
    const char* name;
    std::string line;
    const char* want;  // part of the message
  } cases[] = {
      {"not an object", "[1]", "expected an object"},
      {"empty object lacks kind", "{}", "missing field \"kind\""},
      {"missing key", R"({"kind":"get"})", "missing field \"key\""},
      {"truncated", R"({"kind":"get","key":"k")", "unexpected end of input"},
      {"unterminated string", R"({"kind":"get","key":"k)", "missing closing quote"},
      {"bad escape", R"({"kind":"get","key":"\q"})", "forbidden character after backslash"},
      {"short unicode escape", R"({"kind":"get","key":"\u12"})",
       "must be followed by 4 hex digits"},
      {"lone low surrogate", R"({"kind":"get","key":"\udc00"})", "must follow U+D800..U+DBFF"},
      {"lone high surrogate", R"({"kind":"get","key":"\ud800x"})",
       "must be followed by U+DC00..U+DFFF"},
      {"control character", "{\"kind\":\"get\",\"key\":\"a\x01\"}", "control character U+0001"},
      {"negative number", R"({"kind":"get","key":"k","client":-1})", "non-negative integer"},
      {"fraction", R"({"kind":"get","key":"k","client":1.5})", "expected an integer"},
      {"exponent", R"({"kind":"get","key":"k","revision":1e3})", "expected an integer"},
      {"overflow", R"({"kind":"get","key":"k","revision":18446744073709551616})", "out of range"},
      {"string for a number", R"({"kind":"get","key":"k","client":"1"})", "non-negative integer"},
      {"number for a bool", R"({"kind":"get","key":"k","found":1})", "true or false"},
      {"number for a string", R"({"kind":"get","key":5})", "expected a string"},
      {"unknown kind", R"({"kind":"scan","key":"k"})", "unknown kind"},
      {"unknown outcome", R"({"kind":"get","key":"k","outcome":"maybe"})", "unknown outcome"},
      {"duplicate field", R"({"kind":"get","kind":"put","key":"k"})", "duplicate field"},
      {"text and hex key", R"({"kind":"get","key":"k","key_hex":"6b"})", "both"},
      {"hex and text key", R"({"kind":"get","key_hex":"6b","key":"k"})", "both"},
      {"odd hex", R"({"kind":"get","key_hex":"abc"})", "odd number of hex digits"},
      {"bad hex", R"({"kind":"get","key_hex":"zz"})", "bad hex digit"},
      {"trailing text", R"({"kind":"get","key":"k"} x)", "expected end of input"},
      {"two objects", R"({"kind":"get","key":"k"}{"kind":"get","key":"k"})",
       "expected end of input"},
      {"response before invoke", R"({"kind":"get","key":"k","invoke_time":5,"response_time":4})",
       "before invoke_time"},
      {"deep nesting",
       R"({"kind":"get","key":"k","x":)" + std::string(100, '[') + std::string(100, ']') + "}",
       "nesting deeper than 32"},
      {"bad unknown value", R"({"kind":"get","key":"k","x":tru})", "invalid literal"},
      {"missing colon", R"({"kind" "get"})", "expected ':'"},
      {"trailing comma", R"({"kind":"get","key":"k",})", "expected string literal"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Result<Operation> op = operation_from_json(c.line);
    ASSERT_FALSE(op.ok());
    EXPECT_EQ(op.status().code(), Code::kInvalidArgument);
    EXPECT_NE(op.status().message().find(c.want), std::string::npos) << op.status().message();
    const Result<History> h = history_from_jsonl("\n" + c.line + "\n");
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().message().rfind("line 2: ", 0), 0u) << h.status().message();
  }
}

TEST(HistoryIoTest, SavedFailingHistoryRechecksTheSame) {
  History h = random_history(
      {.seed = 5, .operations = 300, .clients = 6, .keys = 2, .binary_values = true});
  for (Operation& op : h) {  // plant a read of a value nobody wrote
    if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) {
      op.found = true;
      op.read_value = std::string("\xfe\x00gone", 6);
      op.revision = 1;
      break;
    }
  }
  const CheckResult before = check_history(h);
  ASSERT_EQ(before.verdict, Verdict::kNotLinearizable);
  const std::string path = test::test_dir() + "/history.jsonl";
  ASSERT_TRUE(write_history_file(path, h).ok());
  const Result<History> back = read_history_file(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  const CheckResult after = check_history(*back);
  EXPECT_EQ(after.verdict, before.verdict);
  EXPECT_EQ(after.key, before.key);
  EXPECT_EQ(after.culprits, before.culprits);
  EXPECT_EQ(after.explanation, before.explanation);
  std::remove(path.c_str());
}

TEST(HistoryIoTest, FileErrorsAreStatuses) {
  const Result<History> missing = read_history_file(test::test_dir() + "/no/such/file.jsonl");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kIOError);
  EXPECT_NE(missing.status().message().find("no/such/file.jsonl"), std::string::npos);
  EXPECT_FALSE(write_history_file(test::test_dir() + "/no/such/dir/h.jsonl", {}).ok());

  const std::string path = test::test_dir() + "/bad.jsonl";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("{\"kind\":\"get\",\"key\":\"k\"}\n{\"kind\":\"get\"\n", f);
  std::fclose(f);
  const Result<History> bad = read_history_file(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind(path + ": line 2: ", 0), 0u) << bad.status().message();
  std::remove(path.c_str());
}

TEST(OpKindNameTest, NamesKindsAndOutcomes) {
  EXPECT_EQ(op_kind_name(OpKind::kPut), "put");
  EXPECT_EQ(op_kind_name(OpKind::kGet), "get");
  EXPECT_EQ(op_kind_name(OpKind::kDelete), "delete");
  EXPECT_EQ(op_kind_name(OpKind::kCas), "cas");
  EXPECT_EQ(outcome_name(Outcome::kOk), "ok");
  EXPECT_EQ(outcome_name(Outcome::kFailed), "failed");
  EXPECT_EQ(outcome_name(Outcome::kUnknown), "unknown");
}

}  // namespace
}  // namespace kvc::check
