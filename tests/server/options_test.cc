// EngineOptions: validation, and the check of a --config file's setting names.
#include "kvc/server/options.h"

#include <gtest/gtest.h>

namespace kvc::server {
namespace {

const std::vector<std::string> kKnown = {"name",
                                         "data-dir",
                                         "listen-peer",
                                         "election-timeout",
                                         "heartbeat-interval",
                                         "force-new-cluster",
                                         "history-revisions",
                                         "log-level"};

TEST(OptionsTest, ConfigWithKnownSettingsPasses) {
  const std::string text =
      "# a comment\n"
      "; another\n"
      "\n"
      "[default]\n"
      "name = \"m1\"\n"
      "  data-dir = '/var/lib/kvc'  \n"
      "\"listen-peer\" = \"127.0.0.1:2380\"  # trailing comment\n"
      "election-timeout=5s\n"
      "force-new-cluster\n"
      "history-revisions = [1,\n"
      "  not-a-key = 2,\n"
      "  3]\n"
      "--log-level = debug\n";
  EXPECT_TRUE(check_config_keys(text, "k.conf", kKnown).ok());
  EXPECT_TRUE(check_config_keys("", "k.conf", kKnown).ok());
}

TEST(OptionsTest, UnknownSettingNamesFileLineAndNearestName) {
  const struct {
    const char* name;
    std::string text;
    std::string want;  // a substring of the message
  } cases[] = {
      {"typo", "name = m1\nelection-timout = \"5s\"\n",
       "node.conf:2: unknown setting 'election-timout' (did you mean election-timeout?)"},
      {"underscore", "data_dir = /x\n",
       "node.conf:1: unknown setting 'data_dir' (did you mean data-dir?)"},
      {"flag line", "\n\nforce-new-clustr\n", "node.conf:3: unknown setting 'force-new-clustr'"},
      {"nothing near", "colour = blue\n", "unknown setting 'colour' (the settings are kvc-node's"},
      {"section", "[cluster]\nname = m1\n", "node.conf:1: unknown section [cluster]"},
      {"dotted", "tuning.tick = 1s\n", "unknown setting 'tuning.tick'"},
      {"after an array", "history-revisions = [1,\n2]\nnmae = x\n",
       "node.conf:3: unknown setting 'nmae' (did you mean name?)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Status s = check_config_keys(c.text, "node.conf", kKnown);
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find(c.want), std::string::npos) << s.message();
  }
}

TEST(OptionsTest, HistoryLimitsMustBePositive) {
  EngineOptions o;
  o.name = "m1";
  o.data_dir = "/tmp/x";
  o.listen_peer = "127.0.0.1:1";
  EXPECT_TRUE(o.validate().ok()) << o.validate().to_string();
  o.history_revisions = 0;
  EXPECT_EQ(o.validate().code(), Code::kInvalidArgument);
  o.history_revisions = 10;
  o.history_bytes = 0;
  EXPECT_EQ(o.validate().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvc::server
