// Integrity: damage found in the state (a checksum mismatch on read, apply, snapshot, hash
// or scrub; a hash the majority disagrees with), the damaged mode, and its repair from a
// leader's snapshot; the background scrubber and the periodic cross-member hash check
// (kvc-node(1), INTEGRITY).
//
// Invariants kept here:
// - While damaged_ is true nothing is applied, no read is served and the member does not vote.
// - Damage is left only after a snapshot newer than the damaged applied index is installed.
// - Errors other than damage (I/O) are fatal: the member stops, it does not continue.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Integrity: damage found in the state, and its repair

bool Engine::Impl::damage(const Status& s, const std::string& where) {
  if (s.code() != Code::kCorruption) return false;
  metrics_->damage_found.inc();
  if (!damaged_) {
    damaged_ = true;
    damage_reason_ = where + ": " + s.message();
    ready_.store(false);
    metrics_->state_damaged.set(1);
    spdlog::error(
        "state damaged where=\"{}\" error=\"{}\": this member serves no reads, "
        "applies nothing and does not lead until a snapshot from the leader replaces "
        "its state",
        where, s.message());
  } else {
    spdlog::debug("more state damage where=\"{}\" error=\"{}\"", where, s.message());
  }
  if (!stopping_) node_->mark_damaged(state_->applied_index());
  return true;
}

std::string Engine::Impl::damaged_message() const {
  return "member " + identity_.name + " serves no reads: its state is damaged (" + damage_reason_ +
         ") and is being repaired with a snapshot from the leader; ask another "
         "member";
}

void Engine::Impl::note_repair_progress() {
  metrics_->raft_repairing.set(node_->repair().active() ? 1 : 0);
  if (!damaged_ || node_->repair().needs_snapshot) return;
  spdlog::info("state repaired: replaced by the leader's snapshot applied={}; serving again",
               state_->applied_index());
  damaged_ = false;
  damage_reason_.clear();
  metrics_->state_damaged.set(0);
  metrics_->repairs_completed.inc();
  ready_at_commit_ = node_->commit();
  drain_apply();
}

// Completed scrub passes are logged at info at most this often (each one at debug).
constexpr std::uint64_t kScrubLogEveryMs = 10 * 60 * 1000;

// The scrubber: every kScrubTickMs, verify a batch of stored records on the scrub thread, at
// about --scrub-rate bytes a second (a token bucket refilled by elapsed time, never more than a
// second's worth), so damage in keys nobody reads is found and repaired before a snapshot or a
// read needs them. It stands aside while the state is damaged or an install waits.
void Engine::Impl::scrub_tick() {
  const std::uint64_t now = now_ms();
  const double rate = static_cast<double>(options_.scrub_bytes_per_second);
  if (scrub_last_ms_ != 0) {
    scrub_allowance_ += rate * static_cast<double>(now - scrub_last_ms_) / 1000.0;
    scrub_allowance_ = std::min(scrub_allowance_, rate);
  }
  scrub_last_ms_ = now;
  if (scrubbing_ || damaged_ || stopping_ || install_waiting_ || scrub_allowance_ <= 0) return;
  const std::size_t records = static_cast<std::size_t>(
      std::clamp(scrub_allowance_ / std::max(scrub_record_bytes_, 1.0), 1.0, 4096.0));
  if (scrub_cursor_.stage == storage::ScrubCursor::Stage::kMeta && scrub_cursor_.next_key.empty()) {
    scrub_pass_started_ = std::chrono::steady_clock::now();
  }
  scrubbing_ = true;
  const storage::ScrubCursor from = scrub_cursor_;
  scrub_->post([this, from, records] {
    Result<storage::ScrubBatch> batch = state_->scrub(from, records);
    post_loop([this, batch = std::move(batch)] {
      scrubbing_ = false;
      resume_install();
      if (!batch.ok()) {
        if (!damage(batch.status(), "the scrubber")) {
          spdlog::warn("scrub failed; starting the pass again error={}", batch.status().message());
        }
        scrub_cursor_ = {};
        return;
      }
      scrub_allowance_ -= static_cast<double>(batch->bytes);
      if (batch->records > 0) {
        scrub_record_bytes_ = 0.9 * scrub_record_bytes_ + 0.1 * static_cast<double>(batch->bytes) /
                                                              static_cast<double>(batch->records);
      }
      scrub_records_ += batch->records;
      metrics_->scrub_records.inc(batch->records);
      metrics_->scrub_bytes.inc(batch->bytes);
      for (const std::string& d : batch->damaged) {
        ++scrub_damaged_;
        metrics_->scrub_damaged.inc();
        spdlog::error("scrub found a damaged record: {}", d);
      }
      if (!batch->damaged.empty()) {
        (void)damage(
            Status::corruption("state " + state_->state_dir() + ": " + batch->damaged.front()),
            "the scrubber");
      }
      scrub_cursor_ = batch->next;
      if (scrub_cursor_.done()) {
        ++scrub_passes_;
        metrics_->scrub_passes.inc();
        const std::uint64_t at = now_ms();
        const bool log_info = !scrub_logged_at_ms_ || scrub_damaged_ != scrub_logged_damaged_ ||
                              at - *scrub_logged_at_ms_ >= kScrubLogEveryMs;
        if (log_info) {
          scrub_logged_at_ms_ = at;
          scrub_logged_damaged_ = scrub_damaged_;
        }
        spdlog::log(log_info ? spdlog::level::info : spdlog::level::debug,
                    "scrub pass complete passes={} records={} damaged={} dur_ms={}", scrub_passes_,
                    scrub_records_, scrub_damaged_,
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - scrub_pass_started_)
                        .count());
        scrub_cursor_ = {};
      }
    });
  });
}

// The client the hash check asks the other members with (made on first use; it follows the
// members itself afterwards). False when there is no member to ask or it cannot be made.
bool Engine::Impl::ensure_hash_client(
    const std::vector<std::pair<std::uint64_t, std::string>>& others) {
  if (hash_client_ && !hash_client_stale_) return true;
  // After a TLS reload it is made again with the new files (start_hash_check calls this only
  // between rounds, so no call of the old one is in flight).
  hash_client_.reset();
  hash_client_stale_ = false;
  client::ClientOptions o;
  for (const auto& [id, addr] : others) {
    if (Result<net::Address> a = net::parse_address(addr); a.ok()) o.endpoints.push_back(*a);
  }
  if (Result<net::Address> self = net::parse_address(client_bound_); self.ok()) {
    o.endpoints.push_back(*self);
  }
  if (o.endpoints.empty()) return false;  // no client listeners: nothing to ask
  o.cluster_id = identity_.cluster_id;
  o.timeout_ms = options_.request_timeout_ms;
  o.name = "kvc-hash-check-" + identity_.name;
  secure_internal_client(o);
  Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
  if (!c.ok()) {
    spdlog::warn("hash check: cannot make a client error={}", c.status().message());
    return false;
  }
  hash_client_ = std::move(*c);
  return true;
}

// The periodic cross-member hash check (etcd's corruption check, but acted upon): the leader
// commits a barrier, learns every member's state hash at it, and when some disagree with the
// majority commits a verdict naming the majority's hash; each member compares its own hash at
// that barrier and a member that differs repairs itself (apply_hash_verdict).
void Engine::Impl::start_hash_check() {
  if (hash_checking_ || damaged_ || stopping_ || node_->role() != raft::Role::kLeader) return;
  const raft::ConfState& conf = node_->conf_state();
  std::vector<std::pair<std::uint64_t, std::string>> others;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id == identity_.member_id) continue;
      const storage::Member* m = member(id);
      others.emplace_back(id, m != nullptr ? m->client_addr : std::string());
    }
  }
  if (!ensure_hash_client(others)) return;
  hash_checking_ = true;
  wire::Request req;
  req.op = wire::Op::kHash;
  req.timeout_ms = 2 * options_.request_timeout_ms;
  propose_barrier(std::move(req), [this, others](wire::Response r) {
    if (r.code != Code::kOk) {
      hash_checking_ = false;
      hash_check_result_ = "failed: " + r.message;
      metrics_->hash_checks_failed.inc();
      spdlog::warn("hash check failed error={}", r.message);
      return;
    }
    struct Round {
      std::uint64_t index = 0;
      std::size_t waiting = 0;
      std::map<std::uint64_t, std::uint64_t> hashes;  // member id -> hash
      std::vector<std::string> failures;
    };
    auto round = std::make_shared<Round>();
    round->index = r.revision;
    round->hashes[identity_.member_id] = r.hash;
    round->waiting = others.size();
    if (others.empty()) {
      finish_hash_check(round->index, std::move(round->hashes), {});
      return;
    }
    for (const auto& other : others) {
      // Named copies, not structured bindings: lambdas below capture them (clang 14 cannot
      // capture a structured binding).
      const std::uint64_t id = other.first;
      const std::string& addr = other.second;
      const storage::Member* m = member(id);
      const std::string name = m != nullptr && !m->name.empty() ? m->name : hex(id);
      Result<net::Address> a = net::parse_address(addr);
      if (!a.ok()) {
        round->failures.push_back(name + ": no client address");
        if (--round->waiting == 0) {
          finish_hash_check(round->index, std::move(round->hashes), std::move(round->failures));
        }
        continue;
      }
      wire::Request q;
      q.op = wire::Op::kHash;
      q.start_revision = round->index;
      q.timeout_ms = 2 * options_.request_timeout_ms;
      client::CallOptions co;
      co.target = *a;
      co.timeout_ms = q.timeout_ms;
      hash_client_->call(
          std::move(q),
          [this, round, id, name](wire::Response answer) {
            post_loop([this, round, id, name, answer = std::move(answer)] {
              if (answer.code == Code::kOk && answer.revision == round->index) {
                round->hashes[id] = answer.hash;
              } else {
                round->failures.push_back(name + ": " + answer.message);
              }
              if (--round->waiting == 0) {
                finish_hash_check(round->index, std::move(round->hashes),
                                  std::move(round->failures));
              }
            });
          },
          co);
    }
  });
}

void Engine::Impl::finish_hash_check(std::uint64_t index,
                                     std::map<std::uint64_t, std::uint64_t> hashes,
                                     std::vector<std::string> failures) {
  hash_checking_ = false;
  hash_check_index_ = index;
  std::map<std::uint64_t, std::size_t> votes;
  for (const auto& [id, h] : hashes) ++votes[h];
  const raft::ConfState& conf = node_->conf_state();
  const std::size_t members = conf.voters.size() + conf.learners.size();
  std::uint64_t majority = 0;
  bool have = false;
  for (const auto& [h, n] : votes) {
    if (n * 2 > members) {
      majority = h;
      have = true;
    }
  }
  std::string failed;
  for (const std::string& f : failures) failed += (failed.empty() ? "" : "; ") + f;
  if (!have) {
    hash_check_result_ = "failed: no majority agrees on the state hash at index " +
                         std::to_string(index) + (failed.empty() ? "" : " (" + failed + ")");
    metrics_->hash_checks_failed.inc();
    spdlog::warn("hash check inconclusive index={} answers={} members={} unanswered=\"{}\"", index,
                 hashes.size(), members, failed);
    return;
  }
  std::string differ;
  for (const auto& [id, h] : hashes) {
    if (h == majority) continue;
    const storage::Member* m = member(id);
    differ += (differ.empty() ? "" : ", ") + (m != nullptr ? m->name : hex(id));
  }
  if (differ.empty()) {
    hash_check_result_ = "agreed";
    if (!failed.empty()) hash_check_result_ += " (unanswered: " + failed + ")";
    metrics_->hash_checks_agreed.inc();
    spdlog::debug("hash check agreed index={} hash={:016x}", index, majority);
    return;
  }
  hash_check_result_ = "disagreed: " + differ + " differ from the majority at index " +
                       std::to_string(index) + "; they repair themselves";
  metrics_->hash_checks_disagreed.inc();
  spdlog::error(
      "state hash check: members disagree with the majority index={} majority={:016x} "
      "differ=\"{}\": committing a verdict so that they repair themselves",
      index, majority, differ);
  storage::Command cmd;
  cmd.op = storage::CommandOp::kHashVerdict;
  cmd.request_id = ++request_seq_;
  cmd.expect_revision = index;
  cmd.hash = majority;
  if (node_->role() != raft::Role::kLeader) return;
  if (Result<std::uint64_t> at = node_->propose(storage::encode_command(cmd)); !at.ok()) {
    spdlog::warn("hash check: cannot propose the verdict error={}", at.status().message());
  }
}

void Engine::Impl::apply_hash_verdict(std::uint64_t index, std::uint64_t hash) {
  auto it = barrier_hashes_.find(index);
  if (it == barrier_hashes_.end()) return;  // not hashed here (restarted since): no opinion
  if (it->second == hash) return;
  char mine[17], theirs[17];
  std::snprintf(mine, sizeof mine, "%016llx", static_cast<unsigned long long>(it->second));
  std::snprintf(theirs, sizeof theirs, "%016llx", static_cast<unsigned long long>(hash));
  (void)damage(Status::corruption("the state hash at index " + std::to_string(index) + " is " +
                                  mine + " here, " + theirs + " on the majority of members"),
               "the periodic hash check");
}

}  // namespace kvc::server
