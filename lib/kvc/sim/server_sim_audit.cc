// Hash audits (ServerSimOptions::hash_audits): now and then the leader is asked for a state
// hash at a barrier, through the real request kvc-ctl check hash sends (kHash without an
// index: the leader proposes a barrier, and every member hashes its state when it applies it,
// on its scan thread while its flushes go on). Then every other running member is asked for
// its hash at that index (kHash with the index; it answers once it has applied and hashed it).
// Members that answer must all agree with the leader: the state machines are deterministic, so
// two hashes at one index differ only if a member applied something else, lost or damaged data
// without noticing, or hashed a state other than the barrier's.
//
// Answers that are not hashes are no evidence either way and are let go: a member that
// restarted since the barrier has no hash for it (kNotFound), a damaged one refuses, a
// partitioned one times out.
#include <string>

#include "kvc/common/text.h"
#include "kvc/sim/server_sim_internal.h"

namespace kvc::sim::server_cluster {

void ServerSim::hash_audit_tick() {
  if (!result_.ok) return;
  if (!audit_inflight_) start_hash_audit();
  at(now_us_ + 300'000 + rand(500'000), [this] { hash_audit_tick(); });
}

void ServerSim::start_hash_audit() {
  Slot* l = leader_slot();
  if (l == nullptr) return;
  audit_inflight_ = true;
  const std::uint64_t seq = ++audit_seq_;
  // An answer lost with its member: the next audit may start.
  at(now_us_ + 3'000'000, [this, seq] {
    if (audit_seq_ == seq) audit_inflight_ = false;
  });
  wire::Request req;
  req.op = wire::Op::kHash;
  req.timeout_ms = 2000;
  const int i = l->index;
  trace("audit: barrier hash -> " + l->name);
  enter(i);
  l->member->submit(std::move(req), [this, seq, i](wire::Response r) {
    if (audit_seq_ != seq || !audit_inflight_) return;
    if (r.code != Code::kOk) {
      audit_inflight_ = false;
      trace("audit: no barrier hash: " + std::string(code_name(r.code)) + " " + r.message);
      return;
    }
    ++result_.stats.hash_audits;
    trace("audit: " + slots_[static_cast<std::size_t>(i)].name +
          " hash at index=" + std::to_string(r.revision) + " is " + id_hex(r.hash));
    const std::uint64_t index = r.revision;
    const std::uint64_t hash = r.hash;
    // Asked from an event of its own: this callback runs inside the leader's code.
    at(now_us_ + 1, [this, seq, i, index, hash] { compare_hashes(seq, i, index, hash); });
  });
  after_event(i);
}

void ServerSim::compare_hashes(std::uint64_t seq, int leader, std::uint64_t index,
                               std::uint64_t hash) {
  if (audit_seq_ != seq) return;
  audit_inflight_ = false;  // the answers below are compared whenever they come
  const std::string leader_name = slots_[static_cast<std::size_t>(leader)].name;
  for (Slot& s : slots_) {
    if (s.index == leader || !s.member || s.member->stopped()) continue;
    wire::Request req;
    req.op = wire::Op::kHash;
    req.start_revision = index;
    req.timeout_ms = 2000;
    const int j = s.index;
    const std::string name = s.name;
    enter(j);
    s.member->submit(std::move(req), [this, name, leader_name, index, hash](wire::Response r) {
      if (r.code != Code::kOk) {
        trace("audit: " + name + " has no hash at index=" + std::to_string(index) + ": " +
              std::string(code_name(r.code)));
        return;
      }
      ++result_.stats.hashes_compared;
      if (r.revision != index || r.hash != hash) {
        violation("state hashes differ at barrier index " + std::to_string(index) + ": " +
                  leader_name + " has " + id_hex(hash) + ", " + name + " has " + id_hex(r.hash) +
                  " (at index " + std::to_string(r.revision) + ")");
      }
    });
    after_event(j);
  }
}

}  // namespace kvc::sim::server_cluster
