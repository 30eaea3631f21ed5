// Scripted interaction tests of raft::Node (tests/raft/testdata/*.txt), in the spirit of etcd's
// raft interaction tests: a script drives a few in-memory members command by command, and
// after each command the driver prints what happened (every Ready handled, with its hard
// state, entries, committed entries, messages and snapshot; every message delivered or
// dropped; the core's log lines). The test compares that text with the expected output written
// under the command, so a change in behaviour shows up as a reviewable diff. The driver only
// drives and prints: it decides nothing about correctness beyond what the core reports (a
// refused step, a bad Ready) and the scripts' expected output. Not thread-safe.
//
// FILE FORMAT
//   # a comment line (kept on rewrite)
//   COMMAND ARGS...
//   ----
//   expected output (never contains an empty line; "ok" when there is nothing to say)
//   <empty line>
//
// Entries print as INDEX@TERM and then the data in quotes, "noop", or the decoded membership
// change; messages as raft::describe() prints them, followed by an append's entries. Members
// have a disk that is written as soon as a Ready is handled (no torn or lost writes;
// the simulator covers those) and kept across crash/restart. Message queues are per recipient
// and in send order. Ids in the core's log lines (16 hex digits, kvc::id_hex) are shown in
// decimal so the scripts read like the commands. Randomness is seeded per member and
// incarnation, and every map is ordered: the same script prints the same text every run.
//
// COMMANDS (ID is a member id; "ID..." means zero or more, none = every member)
//   add-nodes N [voters=(1,2,3)] [learners=(4)] [pre-vote=true] [check-quorum=true]
//             [election=10] [heartbeat=1] [inflight=256] [max-msg-bytes=1048576]
//             [chunk=1048576] [max-uncommitted=0]
//       starts N new members with the next free ids. With voters= they start from the
//       bootstrap log of those voters (and learners=); without, from an empty state (to be
//       added by a membership change).
//   campaign ID              ticks ID alone until it campaigns (its timeout is randomized)
//   tick ID [N]              N ticks (default 1) of ID alone; nothing is processed
//   tick-all [N]             N ticks of every live member; nothing is processed
//   run N                    stabilize, then N rounds of: tick every live member, stabilize;
//                            prints only the core's log lines (run 0: a quiet stabilize)
//   propose ID DATA          Node::propose
//   propose-conf-change ID add-voter|add-learner|promote|remove|update NODE [CONTEXT]
//   read-index ID CTX        Node::read_index
//   transfer-leader ID TARGET
//   process-ready ID...      handles one Ready of each member that has one
//   deliver-msgs ID... [type=T]  steps every queued message for ID (only of type T if given)
//   drop-msgs ID... | drop-msgs FROM->TO [type=T]   drops queued messages
//   stabilize ID...          handles Readies and delivers messages until nothing happens
//   cut A B | isolate ID | heal   links that lose every message (in both directions)
//   crash ID                 the member stops; its queued messages are lost, its disk kept
//   restart ID [disk=NAME]   a new incarnation (new boot id) from its disk or a saved copy
//   save-disk ID NAME        keeps a copy of ID's disk (to restart on an older copy later)
//   snapshot ID              the caller makes a snapshot at the applied index and offers it
//   compact ID INDEX         Node::compact
//   mark-damaged ID          Node::mark_damaged at the applied index; the caller applies
//                            nothing more until a snapshot is installed
//   status ID...             role, term, log, membership; a leader's progress of each peer
//   raft-log ID              the member's log entries
//   log-level debug|info|warn|error|none   the lowest level of core log lines printed
//
// REWRITING: KVC_REWRITE_TESTDATA=1 makes the test write the actual output back into the
// files. Rewritten output is whatever the code does now, right or wrong: review the diff
// before committing it, as you would a hand-written expectation.
#pragma once

#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kvc/raft/node.h"

namespace kvc::raft::testing {

// One script block: a command and the output expected after it.
struct ScriptBlock {
  std::vector<std::string> comments;  // comment and blank lines before the command
  std::string command;
  std::string expected;  // lines, each ending in '\n'
  int line = 0;          // 1-based line of the command, for failure messages
};

struct Script {
  std::vector<ScriptBlock> blocks;
  std::vector<std::string> trailer;  // comment lines after the last block
};

// Parses a script; a malformed one (a command without "----") is an error.
Result<Script> parse_script(const std::string& text);
// The script with `outputs[i]` as the expected output of block i.
std::string format_script(const Script& script, const std::vector<std::string>& outputs);

class InteractionEnv {
 public:
  InteractionEnv();
  ~InteractionEnv();
  InteractionEnv(const InteractionEnv&) = delete;
  InteractionEnv& operator=(const InteractionEnv&) = delete;

  // Runs one command line and returns what it printed ("ok" when nothing).
  std::string run(const std::string& command);

 private:
  struct Disk {
    RestoreState state;  // hard state, snapshot meta, log after it, applied, repair
    std::string snapshot_data;
  };
  class MemberLogger;
  struct Member;

  // Commands.
  void add_nodes(const std::vector<std::string>& args);
  void process_ready(Member& m);
  bool deliver(NodeId to, const std::optional<std::string>& type);
  bool stabilize(const std::set<NodeId>& ids);
  void status(NodeId id);
  void start(NodeId id, const Config& base, RestoreState st);

  // Helpers.
  Member& member(const std::string& word);
  std::set<NodeId> ids_from(const std::vector<std::string>& args, std::size_t from) const;
  void queue_message(Member& from, Message m);
  bool linked(NodeId a, NodeId b) const;
  void out_line(const std::string& line) { out_ << line << "\n"; }
  void log_line(NodeId id, LogLevel level, std::string_view line);

  std::map<NodeId, std::unique_ptr<Member>> members_;
  std::map<NodeId, std::deque<Message>> inbox_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::map<std::string, Disk> saved_disks_;
  std::optional<LogLevel> log_level_ = LogLevel::kInfo;  // nullopt: none
  bool quiet_ = false;                                   // `run`: only log lines
  std::ostringstream out_;
};

// Runs every block of the script at `path` and returns the actual outputs, in block order.
Result<std::vector<std::string>> run_script(const std::filesystem::path& path, Script* script);

}  // namespace kvc::raft::testing
