// Scripted Raft scenarios (tests/raft/testdata/*.txt), in the style of etcd's datadriven
// tests: each block is one command, a line "----", and the expected output, then a blank line.
// The expected output is the cluster's state after the command, so a change in behaviour shows
// up as a readable diff. KVC_REWRITE=1 rewrites the files with the actual output (review the
// diff). Commands:
//   cluster N                 a new cluster of N bootstrap voters (ids 1..N)
//   campaign ID               tick ID alone until it leads
//   tick N                    tick every live member N times, delivering everything
//   propose ID DATA           propose on ID
//   conf ID TYPE NODE         propose_conf_change on ID (add-learner, add-voter, promote, remove)
//   add ID                    start an empty member ID (to be added by a change)
//   transfer ID TARGET        transfer_leadership on ID
//   read ID CTX               read_index on ID
//   isolate ID / heal / crash ID / restart-empty ID
//   status                    print every member's state
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_cluster.h"

namespace kvc::raft {
namespace {

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::string status_of(TestCluster& c, int members) {
  std::ostringstream os;
  for (NodeId id = 1; id <= static_cast<NodeId>(members); ++id) {
    if (!c.has(id)) continue;
    Node& n = c.n(id);
    os << id << ": " << role_name(n.role()) << " term=" << n.term() << " leader=" << n.leader()
       << " commit=" << n.commit() << " last=" << n.log().last_index() << " voters=";
    for (NodeId v : n.conf_state().voters) os << v << ",";
    os << " learners=";
    for (NodeId l : n.conf_state().learners) os << l << ",";
    if (c.down().count(id)) os << " (down)";
    os << "\n";
  }
  return os.str();
}

std::string run_command(std::unique_ptr<TestCluster>& c, int& members, const std::string& line) {
  const auto w = words(line);
  if (w.empty()) return "error: empty command\n";
  const std::string& cmd = w[0];
  auto id = [&](std::size_t i) { return static_cast<NodeId>(std::stoull(w.at(i))); };
  if (cmd == "cluster") {
    members = std::stoi(w.at(1));
    c = std::make_unique<TestCluster>(members);
    return status_of(*c, members);
  }
  if (!c) return "error: no cluster\n";
  std::string out;
  if (cmd == "campaign") {
    c->elect(id(1));
  } else if (cmd == "tick") {
    c->tick_all(std::stoi(w.at(1)));
  } else if (cmd == "propose") {
    Result<std::uint64_t> r = c->n(id(1)).propose(w.at(2));
    out = r.ok() ? "index " + std::to_string(*r) + "\n" : r.status().to_string() + "\n";
    c->settle();
  } else if (cmd == "conf") {
    const std::string& t = w.at(2);
    ConfChangeType type = t == "add-learner" ? ConfChangeType::kAddLearner
                          : t == "add-voter" ? ConfChangeType::kAddVoter
                          : t == "promote"   ? ConfChangeType::kPromoteLearner
                                             : ConfChangeType::kRemove;
    Result<std::uint64_t> r = c->n(id(1)).propose_conf_change({type, id(3), ""});
    out = r.ok() ? "index " + std::to_string(*r) + "\n" : r.status().to_string() + "\n";
    c->settle();
  } else if (cmd == "add") {
    c->add(id(1), RestoreState{});
    members = std::max(members, static_cast<int>(id(1)));
  } else if (cmd == "transfer") {
    Status s = c->n(id(1)).transfer_leadership(id(2));
    out = s.ok() ? "" : s.to_string() + "\n";
    c->settle();
  } else if (cmd == "read") {
    Status s = c->n(id(1)).read_index(w.at(2));
    c->settle();
    c->tick_all(1);
    out = s.ok() ? "" : s.to_string() + "\n";
    for (const ReadState& rs : c->reads(id(1))) {
      out += "read " + rs.context + " index=" + std::to_string(rs.index) + "\n";
    }
    c->reads(id(1)).clear();
  } else if (cmd == "isolate") {
    c->isolate(id(1));
  } else if (cmd == "heal") {
    c->heal();
  } else if (cmd == "crash") {
    c->down().insert(id(1));
  } else {
    return "error: unknown command " + cmd + "\n";
  }
  return out + status_of(*c, members);
}

void run_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  std::unique_ptr<TestCluster> c;
  int members = 0;
  std::ostringstream rewritten;
  for (std::size_t i = 0; i < lines.size();) {
    if (lines[i].empty() || lines[i][0] == '#') {
      rewritten << lines[i] << "\n";
      ++i;
      continue;
    }
    const std::string cmd = lines[i++];
    ASSERT_LT(i, lines.size()) << path << ": command without ----";
    ASSERT_EQ(lines[i], "----") << path << ":" << i + 1;
    ++i;
    std::string want;
    while (i < lines.size() && !lines[i].empty()) want += lines[i++] + "\n";
    const std::string got = run_command(c, members, cmd);
    EXPECT_EQ(got, want) << path.filename() << ": " << cmd;
    rewritten << cmd << "\n----\n" << got << "\n";
    while (i < lines.size() && lines[i].empty()) ++i;
  }
  if (std::getenv("KVC_REWRITE") != nullptr) {
    std::ofstream out(path);
    out << rewritten.str();
  }
}

TEST(ScenarioTest, ScriptsInTestdataMatch) {
  const std::filesystem::path dir = KVC_RAFT_TESTDATA;
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".txt") continue;
    SCOPED_TRACE(e.path().filename().string());
    run_file(e.path());
    ++files;
  }
  EXPECT_GE(files, 3);
}

}  // namespace
}  // namespace kvc::raft
