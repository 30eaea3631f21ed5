// Runs every script in tests/raft/testdata/*.txt through the interaction driver (one test per
// file) and compares each command's output with the expected output under it. With
// KVC_REWRITE_TESTDATA=1 it writes the actual output back instead of failing; rewritten output
// records what the code does now, right or wrong, so review the diff before committing it.
#include "interaction.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kvc::raft::testing {
namespace {

std::vector<std::string> script_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(KVC_RAFT_TESTDATA)) {
    if (e.path().extension() == ".txt") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool rewriting() {
  const char* v = std::getenv("KVC_REWRITE_TESTDATA");
  return v != nullptr && std::string(v) == "1";
}

class InteractionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(InteractionTest, ScriptOutputMatches) {
  const std::filesystem::path path =
      std::filesystem::path(KVC_RAFT_TESTDATA) / (GetParam() + ".txt");
  Script script;
  Result<std::vector<std::string>> outputs = run_script(path, &script);
  ASSERT_TRUE(outputs.ok()) << outputs.status().to_string();
  // A misused command (a typo, an unknown member) is a broken script, never expected output.
  for (std::size_t i = 0; i < script.blocks.size(); ++i) {
    EXPECT_EQ((*outputs)[i].find("script error:"), std::string::npos)
        << path.filename().string() << ":" << script.blocks[i].line << ": "
        << script.blocks[i].command << "\n"
        << (*outputs)[i];
  }
  if (rewriting()) {
    std::ofstream(path) << format_script(script, *outputs);
    return;
  }
  for (std::size_t i = 0; i < script.blocks.size(); ++i) {
    const ScriptBlock& b = script.blocks[i];
    EXPECT_EQ((*outputs)[i], b.expected)
        << path.filename().string() << ":" << b.line << ": " << b.command
        << "\n(KVC_REWRITE_TESTDATA=1 rewrites the expected output; review the diff)";
  }
}

// Every gtest name from the file name: letters, digits and '_' only.
std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(Testdata, InteractionTest, ::testing::ValuesIn(script_names()),
                         param_name);

TEST(InteractionScriptTest, ParseAndFormatRoundTrip) {
  const std::string text =
      "# a comment\n"
      "add-nodes 1 voters=(1)\n"
      "----\n"
      "INFO 1: raft started\n"
      "\n"
      "\n"
      "status 1\n"
      "----\n"
      "ok\n"
      "\n"
      "# the end\n";
  Result<Script> s = parse_script(text);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->blocks.size(), 2u);
  EXPECT_EQ(s->blocks[1].line, 7);
  EXPECT_EQ(s->blocks[0].expected, "INFO 1: raft started\n");
  EXPECT_EQ(format_script(*s, {s->blocks[0].expected, s->blocks[1].expected}), text);
  EXPECT_FALSE(parse_script("status 1\nok\n").ok()) << "a command needs its ---- line";
}

TEST(InteractionScriptTest, MisusedCommandsAreScriptErrorsAndRefusalsAreOutput) {
  InteractionEnv env;
  EXPECT_EQ(env.run("add-nodes 3 voters=(1,2,3)").find("script error"), std::string::npos);
  EXPECT_EQ(env.run("frobnicate 1"), "script error: unknown command frobnicate\n");
  EXPECT_EQ(env.run("status 9"), "script error: no member 9\n");
  EXPECT_EQ(env.run("tick x"), "script error: not a member id: x\n");
  EXPECT_EQ(env.run("add-nodes 1 bogus=1"), "script error: unknown option bogus\n");
  // The core refusing something is behaviour, printed as such.
  EXPECT_EQ(env.run("propose 1 x"), "error: not_leader: not leader; leader=0\n");
}

TEST(InteractionScriptTest, BootstrapLearnersFollowTheVoters) {
  InteractionEnv env;
  env.run("add-nodes 3 voters=(1,2) learners=(3)");
  EXPECT_EQ(env.run("status 3"),
            "3: follower term=1 vote=0 leader=0 commit=3 applied=0 log=1..3 voters=(1,2) "
            "learners=(3)\n");
}

TEST(InteractionScriptTest, SameScriptPrintsTheSameTextEveryRun) {
  // Determinism: two fresh environments running the same commands print the same bytes.
  const std::vector<std::string> cmds = {"add-nodes 3 voters=(1,2,3)",
                                         "campaign 2",
                                         "stabilize",
                                         "propose 2 x",
                                         "stabilize",
                                         "run 30",
                                         "status"};
  InteractionEnv a, b;
  for (const std::string& c : cmds) EXPECT_EQ(a.run(c), b.run(c)) << c;
}

}  // namespace
}  // namespace kvc::raft::testing
