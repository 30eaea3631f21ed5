// ConfChange encoding and the membership transition function.
#include "kvc/raft/conf_change.h"

#include <gtest/gtest.h>

namespace kvc::raft {
namespace {

TEST(ConfChangeTest, EncodeDecodeRoundTrip) {
  const ConfChange cases[] = {
      {ConfChangeType::kAddVoter, 1, ""},
      {ConfChangeType::kAddLearner, 0xfedcba9876543210ull, "name=n4 peer=127.0.0.1:7000"},
      {ConfChangeType::kPromoteLearner, 7, std::string("\0\xff\x01", 3)},
      {ConfChangeType::kRemove, 3, "x"},
      {ConfChangeType::kUpdate, 8, "addresses"},
  };
  for (const auto& cc : cases) {
    SCOPED_TRACE(cc.node);
    Result<ConfChange> back = decode_conf_change(encode_conf_change(cc));
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, cc);
  }
}

TEST(ConfChangeTest, DecodeRejectsMalformedBytes) {
  std::string good = encode_conf_change({ConfChangeType::kAddLearner, 5, "ctx"});
  std::string bad_version = good;
  bad_version[0] = 9;
  std::string bad_type = good;
  bad_type[1] = 9;
  std::string node_zero = encode_conf_change({ConfChangeType::kAddLearner, 5, ""});
  for (int i = 2; i < 10; ++i) node_zero[i] = 0;
  const struct {
    const char* name;
    std::string bytes;
  } cases[] = {{"empty", ""},
               {"short header", good.substr(0, 13)},
               {"bad version", bad_version},
               {"bad type", bad_type},
               {"truncated context", good.substr(0, good.size() - 1)},
               {"trailing bytes", good + "z"},
               {"node zero", node_zero}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(decode_conf_change(c.bytes).status().code(), Code::kCorruption);
  }
}

TEST(ConfChangeTest, ApplyFollowsSingleStepRules) {
  const ConfState base{{1, 2, 3}, {4}};
  const struct {
    const char* name;
    ConfChange cc;
    Code want;
    ConfState after;
  } cases[] = {
      {"add voter", {ConfChangeType::kAddVoter, 5, ""}, Code::kOk, {{1, 2, 3, 5}, {4}}},
      {"add learner", {ConfChangeType::kAddLearner, 0 + 6, ""}, Code::kOk, {{1, 2, 3}, {4, 6}}},
      {"add existing voter", {ConfChangeType::kAddLearner, 2, ""}, Code::kAlreadyExists, {}},
      {"add existing learner", {ConfChangeType::kAddVoter, 4, ""}, Code::kAlreadyExists, {}},
      {"promote learner", {ConfChangeType::kPromoteLearner, 4, ""}, Code::kOk, {{1, 2, 3, 4}, {}}},
      {"promote voter", {ConfChangeType::kPromoteLearner, 1, ""}, Code::kFailedPrecondition, {}},
      {"remove voter", {ConfChangeType::kRemove, 2, ""}, Code::kOk, {{1, 3}, {4}}},
      {"remove learner", {ConfChangeType::kRemove, 4, ""}, Code::kOk, {{1, 2, 3}, {}}},
      {"remove stranger", {ConfChangeType::kRemove, 9, ""}, Code::kNotFound, {}},
      // An update changes addresses only: the sets stay as they are.
      {"update voter", {ConfChangeType::kUpdate, 2, "ctx"}, Code::kOk, {{1, 2, 3}, {4}}},
      {"update learner", {ConfChangeType::kUpdate, 4, "ctx"}, Code::kOk, {{1, 2, 3}, {4}}},
      {"update stranger", {ConfChangeType::kUpdate, 9, "ctx"}, Code::kNotFound, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<ConfState> r = apply_conf_change(base, c.cc);
    EXPECT_EQ(r.status().code(), c.want);
    if (r.ok()) {
      EXPECT_EQ(*r, c.after);
    }
  }
  EXPECT_EQ(apply_conf_change({{1}, {}}, {ConfChangeType::kRemove, 1, ""}).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(apply_conf_change({{1}, {}}, {ConfChangeType::kUpdate, 1, "ctx"}).status().code(),
            Code::kOk);
}

}  // namespace
}  // namespace kvc::raft
