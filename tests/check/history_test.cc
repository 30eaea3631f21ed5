#include "kvc/check/history.h"

#include <gtest/gtest.h>

namespace kvc::check {
namespace {

// The fields of wire::Response that record_answer reads (check does not link the wire layer).
struct FakeKv {
  std::string value;
  std::uint64_t mod_revision = 0;
};
struct FakeResponse {
  Code code = Code::kOk;
  bool found = false;
  std::vector<FakeKv> kvs;
  std::uint64_t revision = 0;
};

TEST(HistoryTest, RecordAnswerFillsTheResultOfEachKind) {
  const struct {
    const char* name;
    OpKind kind;
    FakeResponse r;
    bool found;
    std::string read_value;
    std::uint64_t revision;
  } cases[] = {
      {"get found", OpKind::kGet, {Code::kOk, true, {{"v", 7}}, 9}, true, "v", 7},
      {"get missing", OpKind::kGet, {Code::kOk, false, {}, 9}, false, "", 0},
      {"get not found", OpKind::kGet, {Code::kNotFound, false, {}, 9}, false, "", 0},
      {"put", OpKind::kPut, {Code::kOk, false, {}, 12}, false, "", 12},
      {"delete existing", OpKind::kDelete, {Code::kOk, true, {}, 13}, true, "", 13},
      {"delete missing", OpKind::kDelete, {Code::kOk, false, {}, 13}, false, "", 0},
      {"cas applied", OpKind::kCas, {Code::kOk, false, {}, 14}, true, "", 14},
      {"cas compare failed", OpKind::kCas, {Code::kCompareFailed, false, {}, 14}, false, "", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Operation op{.kind = c.kind, .outcome = Outcome::kUnknown, .found = true, .revision = 99};
    op.read_value = "stale";
    record_answer(op, c.r);
    EXPECT_EQ(op.outcome, Outcome::kOk);
    EXPECT_EQ(op.found, c.found);
    EXPECT_EQ(op.read_value, c.read_value);
    EXPECT_EQ(op.revision, c.revision);
  }
}

}  // namespace
}  // namespace kvc::check
