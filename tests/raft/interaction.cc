// The interaction-test driver (see interaction.h for the script format and commands).
#include "interaction.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <fstream>
#include <utility>

namespace kvc::raft::testing {
namespace {

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Bytes as text; anything outside printable ASCII (heartbeat contexts are binary) as \xNN.
std::string printable(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (c > 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

std::string ids_text(const std::vector<NodeId>& ids) {
  std::string s = "(";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + ")";
}

std::string conf_text(const ConfState& c) {
  return "voters=" + ids_text(c.voters) + " learners=" + ids_text(c.learners);
}

// "5@2 \"data\"", "5@2 noop", "5@2 conf add_learner 4".
std::string entry_text(const Entry& e) {
  std::string s = std::to_string(e.index) + "@" + std::to_string(e.term) + " ";
  if (e.type == EntryType::kConfChange) {
    Result<ConfChange> cc = decode_conf_change(e.data);
    if (!cc.ok()) return s + "conf <undecodable>";
    s += "conf " + std::string(conf_change_type_name(cc->type)) + " " + std::to_string(cc->node);
    return cc->context.empty() ? s : s + " \"" + printable(cc->context) + "\"";
  }
  return e.data.empty() ? s + "noop" : s + "\"" + printable(e.data) + "\"";
}

std::string message_text(const Message& m) {
  std::string s = describe(m);
  const bool shows_context = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (!m.context.empty() && !shows_context) s += " context=" + printable(m.context);
  if (m.type == MessageType::kAppend && !m.entries.empty()) {
    s += " [";
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
      s += (i ? ", " : "") + entry_text(m.entries[i]);
    }
    s += "]";
  }
  return s;
}

// Ids in the core's log lines are 16 hex digits (kvc::id_hex); the scripts show them in decimal.
std::string short_ids(std::string_view line) {
  std::string out;
  std::size_t i = 0;
  while (i < line.size()) {
    if (!std::isalnum(static_cast<unsigned char>(line[i]))) {
      out += line[i++];
      continue;
    }
    std::size_t j = i;
    while (j < line.size() && std::isalnum(static_cast<unsigned char>(line[j]))) ++j;
    const std::string_view word = line.substr(i, j - i);
    const bool hex16 =
        word.size() == 16 && std::all_of(word.begin(), word.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
        });
    out += hex16 ? std::to_string(std::stoull(std::string(word), nullptr, 16)) : std::string(word);
    i = j;
  }
  return out;
}

std::string_view level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

std::vector<NodeId> parse_id_list(const std::string& v) {
  std::vector<NodeId> out;
  std::string s = v;
  std::replace(s.begin(), s.end(), '(', ' ');
  std::replace(s.begin(), s.end(), ')', ' ');
  std::replace(s.begin(), s.end(), ',', ' ');
  for (const std::string& w : split_words(s)) out.push_back(std::stoull(w));
  return out;
}

// Commands report a misuse of the script language (an unknown member, a bad argument) by
// throwing this; run() prints it as "script error: ...", which fails the test even when
// rewriting. (What the core refuses, e.g. a proposal on a follower, prints "error: ...": that
// is behaviour to record.) Only this test driver throws, never lib/.
struct ScriptError {
  std::string what;
};

}  // namespace

class InteractionEnv::MemberLogger final : public Logger {
 public:
  MemberLogger(InteractionEnv* env, NodeId id) : env_(env), id_(id) {}
  void log(LogLevel level, std::string_view line) override { env_->log_line(id_, level, line); }

 private:
  InteractionEnv* env_;
  NodeId id_;
};

struct InteractionEnv::Member {
  NodeId id = kNoNode;
  Config config;  // without rng, logger and boot id (set per incarnation)
  int boots = 0;
  std::unique_ptr<SplitMix64> rng;
  std::unique_ptr<MemberLogger> logger;
  std::unique_ptr<Node> node;  // null while crashed
  Disk disk;
  SnapshotMeta incoming_meta;  // the incoming-snapshot file (not kept across a crash)
  std::string incoming;
  bool damaged = false;  // the caller applies nothing until a snapshot is installed
};

InteractionEnv::InteractionEnv() = default;
InteractionEnv::~InteractionEnv() = default;

void InteractionEnv::log_line(NodeId id, LogLevel level, std::string_view line) {
  if (!log_level_ || level < *log_level_) return;
  out_ << level_name(level) << " " << id << ": " << short_ids(line) << "\n";
}

InteractionEnv::Member& InteractionEnv::member(const std::string& word) {
  NodeId id = 0;
  try {
    id = std::stoull(word);
  } catch (...) {
    throw ScriptError{"not a member id: " + word};
  }
  auto it = members_.find(id);
  if (it == members_.end()) throw ScriptError{"no member " + word};
  return *it->second;
}

std::set<NodeId> InteractionEnv::ids_from(const std::vector<std::string>& args,
                                          std::size_t from) const {
  std::set<NodeId> ids;
  for (std::size_t i = from; i < args.size(); ++i) {
    if (args[i].find('=') != std::string::npos) continue;
    NodeId id = 0;
    try {
      id = std::stoull(args[i]);
    } catch (...) {
      throw ScriptError{"not a member id: " + args[i]};
    }
    if (!members_.count(id)) throw ScriptError{"no member " + args[i]};
    ids.insert(id);
  }
  if (ids.empty()) {
    for (const auto& [id, m] : members_) ids.insert(id);
  }
  return ids;
}

bool InteractionEnv::linked(NodeId a, NodeId b) const {
  return !cut_.count({a, b}) && !cut_.count({b, a});
}

void InteractionEnv::start(NodeId id, const Config& base, RestoreState st) {
  Member& m = *members_.at(id);
  ++m.boots;
  m.rng = std::make_unique<SplitMix64>(id * 7919 + static_cast<std::uint64_t>(m.boots));
  if (!m.logger) m.logger = std::make_unique<MemberLogger>(this, id);
  Config c = base;
  c.id = id;
  c.boot_id = id * 1000 + static_cast<std::uint64_t>(m.boots);
  c.rng = m.rng.get();
  c.logger = m.logger.get();
  Result<std::unique_ptr<Node>> node = Node::create(c, std::move(st));
  if (!node.ok())
    throw ScriptError{"member " + std::to_string(id) + ": " + node.status().to_string()};
  m.node = std::move(*node);
}

void InteractionEnv::add_nodes(const std::vector<std::string>& args) {
  if (args.size() < 2) throw ScriptError{"usage: add-nodes N [key=value...]"};
  const int n = std::stoi(args[1]);
  Config base;
  base.max_uncommitted_bytes = 0;
  std::optional<std::vector<NodeId>> voters;
  std::vector<NodeId> learners;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const auto eq = args[i].find('=');
    if (eq == std::string::npos) throw ScriptError{"expected key=value: " + args[i]};
    const std::string k = args[i].substr(0, eq), v = args[i].substr(eq + 1);
    if (k == "voters") {
      voters = parse_id_list(v);
    } else if (k == "learners") {
      learners = parse_id_list(v);
    } else if (k == "pre-vote") {
      base.pre_vote = v == "true";
    } else if (k == "check-quorum") {
      base.check_quorum = v == "true";
    } else if (k == "election") {
      base.election_ticks = std::stoi(v);
    } else if (k == "heartbeat") {
      base.heartbeat_ticks = std::stoi(v);
    } else if (k == "inflight") {
      base.max_inflight_msgs = std::stoi(v);
    } else if (k == "max-msg-bytes") {
      base.max_msg_bytes = std::stoull(v);
    } else if (k == "chunk") {
      base.snapshot_chunk_bytes = std::stoull(v);
    } else if (k == "max-uncommitted") {
      base.max_uncommitted_bytes = std::stoull(v);
    } else {
      throw ScriptError{"unknown option " + k};
    }
  }
  NodeId next = members_.empty() ? 1 : members_.rbegin()->first + 1;
  for (int i = 0; i < n; ++i, ++next) {
    RestoreState st;
    if (voters) {
      st = bootstrap_state(*voters);
      if (!learners.empty()) {
        // Bootstrap learners are added by AddLearner entries after the voters', as a running
        // cluster would have them.
        for (NodeId l : learners) {
          Entry e{st.entries.size() + 1, 1, EntryType::kConfChange,
                  encode_conf_change({ConfChangeType::kAddLearner, l, ""})};
          st.entries.push_back(std::move(e));
        }
        st.hard_state.commit = st.entries.size();
      }
    }
    auto m = std::make_unique<Member>();
    m->id = next;
    m->config = base;
    m->disk.state = st;
    members_[next] = std::move(m);
    start(next, base, std::move(st));
  }
}

void InteractionEnv::queue_message(Member& from, Message m) {
  if (m.type == MessageType::kSnapshot) {
    const Disk& d = from.disk;
    if (!(d.state.snapshot == m.snapshot) ||
        m.snapshot_offset + m.chunk_length > d.snapshot_data.size()) {
      if (!quiet_)
        out_line("  cannot read snapshot index=" + std::to_string(m.snapshot.index) + " for " +
                 std::to_string(m.to) + ": report_snapshot(false)");
      from.node->report_snapshot(m.to, false);
      return;
    }
    m.chunk = d.snapshot_data.substr(m.snapshot_offset, m.chunk_length);
  }
  inbox_[m.to].push_back(std::move(m));
}

void InteractionEnv::process_ready(Member& m) {
  Node& node = *m.node;
  Ready rd = node.ready();
  if (!quiet_) {
    out_line("> " + std::to_string(m.id) + " handling Ready");
    if (rd.soft_state) {
      out_line("  soft state: " + std::string(role_name(rd.soft_state->role)) +
               " term=" + std::to_string(rd.soft_state->term) +
               " leader=" + std::to_string(rd.soft_state->leader));
    }
    if (rd.hard_state) {
      out_line("  hard state: term=" + std::to_string(rd.hard_state->term) +
               " vote=" + std::to_string(rd.hard_state->vote) +
               " commit=" + std::to_string(rd.hard_state->commit));
    }
    if (rd.repair) {
      out_line("  repair: log_to=" + std::to_string(rd.repair->log_to) +
               " needs_snapshot=" + (rd.repair->needs_snapshot ? "true" : "false") +
               " snapshot_from=" + std::to_string(rd.repair->snapshot_from));
    }
    if (rd.conf_state) out_line("  conf state: " + conf_text(*rd.conf_state));
    const auto entries = [this](const char* title, const std::vector<Entry>& es) {
      if (es.empty()) return;
      out_line(std::string("  ") + title + ":");
      for (const Entry& e : es) out_line("    " + entry_text(e));
    };
    entries("entries", rd.entries);
    for (const SnapshotChunk& c : rd.snapshot_chunks) {
      out_line("  snapshot chunk: index=" + std::to_string(c.meta.index) +
               " offset=" + std::to_string(c.offset) + " len=" + std::to_string(c.data.size()) +
               " size=" + std::to_string(c.size));
    }
    if (rd.snapshot) {
      out_line("  install snapshot: index=" + std::to_string(rd.snapshot->index) +
               " term=" + std::to_string(rd.snapshot->term) + " " + conf_text(rd.snapshot->conf));
    }
    entries("committed", rd.committed);
    for (const ReadState& rs : rd.read_states) {
      out_line("  read state: context=" + printable(rs.context) +
               " index=" + std::to_string(rs.index));
    }
    if (rd.snapshot_wanted) out_line("  snapshot wanted");
    const auto msgs = [this](const char* title, const std::vector<Message>& ms) {
      if (ms.empty()) return;
      out_line(std::string("  ") + title + ":");
      for (const Message& msg : ms) out_line("    " + message_text(msg));
    };
    msgs("messages", rd.messages);
    msgs("messages after persist", rd.messages_after_persist);
  }

  // (1) Messages that depend on nothing unsynced.
  for (const Message& msg : rd.messages) queue_message(m, msg);
  // (2) The disk, in the order node.h gives.
  for (const SnapshotChunk& c : rd.snapshot_chunks) {
    if (c.offset == 0) {
      m.incoming_meta = c.meta;
      m.incoming.clear();
    }
    if (m.incoming_meta == c.meta && m.incoming.size() == c.offset) m.incoming += c.data;
  }
  RestoreState& disk = m.disk.state;
  if (rd.snapshot) {
    if (!(m.incoming_meta == *rd.snapshot)) {
      throw ScriptError{"member " + std::to_string(m.id) +
                        " was told to install a snapshot it did not receive"};
    }
    // The stored log after the snapshot stays as far as it matches the node's (all of it when a
    // repair keeps the log).
    std::vector<Entry> kept;
    std::uint64_t next = rd.snapshot->index + 1;
    for (const Entry& e : disk.entries) {
      if (e.index < next) continue;
      if (e.index != next || !node.log().match_term(e.index, e.term)) break;
      kept.push_back(e);
      ++next;
    }
    disk.snapshot = *rd.snapshot;
    disk.entries = std::move(kept);
    disk.applied = rd.snapshot->index;
    m.disk.snapshot_data = m.incoming;
  }
  if (!rd.entries.empty()) {
    const std::uint64_t first = rd.entries.front().index;
    while (!disk.entries.empty() && disk.entries.back().index >= first) disk.entries.pop_back();
    for (const Entry& e : rd.entries) disk.entries.push_back(e);
  }
  if (rd.hard_state) disk.hard_state = *rd.hard_state;
  if (rd.repair) disk.repair = *rd.repair;
  // (3) Durable: the messages that waited for it.
  for (const Message& msg : rd.messages_after_persist) queue_message(m, msg);
  // (4)
  node.advance(rd);
  // (5) Apply. The state machine is durable at once (its applied index is on the disk).
  if (rd.snapshot) m.damaged = false;
  if (m.damaged) {
    if (!rd.committed.empty() && !quiet_) out_line("  (damaged state machine: applies nothing)");
    return;
  }
  if (!rd.committed.empty()) {
    node.applied_to(rd.committed.back().index);
    disk.applied = std::max(disk.applied, rd.committed.back().index);
  }
  if (rd.snapshot) node.applied_to(rd.snapshot->index);
}

bool InteractionEnv::deliver(NodeId to, const std::optional<std::string>& type) {
  auto it = inbox_.find(to);
  if (it == inbox_.end() || it->second.empty()) return false;
  std::deque<Message> take, keep;
  for (Message& msg : it->second) {
    const bool match = !type || message_type_name(msg.type) == *type;
    (match ? take : keep).push_back(std::move(msg));
  }
  it->second = std::move(keep);
  if (take.empty()) return false;
  auto target = members_.find(to);
  Node* node = target != members_.end() ? target->second->node.get() : nullptr;
  if (!quiet_) out_line("> " + std::to_string(to) + " receiving messages");
  for (const Message& msg : take) {
    if (node == nullptr || !linked(msg.from, msg.to)) {
      if (!quiet_) out_line("  dropped: " + message_text(msg));
      continue;
    }
    if (!quiet_) out_line("  " + message_text(msg));
    if (Status s = node->step(msg); !s.ok()) out_line("  refused: " + s.to_string());
  }
  return true;
}

bool InteractionEnv::stabilize(const std::set<NodeId>& ids) {
  for (int round = 0; round < 10000; ++round) {
    bool progress = false;
    for (NodeId id : ids) {
      auto it = members_.find(id);
      if (it == members_.end() || !it->second->node) continue;
      while (it->second->node->has_ready()) {
        process_ready(*it->second);
        progress = true;
      }
    }
    // Messages to ids that are not (or no longer) members are dropped too.
    std::set<NodeId> to = ids;
    if (ids.size() == members_.size()) {
      for (const auto& [id, q] : inbox_) to.insert(id);
    }
    for (NodeId id : to) progress = deliver(id, std::nullopt) || progress;
    if (!progress) return true;
  }
  return false;
}

void InteractionEnv::status(NodeId id) {
  const Member& m = *members_.at(id);
  if (!m.node) {
    out_line(std::to_string(id) + ": down");
    return;
  }
  const Node& n = *m.node;
  std::string s =
      std::to_string(id) + ": " + std::string(role_name(n.role())) +
      " term=" + std::to_string(n.term()) + " vote=" + std::to_string(n.vote()) +
      " leader=" + std::to_string(n.leader()) + " commit=" + std::to_string(n.commit()) +
      " applied=" + std::to_string(n.applied()) + " log=" + std::to_string(n.log().first_index()) +
      ".." + std::to_string(n.log().last_index()) + " " + conf_text(n.conf_state());
  if (n.repair().active()) {
    s += " repair(log_to=" + std::to_string(n.repair().log_to) +
         " needs_snapshot=" + (n.repair().needs_snapshot ? "true" : "false") + ")";
  }
  if (n.transfer_target() != kNoNode) s += " transfer_to=" + std::to_string(n.transfer_target());
  out_line(s);
  for (const PeerProgress& p : n.progress()) {
    if (p.id == id) continue;
    std::string l = "  " + std::to_string(p.id) + ": " + std::string(progress_state_name(p.state)) +
                    " match=" + std::to_string(p.match) + " next=" + std::to_string(p.next);
    if (p.learner) l += " learner";
    if (p.recent_active) l += " active";
    if (p.inflight_msgs) l += " inflight=" + std::to_string(p.inflight_msgs);
    if (p.state == ProgressState::kSnapshot) l += " snapshot=" + std::to_string(p.snapshot_index);
    if (p.repairing) l += " repairing";
    if (p.repair_to) l += " repair_to=" + std::to_string(p.repair_to);
    out_line(l);
  }
  if (n.role() == Role::kLeader && n.lost_entries_detected() != 0) {
    out_line("  lost entries detected: " + std::to_string(n.lost_entries_detected()));
  }
}

// One branch per command (interaction.h lists them), each a few lines: a dispatch table in all
// but name, kept in one function so the whole command language reads in one place.
std::string InteractionEnv::run(const std::string& command) {
  out_.str("");
  out_.clear();
  const std::vector<std::string> w = split_words(command);
  try {
    if (w.empty()) throw ScriptError{"empty command"};
    const std::string& cmd = w[0];
    const auto arg = [&](std::size_t i) -> const std::string& {
      if (i >= w.size()) throw ScriptError{cmd + ": missing argument " + std::to_string(i)};
      return w[i];
    };
    const auto live = [&](const std::string& word) -> Member& {
      Member& m = member(word);
      if (!m.node) throw ScriptError{"member " + word + " is down"};
      return m;
    };
    const auto result = [&](const Status& s, const std::string& ok) {
      out_line(s.ok() ? ok : "error: " + short_ids(s.to_string()));
    };
    if (cmd == "add-nodes") {
      add_nodes(w);
    } else if (cmd == "campaign") {
      Member& m = live(arg(1));
      int t = 0;
      for (; t < 1000 && m.node->role() == Role::kFollower; ++t) m.node->tick();
      if (m.node->role() == Role::kFollower) throw ScriptError{"member never campaigned"};
    } else if (cmd == "tick") {
      Member& m = live(arg(1));
      const int n = w.size() > 2 ? std::stoi(w[2]) : 1;
      for (int i = 0; i < n; ++i) m.node->tick();
    } else if (cmd == "tick-all") {
      const int n = w.size() > 1 ? std::stoi(w[1]) : 1;
      for (int i = 0; i < n; ++i) {
        for (auto& [id, m] : members_) {
          if (m->node) m->node->tick();
        }
      }
    } else if (cmd == "run") {
      const int n = std::stoi(arg(1));
      quiet_ = true;
      bool quiet_ok = stabilize(ids_from(w, w.size()));
      for (int i = 0; i < n && quiet_ok; ++i) {
        for (auto& [id, m] : members_) {
          if (m->node) m->node->tick();
        }
        quiet_ok = stabilize(ids_from(w, w.size()));
      }
      quiet_ = false;
      if (!quiet_ok) throw ScriptError{"run: the cluster never became quiet"};
    } else if (cmd == "propose") {
      Result<std::uint64_t> r = live(arg(1)).node->propose(arg(2));
      result(r.status(), r.ok() ? "index " + std::to_string(*r) : "");
    } else if (cmd == "propose-conf-change") {
      const std::string& t = arg(2);
      ConfChangeType type = t == "add-voter"     ? ConfChangeType::kAddVoter
                            : t == "add-learner" ? ConfChangeType::kAddLearner
                            : t == "promote"     ? ConfChangeType::kPromoteLearner
                            : t == "remove"      ? ConfChangeType::kRemove
                            : t == "update"      ? ConfChangeType::kUpdate
                                                 : throw ScriptError{"unknown change " + t};
      Result<std::uint64_t> r = live(arg(1)).node->propose_conf_change(
          {type, std::stoull(arg(3)), w.size() > 4 ? w[4] : ""});
      result(r.status(), r.ok() ? "index " + std::to_string(*r) : "");
    } else if (cmd == "read-index") {
      result(live(arg(1)).node->read_index(arg(2)), "ok");
    } else if (cmd == "transfer-leader") {
      result(live(arg(1)).node->transfer_leadership(std::stoull(arg(2))), "ok");
    } else if (cmd == "process-ready") {
      for (NodeId id : ids_from(w, 1)) {
        Member& m = *members_.at(id);
        if (m.node && m.node->has_ready()) process_ready(m);
      }
    } else if (cmd == "deliver-msgs" || cmd == "drop-msgs") {
      std::optional<std::string> type;
      std::optional<std::pair<NodeId, NodeId>> link;
      std::vector<std::string> ids{cmd};
      for (std::size_t i = 1; i < w.size(); ++i) {
        if (w[i].rfind("type=", 0) == 0) {
          type = w[i].substr(5);
        } else if (const auto arrow = w[i].find("->"); arrow != std::string::npos) {
          link = {std::stoull(w[i].substr(0, arrow)), std::stoull(w[i].substr(arrow + 2))};
        } else {
          ids.push_back(w[i]);
        }
      }
      if (cmd == "deliver-msgs") {
        if (link) throw ScriptError{"deliver-msgs takes member ids"};
        for (NodeId id : ids_from(ids, 1)) deliver(id, type);
      } else {
        std::set<NodeId> to = link ? std::set<NodeId>{link->second} : ids_from(ids, 1);
        for (NodeId id : to) {
          std::deque<Message> keep;
          for (Message& msg : inbox_[id]) {
            const bool match = (!type || message_type_name(msg.type) == *type) &&
                               (!link || msg.from == link->first);
            if (match) {
              out_line("dropped: " + message_text(msg));
            } else {
              keep.push_back(std::move(msg));
            }
          }
          inbox_[id] = std::move(keep);
        }
      }
    } else if (cmd == "stabilize") {
      if (!stabilize(ids_from(w, 1))) throw ScriptError{"stabilize: never quiet"};
    } else if (cmd == "cut") {
      cut_.insert({std::stoull(arg(1)), std::stoull(arg(2))});
    } else if (cmd == "isolate") {
      const NodeId id = member(arg(1)).id;
      for (const auto& [other, m] : members_) {
        if (other != id) cut_.insert({id, other});
      }
    } else if (cmd == "heal") {
      cut_.clear();
    } else if (cmd == "crash") {
      Member& m = live(arg(1));
      m.node.reset();
      m.incoming.clear();
      m.incoming_meta = {};
      inbox_.erase(m.id);
    } else if (cmd == "restart") {
      Member& m = member(arg(1));
      if (w.size() > 2) {
        if (w[2].rfind("disk=", 0) != 0) throw ScriptError{"restart: expected disk=NAME"};
        auto it = saved_disks_.find(w[2].substr(5));
        if (it == saved_disks_.end()) throw ScriptError{"no saved disk " + w[2].substr(5)};
        m.disk = it->second;
      }
      m.node.reset();
      m.incoming.clear();
      m.incoming_meta = {};
      inbox_.erase(m.id);
      m.damaged = false;
      start(m.id, m.config, m.disk.state);
    } else if (cmd == "save-disk") {
      saved_disks_[arg(2)] = member(arg(1)).disk;
    } else if (cmd == "snapshot") {
      Member& m = live(arg(1));
      Node& n = *m.node;
      const std::uint64_t at = n.applied();
      const std::optional<std::uint64_t> term =
          at == n.log().snapshot_index() ? n.log().snapshot_term() : n.log().term(at);
      Result<ConfState> conf = n.conf_state_at(at);
      if (!term || !conf.ok()) throw ScriptError{"no snapshot possible at " + std::to_string(at)};
      Disk& d = m.disk;
      d.state.snapshot = {at, *term, *conf};
      d.snapshot_data = "state@" + std::to_string(at);
      std::erase_if(d.state.entries, [at](const Entry& e) { return e.index <= at; });
      d.state.applied = std::max(d.state.applied, at);
      n.snapshot_available(d.state.snapshot, d.snapshot_data.size());
      out_line("snapshot index=" + std::to_string(at) + " term=" + std::to_string(*term) +
               " size=" + std::to_string(d.snapshot_data.size()));
    } else if (cmd == "compact") {
      result(live(arg(1)).node->compact(std::stoull(arg(2))), "ok");
    } else if (cmd == "mark-damaged") {
      Member& m = live(arg(1));
      m.node->mark_damaged(m.node->applied());
      m.damaged = true;
    } else if (cmd == "status") {
      for (NodeId id : ids_from(w, 1)) status(id);
    } else if (cmd == "raft-log") {
      const Node& n = *live(arg(1)).node;
      out_line("snapshot index=" + std::to_string(n.log().snapshot_index()) +
               " term=" + std::to_string(n.log().snapshot_term()));
      for (std::uint64_t i = n.log().first_index(); i <= n.log().last_index(); ++i) {
        out_line(entry_text(n.log().at(i)));
      }
    } else if (cmd == "log-level") {
      const std::string& l = arg(1);
      if (l == "none") {
        log_level_.reset();
      } else if (l == "debug" || l == "info" || l == "warn" || l == "error") {
        log_level_ = l == "debug"  ? LogLevel::kDebug
                     : l == "info" ? LogLevel::kInfo
                     : l == "warn" ? LogLevel::kWarn
                                   : LogLevel::kError;
      } else {
        throw ScriptError{"unknown log level " + l};
      }
    } else {
      throw ScriptError{"unknown command " + cmd};
    }
  } catch (const ScriptError& e) {
    quiet_ = false;
    out_line("script error: " + e.what);
  } catch (const std::exception& e) {  // std::stoull on a bad number
    quiet_ = false;
    out_line(std::string("script error: bad argument (") + e.what() + ")");
  }
  std::string out = out_.str();
  return out.empty() ? "ok\n" : out;
}

Result<Script> parse_script(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  Script script;
  std::vector<std::string> pending;
  for (std::size_t i = 0; i < lines.size();) {
    if (lines[i].empty() || lines[i][0] == '#') {
      pending.push_back(lines[i++]);
      continue;
    }
    ScriptBlock b;
    b.comments = std::move(pending);
    pending.clear();
    b.line = static_cast<int>(i) + 1;
    b.command = lines[i++];
    if (i >= lines.size() || lines[i] != "----") {
      return Status::invalid_argument("line " + std::to_string(b.line) +
                                      ": a command must be followed by a line \"----\"");
    }
    ++i;
    while (i < lines.size() && !lines[i].empty()) b.expected += lines[i++] + "\n";
    // The empty line that ends the block belongs to it.
    if (i < lines.size()) ++i;
    script.blocks.push_back(std::move(b));
  }
  script.trailer = std::move(pending);
  return script;
}

std::string format_script(const Script& script, const std::vector<std::string>& outputs) {
  std::string s;
  for (std::size_t i = 0; i < script.blocks.size(); ++i) {
    const ScriptBlock& b = script.blocks[i];
    for (const std::string& c : b.comments) s += c + "\n";
    s += b.command + "\n----\n" + outputs.at(i) + "\n";
  }
  for (const std::string& c : script.trailer) s += c + "\n";
  // One newline at the end of the file.
  while (s.size() > 1 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '\n') s.pop_back();
  return s;
}

Result<std::vector<std::string>> run_script(const std::filesystem::path& path, Script* script) {
  std::ifstream in(path);
  if (!in) return Status::not_found(path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  Result<Script> parsed = parse_script(text.str());
  if (!parsed.ok())
    return Status::invalid_argument(path.string() + ": " + parsed.status().message());
  *script = std::move(*parsed);
  InteractionEnv env;
  std::vector<std::string> outputs;
  for (const ScriptBlock& b : script->blocks) outputs.push_back(env.run(b.command));
  return outputs;
}

}  // namespace kvc::raft::testing
