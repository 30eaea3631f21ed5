// The chaos tests' fault schedule and the nemesis that carries it out. make_schedule() turns a
// seed into a list of fault steps (what, when, for how long, with which parameters); which
// member a step hits is drawn from the seed too, but resolved against the cluster when the
// step fires ("the leader" is whoever leads then). The Nemesis applies each step, heals it
// after its hold, logs every action with its time, and counts faults by kind. Faults:
// SIGKILL of members (any, the leader, a majority for a while), clean stop and restart,
// SIGSTOP pauses (of the leader too), partitions through the FaultProxy (isolation, splits,
// one-way cuts, black holes), lossy and slow links, slow disks (slowfs), leader transfers and
// member replacement (skipped, and reported so, while the members answer "not supported"). A
// membership change whose answer is lost (kTimeout) is never assumed to have failed or
// succeeded: the nemesis reads the membership until it knows (resolve_change).
//
// Thread-safety: make_schedule is a pure function. A Nemesis runs on the thread that owns the
// cluster; EventLog is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chaos_cluster.h"
#include "kvc/common/status.h"
#include "workload.h"

namespace kvc::chaos {

enum class FaultKind : std::uint8_t {
  kKill,            // SIGKILL up to a minority of members, restart after the hold
  kKillLeader,      // SIGKILL the leader, restart after the hold
  kKillMajority,    // SIGKILL a majority: no quorum for a while
  kRestart,         // SIGTERM (must exit 0), restart after the hold
  kPause,           // SIGSTOP up to a minority of members
  kPauseLeader,     // SIGSTOP the leader for longer than an election timeout
  kIsolate,         // cut every link to and from one member (often the leader)
  kSplit,           // cut both ways between a minority and a majority
  kOneWay,          // cut one direction only between a minority and a majority
  kBlackhole,       // one member's links stay open but lose every message
  kLossyLinks,      // some links lose a share of their messages
  kSlowLinks,       // some links delay their messages
  kSlowDisk,        // fsync/fdatasync of some members sleep first
  kTransferLeader,  // ask the leader to hand leadership to a follower
  kMemberReplace,   // remove a follower and add a fresh member in its place
};
inline constexpr int kFaultKindCount = 15;

std::string_view fault_name(FaultKind kind);
std::vector<FaultKind> all_fault_kinds();
// "all", or a comma-separated list of kind names and groups (kill, pause, partition, net,
// disk, membership, restart).
Result<std::vector<FaultKind>> parse_fault_mix(std::string_view text);

struct FaultStep {
  std::uint64_t at_ms = 0;    // since the run began
  std::uint64_t hold_ms = 0;  // until it is healed
  FaultKind kind = FaultKind::kKill;
  std::vector<std::uint64_t> picks;  // random numbers that choose members when it fires
  bool hit_leader = false;           // partitions, pauses, slow disks: include the leader
  double drop = 0;
  std::uint32_t delay_ms = 0, jitter_ms = 0;
  std::uint32_t disk_delay_ms = 0;

  std::string to_string() const;  // "t=3.200s kill-leader hold=1.500s"
};

// Steps over [warm-up, duration), in time order; the same seed gives the same schedule.
std::vector<FaultStep> make_schedule(std::uint64_t seed, std::uint64_t duration_ms,
                                     const std::vector<FaultKind>& kinds);

// What a membership change turned out to be, once the harness looked.
enum class ChangeOutcome : std::uint8_t { kApplied, kNotApplied, kUnresolved };

// How resolve_change reaches the cluster: the Nemesis wires it to the ChaosCluster, the unit
// tests to a fake.
struct ChangeProbe {
  std::function<int()> find_leader;  // the member that leads now, or -1
  std::function<wire::Response(int member, wire::Request req, std::uint64_t timeout_ms)> call;
  // Between two attempts: heals the faults whose hold is over (the change may be waiting for a
  // paused or cut-off member) and waits a little.
  std::function<void()> idle;
  std::function<std::uint64_t()> now_ms;
};

struct ChangeResolution {
  ChangeOutcome outcome = ChangeOutcome::kUnresolved;
  std::vector<wire::MemberInfo> members;  // the membership list that decided it
  std::string how;                        // one line for the event log
};

// Learns whether a membership change whose answer was lost (kTimeout: "may or may not have
// been applied") took effect, as an operator would: by reading the membership. A member lists
// its applied configuration, so a list that shows the change proves it was applied. A list
// that does not show it proves nothing while the change may still sit in the leader's log,
// waiting for a quorum (for instance for a paused member); so the resolver first commits a
// barrier through the leader (kHash without a revision, the first step of `kvc-ctl check
// hash`): once an entry of the leader's term is committed, every entry before it in that
// leader's log is committed too and an entry that is not in it never will be, and that
// member's list, read after the barrier was applied there, is final. Retries, calling
// probe.idle() between attempts, until decided or `timeout_ms` has passed (kUnresolved).
// `applied` says whether a membership list shows the change.
ChangeResolution resolve_change(
    const ChangeProbe& probe,
    const std::function<bool(const std::vector<wire::MemberInfo>&)>& applied,
    std::uint64_t timeout_ms);

// Timestamped lines of what the harness did (faults, heals, checks).
class EventLog {
 public:
  void add(std::uint64_t time_us, std::string line);
  std::vector<std::pair<std::uint64_t, std::string>> lines() const;
  std::string text() const;  // "  12.345s  kill-leader m2 (pid 123)\n" ...

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::uint64_t, std::string>> lines_;
};

struct FaultCount {
  std::uint64_t applied = 0;
  std::uint64_t skipped = 0;
};

class Nemesis {
 public:
  Nemesis(ChaosCluster& cluster, EventLog& log, const Recorder& clock);

  // Applies the steps at their times and heals each after its hold, until `end_ms` (since
  // the run began) or until `stop()` is true. Bounded by `end_ms`.
  void run(const std::vector<FaultStep>& schedule, std::uint64_t end_ms,
           const std::function<bool()>& stop);
  // Heals everything still in effect: links, disks, pauses; restarts stopped members.
  Status heal_all();

  std::map<FaultKind, FaultCount> counts() const { return counts_; }
  // Problems the nemesis saw (a clean stop that did not exit 0, a restart that failed).
  const std::vector<std::string>& problems() const { return problems_; }
  // Whether the members answered transfer-leader / member changes ("unknown" before a try).
  std::string membership_support() const;

 private:
  struct Active {
    std::uint64_t heal_at_ms = 0;
    FaultKind kind = FaultKind::kKill;
    std::vector<int> stopped;  // killed or terminated: restart
    std::vector<int> paused;
    std::vector<std::pair<int, int>> links;
    std::vector<int> slow_disks;
  };

  std::uint64_t now_ms() const { return clock_.now_us() / 1000; }
  void note(const std::string& line);
  // Heals the active faults whose hold is over.
  void heal_due();
  // resolve_change against this cluster; waiting heals due faults.
  ChangeResolution resolve(
      const std::function<bool(const std::vector<wire::MemberInfo>&)>& applied);
  // Applies `step`; false (with a logged reason) when it could not be applied.
  bool apply(const FaultStep& step, Active& active);
  void heal(const Active& active);
  bool transfer_leader(const FaultStep& step);
  bool replace_member(const FaultStep& step);
  // Members chosen by `picks` from `from`, `count` of them, distinct.
  static std::vector<int> choose(std::vector<int> from, std::size_t count,
                                 const std::vector<std::uint64_t>& picks, std::size_t offset);

  ChaosCluster& cluster_;
  EventLog& log_;
  const Recorder& clock_;
  std::vector<Active> active_;
  std::map<FaultKind, FaultCount> counts_;
  std::vector<std::string> problems_;
  int transfer_supported_ = -1;    // -1 unknown, 0 no, 1 yes
  int membership_supported_ = -1;  // -1 unknown, 0 no, 1 yes
};

}  // namespace kvc::chaos
