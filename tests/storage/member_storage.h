// A member's storage (WAL and state in one data directory) driven the way kvc-node drives it,
// for the tests of the cross-file checks and of the offline tools that report them. Test-only;
// not thread-safe.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvc/storage/command.h"
#include "kvc/storage/state.h"
#include "kvc/storage/wal.h"

namespace kvc::storage::testing {

// A member's storage driven the way kvc-node drives it: entries appended to the WAL (with a
// hard state committing them) and synced, noted durable, applied, and now and then flushed with
// a snapshot marker after the flush.
class MemberStorage {
 public:
  explicit MemberStorage(std::string dir) : dir_(std::move(dir)) { open(); }

  void open() {
    Result<OpenedWal> w = Wal::open(dir_ + "/wal", {.segment_bytes = 4096});
    KVC_CHECK(w.ok(), w.status().to_string());
    wal_.emplace(std::move(w->wal));
    Result<std::unique_ptr<StateMachine>> st = StateMachine::open(dir_ + "/state");
    KVC_CHECK(st.ok(), st.status().to_string());
    state_ = std::move(*st);
    last_ = wal_->last_index();
  }
  void close() {
    state_.reset();
    wal_.reset();
  }

  // Appends entries up to `to` in batches of five, each synced with a hard state that commits
  // it (so the log spans several 4 KiB segments); the first entry is the membership.
  void append(std::uint64_t to) {
    while (last_ < to) {
      std::vector<raft::Entry> entries;
      for (std::uint64_t i = last_ + 1; i <= std::min(to, last_ + 5); ++i) {
        raft::Entry e{.index = i, .term = 1};
        if (i == 1) {
          e.type = raft::EntryType::kConfChange;
        } else {
          e.data = encode_command({.op = CommandOp::kPut,
                                   .key = "k/" + std::to_string(i % 17),
                                   .value = std::string(200, static_cast<char>('a' + i % 26))});
        }
        entries.push_back(std::move(e));
      }
      const std::uint64_t end = entries.back().index;
      KVC_CHECK(wal_->append(raft::HardState{1, 0, end}, entries).ok(), "append");
      KVC_CHECK(wal_->sync().ok(), "sync");
      last_ = end;
      state_->note_log_durable(end);
      for (raft::Entry& e : entries) pending_.push_back(std::move(e));
    }
  }

  // Applies the appended entries up to `to`.
  void apply(std::uint64_t to) {
    while (!pending_.empty() && pending_.front().index <= to) {
      const raft::Entry& e = pending_.front();
      if (e.type == raft::EntryType::kConfChange) {
        Membership m;
        m.members = {{.id = 1, .name = "m1", .peer_addr = "127.0.0.1:1"}};
        state_->apply_membership(e.index, e.term, m);
      } else {
        KVC_CHECK(state_->apply_entry(e).ok(), "apply");
      }
      pending_.erase(pending_.begin());
    }
  }

  // Flushes, then records the marker the way kvc-node does after a flush.
  void flush() {
    KVC_CHECK(state_->flush_all().ok(), "flush");
    const std::uint64_t d = state_->durable_index();
    KVC_CHECK(wal_->save_snapshot({d, 1, raft::ConfState{{1}, {}}}).ok(), "marker");
    KVC_CHECK(wal_->sync().ok(), "sync");
  }

  // The usual start of a scenario: entries up to `to` appended, applied and flushed.
  void append_apply_flush(std::uint64_t to) {
    append(to);
    apply(to);
    flush();
  }

  StateMachine& state() { return *state_; }
  Wal& wal() { return *wal_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::optional<Wal> wal_;
  std::unique_ptr<StateMachine> state_;
  std::uint64_t last_ = 0;
  std::vector<raft::Entry> pending_;
};

}  // namespace kvc::storage::testing
