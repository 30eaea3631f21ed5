// What an operator and a script meet first, against real kvc-node and kvc-ctl processes
// (issue 13, points 5 and 6): a config file with a misspelt setting, a removed member that
// comes back after every survivor restarted, `member update`, JSON a script can rely on
// (one form for bytes, hex member ids, the revision a read was served at), `-o table` with
// huge and wide values, `snapshot save` to an unwritable or existing path, every command's
// --help, the WAL size `status` reports, and the watch history limits as flags.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "kvc/common/text.h"
#include "kvc/http/json.h"
#include "process_cluster.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using http::JsonValue;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = text.find('\n', at);
    out.push_back(text.substr(at, nl - at));
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return out;
}

// One JSON object per line (JSON Lines), each parsed strictly.
std::vector<JsonValue> json_lines(const std::string& text) {
  std::vector<JsonValue> out;
  for (const std::string& line : lines_of(text)) {
    Result<JsonValue> v = http::parse_json(line);
    EXPECT_TRUE(v.ok()) << v.status().to_string() << ": " << line;
    if (v.ok()) out.push_back(std::move(*v));
  }
  return out;
}

// A field that must be there: a failure (not a crash) when it is not.
const JsonValue& field(const JsonValue& o, const std::string& name) {
  static const JsonValue kMissing;
  const JsonValue* f = o.find(name);
  EXPECT_NE(f, nullptr) << "no field \"" << name << "\"";
  return f != nullptr ? *f : kMissing;
}
std::uint64_t uint_field(const JsonValue& o, const std::string& name) {
  return field(o, name).as_uint64().value_or(0);
}
std::string bytes_field(const JsonValue& o, const std::string& name) {
  Result<std::string> b = base64_decode(field(o, name).text);
  EXPECT_TRUE(b.ok()) << name;
  return b.ok() ? *b : "";
}

bool is_hex_id(const JsonValue* v) {
  return v != nullptr && v->type == JsonValue::Type::kString && v->text.size() == 16 &&
         v->text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

using namespace std::chrono_literals;
constexpr std::chrono::milliseconds kPollEvery = 50ms;

TEST(CliProcessTest, ConfigFileWithAMisspeltSettingIsRefused) {
  const ScopedTempDir tmp("kvc-test-config");
  const std::string& dir = tmp.path();
  const std::string conf = dir + "/node.conf";
  std::ofstream(conf) << "# member m1\n"
                         "name = \"m1\"\n"
                         "data-dir = \"" +
                             dir +
                             "/data\"\n"
                             "listen-peer = \"127.0.0.1:" +
                             std::to_string(free_port()) +
                             "\"\n"
                             "listen-client = \"127.0.0.1:" +
                             std::to_string(free_port()) +
                             "\"\n"
                             "initial-cluster = \"m1=127.0.0.1:1\"\n"
                             "election-timout = \"5s\"\n";
  RunResult r = run_command({binary_path("kvc-node"), "--config", conf}, 10000);
  EXPECT_FALSE(r.timed_out) << "the member started with a misspelt setting: " << r.err;
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(conf + ":7: unknown setting 'election-timout'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean election-timeout?"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/data/identity")) << "nothing may be created";
  // The same file spelt right starts (then stops on SIGKILL by the timeout).
  std::string good = slurp(conf);
  good.replace(good.find("election-timout"), 15, "election-timeout");
  std::ofstream(conf, std::ios::trunc) << good;
  r = run_command({binary_path("kvc-node"), "--config", conf}, 1500);
  EXPECT_TRUE(r.timed_out) << "status " << r.status << ": " << r.err;
}

TEST(CliProcessTest, RemovedMemberRestartedAfterEverySurvivorRestartedIsToldToStop) {
  ProcessCluster cluster("removed-restart", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  // m3 is down when it is removed, so it never applies its own removal.
  ASSERT_TRUE(cluster.stop(2).ok());
  RunResult rm = cluster.ctl_run({"member", "remove", "m3"});
  ASSERT_EQ(rm.status, 0) << rm.out << rm.err;
  // Every survivor restarts: what they know of m3 must come from their stored state.
  for (int i : {0, 1}) ASSERT_TRUE(cluster.stop(i).ok());
  for (int i : {0, 1}) ASSERT_TRUE(cluster.start(i).ok());
  ASSERT_TRUE(cluster.wait_for_leader(20000).ok());
  ASSERT_TRUE(cluster.start(2).ok());
  Result<int> exit = cluster.wait_exit(2, 15000);
  ASSERT_TRUE(exit.ok()) << "the removed member keeps running: " << exit.status().to_string();
  EXPECT_EQ(*exit, 1);
  EXPECT_NE(slurp(cluster.log_path(2)).find("this member was removed from the cluster"),
            std::string::npos);
  // The cluster goes on without it.
  auto c = cluster.client();
  EXPECT_EQ(c->put("after", "x").code, Code::kOk);
  RunResult list = cluster.ctl_run({"member", "list", "-o", "json"});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(json_lines(list.out).size(), 2u) << list.out;
  // Started once more, it now stops at once: its own state may or may not record the removal,
  // but a survivor always refuses it.
  ASSERT_TRUE(cluster.start(2).ok());
  exit = cluster.wait_exit(2, 15000);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 1);
}

TEST(CliProcessTest, MemberUpdateMovesAPeerAddressWithoutRemoveAndAdd) {
  ProcessCluster cluster("member-update", {});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  const std::uint16_t new_port = free_port();
  const std::string new_addr = "127.0.0.1:" + std::to_string(new_port);
  RunResult up = cluster.ctl_run({"member", "update", "m3", new_addr, "-o", "json"});
  ASSERT_EQ(up.status, 0) << up.out << up.err;
  std::vector<JsonValue> upj = json_lines(up.out);
  ASSERT_EQ(upj.size(), 1u);
  EXPECT_EQ(field(upj[0], "peer_addr").text, new_addr);
  EXPECT_GT(uint_field(upj[0], "index"), 0u);
  // Asked again: already so, nothing committed.
  RunResult again = cluster.ctl_run({"member", "update", "m3", new_addr});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("already has peer address"), std::string::npos) << again.out;
  // Another member's address is refused.
  RunResult taken = cluster.ctl_run({"member", "update", "m3", cluster.peer_addr(0)});
  EXPECT_EQ(taken.status, 1) << taken.out << taken.err;
  // The member moves: restarted listening on the new port, with the same data directory.
  ASSERT_TRUE(cluster.stop(2).ok());
  cluster.mutable_spec(2).peer_port = new_port;
  ASSERT_TRUE(cluster.start(2).ok());
  ASSERT_TRUE(cluster.wait_for_leader(20000).ok());
  RunResult list = cluster.ctl_run({"member", "list", "-o", "json"});
  ASSERT_EQ(list.status, 0) << list.err;
  bool seen = false;
  for (const JsonValue& m : json_lines(list.out)) {
    if (field(m, "name").text == "m3") {
      seen = true;
      EXPECT_EQ(field(m, "peer_addr").text, new_addr);
      EXPECT_FALSE(field(m, "learner").boolean);
    }
  }
  EXPECT_TRUE(seen) << list.out;
  // m3 is needed for a quorum once one of the others is down: the cluster keeps working only
  // if the members reach it at its new address.
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  const int down = *leader == 0 ? 1 : 0;
  ASSERT_TRUE(cluster.stop(down).ok());
  auto c = cluster.client(5000);
  wire::Response r;
  ASSERT_TRUE(wait_until(
                  [&] {
                    r = c->put("after-update", "v");
                    return r.code == Code::kOk;
                  },
                  20s, "a write after the update", kPollEvery)
                  .ok())
      << r.message;
  EXPECT_TRUE(cluster.wait_applied(2, r.revision, 20000).ok());
}

TEST(CliProcessTest, JsonIsOneFormWithHexIdsAndTheRevisionReadAt) {
  ProcessCluster cluster("json", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ASSERT_EQ(cluster.ctl_run({"put", "/j/text", "caf\xc3\xa9 \"q\"\n"}).status, 0);
  const std::string binary("\xff\x00\x01", 3);
  ASSERT_EQ(cluster.ctl_run({"put", "/j/bin", "-"}, 30000, binary).status, 0);

  // get: text as text, binary as base64 only, the revision it was read at.
  RunResult get = cluster.ctl_run({"get", "/j/text", "-o", "json"});
  ASSERT_EQ(get.status, 0) << get.err;
  std::vector<JsonValue> g = json_lines(get.out);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(field(g[0], "key").text, "/j/text");
  EXPECT_EQ(field(g[0], "value").text, "caf\xc3\xa9 \"q\"\n");
  EXPECT_EQ(g[0].find("value_base64"), nullptr);
  const std::uint64_t mod = uint_field(g[0], "mod_revision");
  EXPECT_GE(uint_field(g[0], "revision"), mod + 1) << get.out;
  get = cluster.ctl_run({"get", "/j/bin", "-o", "json"});
  g = json_lines(get.out);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].find("value"), nullptr) << get.out;
  EXPECT_EQ(bytes_field(g[0], "value_base64"), binary);

  // list then watch from revision + 1: a write made after the listing is not missed.
  RunResult list = cluster.ctl_run({"list", "/j/", "-o", "json"});
  ASSERT_EQ(list.status, 0) << list.err;
  std::vector<JsonValue> l = json_lines(list.out);
  ASSERT_EQ(l.size(), 2u);
  const std::uint64_t rev = uint_field(l[0], "revision");
  EXPECT_GT(rev, 0u);
  EXPECT_EQ(uint_field(l[1], "revision"), rev);
  ASSERT_EQ(cluster.ctl_run({"put", "/j/later", "1"}).status, 0);
  RunResult watch = cluster.ctl_run(
      {"watch", "--prefix", "/j/", "--rev", std::to_string(rev + 1), "--count", "1", "-o", "json"});
  ASSERT_EQ(watch.status, 0) << watch.err;
  std::vector<JsonValue> w = json_lines(watch.out);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(field(w[0], "key").text, "/j/later");
  EXPECT_EQ(uint_field(w[0], "revision"), uint_field(w[0], "mod_revision"));

  // Member ids are hex strings in every JSON output.
  RunResult members = cluster.ctl_run({"member", "list", "-o", "json"});
  for (const JsonValue& m : json_lines(members.out)) EXPECT_TRUE(is_hex_id(m.find("id")));
  RunResult leader = cluster.ctl_run({"leader", "-o", "json"});
  for (const JsonValue& m : json_lines(leader.out)) EXPECT_TRUE(is_hex_id(m.find("id")));
  RunResult status = cluster.ctl_run({"status", "-o", "json"});
  std::vector<JsonValue> st = json_lines(status.out);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(is_hex_id(st[0].find("id")));
  EXPECT_TRUE(is_hex_id(st[0].find("leader_id")));
  // The WAL holds a few KiB, not the 64 MiB its preallocated segment takes on disk.
  const std::uint64_t wal = uint_field(st[0], "wal_bytes");
  EXPECT_GT(wal, 0u);
  EXPECT_LT(wal, 1u << 20) << status.out;
  RunResult hash = cluster.ctl_run({"check", "hash", "-o", "json"});
  for (const JsonValue& m : json_lines(hash.out)) EXPECT_TRUE(is_hex_id(m.find("id")));
  // So are the ids in the member's log, the Raft core's lines included.
  const std::string log = slurp(cluster.log_path(0));
  const std::size_t at = log.find("raft started id=");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string id = log.substr(at + 16, 17);
  EXPECT_EQ(id.size(), 17u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), 16u) << id;
  EXPECT_EQ(id[16], ' ') << id;
}

TEST(CliProcessTest, TableAlignsByDisplayWidthAndCutsLongValues) {
  ProcessCluster cluster("table", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ASSERT_EQ(cluster.ctl_run({"put", "/t/a", "short"}).status, 0);
  ASSERT_EQ(cluster.ctl_run({"put", "/t/\xe6\xbc\xa2\xe5\xad\x97", "wide"}).status, 0);
  ASSERT_EQ(cluster.ctl_run({"put", "/t/big", "-"}, 30000, std::string(100 * 1024, 'v')).status, 0);
  ASSERT_EQ(cluster.ctl_run({"put", "/t/bin", "-"}, 30000, std::string(1000, '\x80')).status, 0);
  RunResult t = cluster.ctl_run({"list", "/t/", "-o", "table"});
  ASSERT_EQ(t.status, 0) << t.err;
  const std::vector<std::string> rows = lines_of(t.out);
  ASSERT_EQ(rows.size(), 5u) << t.out;
  EXPECT_LT(t.out.size(), 2000u) << "a 100 KB value must not make a 100 KB line";
  // The VALUE column starts at the same display column on every row.
  const std::size_t header_col = display_width(rows[0].substr(0, rows[0].find("VALUE")));
  for (std::size_t i = 1; i < rows.size(); ++i) {
    SCOPED_TRACE(rows[i]);
    const std::size_t key_end = rows[i].find(' ');
    const std::size_t value_at = rows[i].find_first_not_of(' ', key_end);
    EXPECT_EQ(display_width(rows[i].substr(0, value_at)), header_col);
    EXPECT_LE(display_width(rows[i]), 64u + 80u);
  }
  EXPECT_NE(t.out.find("vvvv\xe2\x80\xa6"), std::string::npos) << "cut with an ellipsis";
  EXPECT_NE(t.out.find("\\x80\\x80"), std::string::npos) << "binary escaped";
  // get -o table cuts the same way; the simple format keeps the exact bytes.
  RunResult one = cluster.ctl_run({"get", "/t/big", "-o", "table"});
  EXPECT_LT(one.out.size(), 500u);
  RunResult raw = cluster.ctl_run({"get", "/t/big"});
  EXPECT_EQ(raw.out, std::string(100 * 1024, 'v'));
}

TEST(CliProcessTest, SnapshotSaveRefusesUnwritableAndExistingPaths) {
  ProcessCluster cluster("snap-save", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  ASSERT_EQ(cluster.ctl_run({"put", "k", "v"}).status, 0);
  for (const std::string& path :
       {std::string("/proc/kvc-test.snap"), cluster.dir() + "/no/such/dir/backup.snap"}) {
    SCOPED_TRACE(path);
    RunResult r = cluster.ctl_run({"snapshot", "save", path});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("cannot save the snapshot to " + path), std::string::npos) << r.err;
  }
  const std::string path = cluster.dir() + "/backup.snap";
  std::ofstream(path) << "precious";
  RunResult r = cluster.ctl_run({"snapshot", "save", path});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("exists (use --force"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(path), "precious");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  r = cluster.ctl_run({"snapshot", "save", path, "--force"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  RunResult verify = run_command({binary_path("kvc-snap"), "verify", path}, 30000);
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
}

// The subcommand paths of kvc-ctl, read from the "Subcommands:" sections of its help.
std::vector<std::vector<std::string>> subcommand_paths(std::vector<std::string> path) {
  std::vector<std::string> args = {binary_path("kvc-ctl")};
  args.insert(args.end(), path.begin(), path.end());
  args.push_back("--help");
  RunResult r = run_command(args, 10000);
  std::vector<std::vector<std::string>> out = {path};
  bool in_subs = false;
  for (const std::string& line : lines_of(r.out)) {
    if (line == "Subcommands:") {
      in_subs = true;
    } else if (in_subs && line.size() > 2 && line[0] == ' ' && line[2] != ' ') {
      std::vector<std::string> sub = path;
      sub.push_back(line.substr(2, line.find(' ', 2) - 2));
      for (auto& p : subcommand_paths(sub)) out.push_back(p);
    } else if (line.empty()) {
      in_subs = false;
    }
  }
  return out;
}

TEST(CliProcessTest, EveryCommandsHelpShowsTheGlobalOptionsAndItsOwnExamples) {
  const std::vector<std::vector<std::string>> paths = subcommand_paths({});
  ASSERT_GE(paths.size(), 20u);
  for (const auto& path : paths) {
    std::vector<std::string> args = {binary_path("kvc-ctl")};
    args.insert(args.end(), path.begin(), path.end());
    args.push_back("--help");
    RunResult r = run_command(args, 10000);
    std::string where = "kvc-ctl";
    for (const std::string& p : path) where += " " + p;
    SCOPED_TRACE(where);
    EXPECT_EQ(r.status, 0);
    for (const char* flag : {"--endpoints", "--timeout", "--output", "--secret-file", "--log-level",
                             "--log-format", "--log-file"}) {
      EXPECT_NE(r.out.find(flag), std::string::npos) << flag << "\n" << r.out;
    }
    if (!path.empty()) {
      // Its own examples, not the program's.
      EXPECT_NE(r.out.find("kvc-ctl " + path[0]), std::string::npos) << r.out;
      EXPECT_EQ(r.out.find("kvc-ctl --endpoints 127.0.0.1:2379 put /config/a 1"), std::string::npos)
          << r.out;
    }
  }
  // A global option works after the command too.
  RunResult late = run_command({binary_path("kvc-ctl"), "member", "list", "--endpoints",
                                "127.0.0.1:1", "--timeout", "200ms"},
                               10000);
  EXPECT_EQ(late.status, 5) << late.err;
}

TEST(CliProcessTest, WatchHistoryLimitsAreFlags) {
  ProcessCluster cluster(
      "history",
      {.members = 1, .extra_flags = {"--history-revisions", "10", "--flush-interval", "50ms"}});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto c = cluster.client();
  std::uint64_t first = 0;
  for (int i = 0; i < 40; ++i) {
    wire::Response r = c->put("h" + std::to_string(i), "v");
    ASSERT_EQ(r.code, Code::kOk) << r.message;
    if (first == 0) first = r.revision;
  }
  // Once the history is trimmed at a flush, a watch from the first write is refused.
  RunResult w;
  EXPECT_TRUE(wait_until(
                  [&] {
                    w = cluster.ctl_run({"watch", "--prefix", "h", "--rev", std::to_string(first),
                                         "--count", "1", "--timeout", "2s"},
                                        10000);
                    return w.status == 1;
                  },
                  10s, "the watch to print every event", kPollEvery)
                  .ok())
      << w.status << " " << w.out << w.err;
  // The newest revisions are still there.
  RunResult recent = cluster.ctl_run(
      {"watch", "--prefix", "h", "--rev", std::to_string(first + 35), "--count", "1"}, 10000);
  EXPECT_EQ(recent.status, 0) << recent.err;
}

}  // namespace
}  // namespace kvc::test
