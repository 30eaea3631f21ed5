// The chaos tests' fault schedule and the nemesis that carries it out. make_schedule() turns a
// seed into a list of fault steps (what, when, for how long, with which parameters); which
// member a step hits is drawn from the seed too, but resolved against the cluster when the
// step fires ("the leader" is whoever leads then). The Nemesis applies each step, heals it
// after its hold, logs every action with its time, and counts faults by kind. Faults:
// SIGKILL of members (any, the leader, a majority for a while), clean stop and restart,
// SIGSTOP pauses (of the leader too), partitions through the FaultProxy (isolation, splits,
// one-way cuts, black holes), lossy and slow links, slow disks (slowfs), leader transfers and
// member replacement (skipped, and reported so, while the members answer "not supported"), and
// two faults of a member's own disk: `rollback` (a member restarts on an older copy of its data
// directory, taken from a clean stop seconds earlier) and `damage` (one bit flipped in a stored
// value of a cleanly stopped member's LMDB state). A membership change whose answer is lost
// (kTimeout) is never assumed to have failed or succeeded: the nemesis reads the membership
// until it knows (resolve_change).
//
// The rollback's protection window: kvc detects a rolled-back member only through a leader that
// saw the acknowledgements of the member's earlier incarnation (kvc-node(1), INTEGRITY), so the
// nemesis heals every other fault before it rolls a member back and applies no new one until
// the member is repaired (status: not repairing, applied index at or past the leader's commit
// index at the restart), bounded in time (a repair that never happens fails the run). A leader
// is rolled back only after a new leader has committed an entry of its own term, so the member
// that leads when the old one returns holds every committed entry; see docs/chaos.md for what
// is and is not claimed then. Right after either fault's restart the nemesis reads, through
// that member only, the keys it may serve stale or damaged (linearizable reads, recorded in the
// history as clients of their own), so a member that serves what it cannot vouch for is caught
// by the linearizability check.
//
// Thread-safety: make_schedule is a pure function. A Nemesis runs on the thread that owns the
// cluster; EventLog is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
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
  kRollback,        // restart a member (sometimes the leader) on an older copy of its data
  kDamage,          // flip a bit in a stored value of a stopped member's state, restart it
};
inline constexpr int kFaultKindCount = 17;

std::string_view fault_name(FaultKind kind);
std::vector<FaultKind> all_fault_kinds();
// "all", or a comma-separated list of kind names and groups (kill, pause, partition, net,
// disk, membership, restart, integrity).
Result<std::vector<FaultKind>> parse_fault_mix(std::string_view text);

struct FaultStep {
  std::uint64_t at_ms = 0;    // since the run began
  std::uint64_t hold_ms = 0;  // until it is healed
  FaultKind kind = FaultKind::kKill;
  std::vector<std::uint64_t> picks;  // random numbers that choose members when it fires
  // Partitions, pauses, slow disks, damage: include the leader. Rollback: the member is made
  // the leader before it is rolled back (about one rollback in three).
  bool hit_leader = false;
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

// What the integrity faults did, for the run's summary.
struct IntegrityCounts {
  std::uint64_t rollbacks = 0;  // members restarted on an older copy of their data
  std::uint64_t rollbacks_of_leader = 0;
  std::uint64_t rollbacks_detected = 0;     // the leader logged "member lost entries ..."
  std::uint64_t rollback_entries_lost = 0;  // log entries the copies were behind, summed
  std::uint64_t repair_ms_max = 0;          // the longest protection window
  std::uint64_t damaged = 0;                // values damaged
  std::uint64_t damage_found = 0;           // ... that the member found ("state damaged")
  std::uint64_t damage_replaced = 0;
  std::uint64_t damage_rolled_back = 0;  // ... gone with a rollback of the member first        //
                                         // ... gone with a snapshot install before it was found
  std::uint64_t probe_reads = 0;         // reads through a rolled-back or damaged member (attempts)
  std::uint64_t probe_reads_ok = 0;      // ... keys answered (a probe stops at its first answer)

  IntegrityCounts& operator+=(const IntegrityCounts& o);
  std::string to_string() const;  // "rollbacks=2 (leader 1, detected 1, ...) damaged=1 ..."
};

struct NemesisOptions {
  // Keys the damage fault may damage, in order of preference (the workload's cold keys first,
  // whose values stay for a while); also what a rollback's probe reads read.
  std::vector<std::string> keys;
  std::size_t cold_keys = 0;                     // the first this many of `keys` are cold
  std::uint64_t op_timeout_ms = 1500;            // of each probe read
  std::uint64_t first_probe_client = 1'000'000;  // history client ids of the probe reads
  std::uint64_t repair_timeout_ms = 30000;       // the rollback's protection window, at most
};

class Nemesis {
 public:
  Nemesis(ChaosCluster& cluster, EventLog& log, Recorder& recorder, NemesisOptions options = {});

  // Applies the steps at their times and heals each after its hold, until `end_ms` (since
  // the run began) or until `stop()` is true. Bounded by `end_ms`.
  void run(const std::vector<FaultStep>& schedule, std::uint64_t end_ms,
           const std::function<bool()>& stop);
  // Heals everything still in effect: links, disks, pauses; restarts stopped members; carries
  // out the rollbacks still pending (with their protection window).
  Status heal_all();
  // Once the members have converged: every damaged value was found by its member or replaced
  // with its whole state by a snapshot install (the member's log says which), and no member is
  // still damaged. Returns the problems (empty: passed).
  std::vector<std::string> verify_damage_repaired();

  std::map<FaultKind, FaultCount> counts() const { return counts_; }
  IntegrityCounts integrity() const;
  // Problems the nemesis saw (a clean stop that did not exit 0, a restart that failed).
  const std::vector<std::string>& problems() const { return problems_; }
  // Whether the members answered transfer-leader / member changes ("unknown" before a try).
  std::string membership_support() const;

 private:
  // A rollback between its two halves: the copy is taken, the member runs on.
  struct PendingRollback {
    int member = -1;
    std::string copy;                   // the older copy of its data directory
    std::uint64_t copy_last_index = 0;  // the copy's last log index
    bool make_leader = false;           // roll back the leader (transfer leadership to it first)
    bool kill = false;                  // SIGKILL rather than SIGTERM before the swap
  };
  // A damaged value, checked once the run has converged (verify_damage_repaired).
  struct DamageRecord {
    int member = -1;
    std::string key;
    std::string log_path;
    std::uint64_t log_offset = 0;  // the member's log from this restart on
    std::uint64_t log_end = 0;     // ... to here: its next damage or rollback (0: to the end)
    bool rolled_back = false;      // its data was replaced by an older copy since
  };
  // The part of the member's log that belongs to `d` (from its restart to the next fault of
  // the same kind on that member).
  static std::string damage_log(const DamageRecord& d);
  struct Active {
    std::uint64_t heal_at_ms = 0;
    FaultKind kind = FaultKind::kKill;
    std::vector<int> stopped;  // killed or terminated: restart
    std::vector<int> paused;
    std::vector<std::pair<int, int>> links;
    std::vector<int> slow_disks;
    std::vector<PendingRollback> rollback;  // at most one: the second half, done at heal_at_ms
  };

  std::uint64_t now_ms() const { return clock_.now_us() / 1000; }
  void note(const std::string& line);
  // Heals the active faults whose hold is over (rollbacks excepted: run() and heal_all() carry
  // those out, since their protection window holds every other fault).
  void heal_due();
  // The integrity faults (their first halves run from apply()).
  bool start_rollback(const FaultStep& step, Active& active);
  // The second half: heals the other faults, rolls the member back and waits (bounded) for its
  // repair. Returns how long the other faults were held.
  std::uint64_t finish_rollback(const PendingRollback& r);
  bool damage(const FaultStep& step);
  // Linearizable reads of `keys` through `member` only, each recorded in the history as a
  // client of its own; started at once, in parallel, each retried until answered (at most
  // kProbeMs). Join the threads returned.
  std::vector<std::thread> probe_reads(int member, const std::vector<std::string>& keys);
  // "" when no damage the nemesis made is still unrepaired and no member reports itself
  // damaged or repairing; else what is (for a log line).
  std::string integrity_busy();
  // Polls member m's status until it answers (bounded); false if it never did.
  bool wait_answering(int member, std::uint64_t timeout_ms);
  // The active members that run and are not paused.
  std::vector<int> up_members() const;
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
  Recorder& clock_;  // also where the probe reads are recorded
  NemesisOptions options_;
  std::vector<Active> active_;
  std::map<FaultKind, FaultCount> counts_;
  IntegrityCounts integrity_;
  std::vector<DamageRecord> damaged_;
  std::uint64_t held_ms_ = 0;  // the schedule is shifted by the protection windows so far
  std::uint64_t next_probe_client_ = 0;
  std::atomic<std::uint64_t> probes_tried_{0};
  std::atomic<std::uint64_t> probes_answered_{0};
  static constexpr std::uint64_t kProbeMs = 4000;  // a probe read is retried this long at most
  int copies_ = 0;
  std::vector<std::string> problems_;
  int transfer_supported_ = -1;    // -1 unknown, 0 no, 1 yes
  int membership_supported_ = -1;  // -1 unknown, 0 no, 1 yes
};

}  // namespace kvc::chaos
