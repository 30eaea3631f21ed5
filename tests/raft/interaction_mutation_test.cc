// The interaction scripts have teeth: run against each deliberately broken core
// (kvc_raft_mutable, lib/kvc/raft/mutation.h), every planted Raft bug must change the output
// of at least one script in testdata/. Linked only in builds with KVC_MUTATIONS and without
// sanitizers, like the simulator's mutation tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "interaction.h"
#include "kvc/raft/mutation.h"

namespace kvc::raft::testing {
namespace {

static_assert(kMutationsCompiled, "link kvc_raft_mutable");

std::vector<std::filesystem::path> scripts() {
  std::vector<std::filesystem::path> paths;
  for (const auto& e : std::filesystem::directory_iterator(KVC_RAFT_TESTDATA)) {
    if (e.path().extension() == ".txt") paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// The scripts whose output differs from what they expect, with the first differing command.
std::vector<std::string> scripts_that_differ() {
  std::vector<std::string> differ;
  for (const auto& path : scripts()) {
    Script script;
    Result<std::vector<std::string>> outputs = run_script(path, &script);
    EXPECT_TRUE(outputs.ok()) << outputs.status().to_string();
    if (!outputs.ok()) continue;
    for (std::size_t i = 0; i < script.blocks.size(); ++i) {
      if ((*outputs)[i] != script.blocks[i].expected) {
        differ.push_back(path.filename().string() + ":" + std::to_string(script.blocks[i].line) +
                         " (" + script.blocks[i].command + ")");
        break;
      }
    }
  }
  return differ;
}

class InteractionMutationTest : public ::testing::TestWithParam<Mutation> {
 protected:
  void TearDown() override { set_mutation(Mutation::kNone); }
};

TEST(InteractionMutationBaseTest, TheMutableCoreWithoutAMutationMatchesEveryScript) {
  set_mutation(Mutation::kNone);
  const std::vector<std::string> differ = scripts_that_differ();
  EXPECT_TRUE(differ.empty()) << differ.front();
}

TEST_P(InteractionMutationTest, SomeScriptNoticesThePlantedBug) {
  set_mutation(GetParam());
  const std::vector<std::string> differ = scripts_that_differ();
  EXPECT_FALSE(differ.empty()) << "no script in testdata/ notices " << mutation_name(GetParam());
  std::string list;
  for (const std::string& d : differ) list += d + "; ";
  RecordProperty("noticed_by", list);
}

std::string test_name(const ::testing::TestParamInfo<Mutation>& param) {
  std::string s(mutation_name(param.param));
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(Mutations, InteractionMutationTest, ::testing::ValuesIn(kAllMutations),
                         test_name);

}  // namespace
}  // namespace kvc::raft::testing
