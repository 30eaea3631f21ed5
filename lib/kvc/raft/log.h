// The in-memory Raft log the algorithm reads and appends to: the entries after the snapshot
// point (index, term) it starts from. It owns no file: the Node hands new entries to the caller
// in Ready::entries and learns what is durable through Node::advance(). Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "kvc/raft/types.h"

namespace kvc::raft {

class RaftLog {
 public:
  RaftLog() = default;
  // `entries` must be contiguous from snapshot_index + 1 (checked by Node::create).
  RaftLog(std::uint64_t snapshot_index, std::uint64_t snapshot_term, std::vector<Entry> entries);

  std::uint64_t snapshot_index() const { return snapshot_index_; }
  std::uint64_t snapshot_term() const { return snapshot_term_; }
  std::uint64_t first_index() const { return snapshot_index_ + 1; }
  std::uint64_t last_index() const { return snapshot_index_ + entries_.size(); }
  std::uint64_t last_term() const { return *term(last_index()); }

  // The term of entry `index`; nullopt below the snapshot point or past the end.
  std::optional<std::uint64_t> term(std::uint64_t index) const;
  bool match_term(std::uint64_t index, std::uint64_t t) const {
    auto have = term(index);
    return have && *have == t;
  }
  // Requires first_index() <= index <= last_index().
  const Entry& at(std::uint64_t index) const;

  // Entries [lo, hi] (clamped to last_index()), stopping once `max_bytes` of data is reached;
  // always at least one entry when lo <= last_index(). Requires lo >= first_index().
  std::vector<Entry> slice(std::uint64_t lo, std::uint64_t hi, std::uint64_t max_bytes) const;

  // The first entry of `ents` that is not already in the log with the same term (a conflict or
  // a new entry), or 0 when all are present.
  std::uint64_t find_conflict(std::span<const Entry> ents) const;
  // The largest index <= `index` whose term is <= `t` (the fast back-off hint), with its term.
  // Stops at the snapshot point.
  std::pair<std::uint64_t, std::uint64_t> find_conflict_by_term(std::uint64_t index,
                                                                std::uint64_t t) const;

  // Drops entries >= ents.front().index and appends `ents` (contiguous). Requires
  // snapshot_index() < ents.front().index <= last_index() + 1.
  void truncate_and_append(std::span<const Entry> ents);
  // Appends one entry at last_index() + 1.
  void append(Entry e);
  // Drops entries <= index; the snapshot point becomes (index, term(index)).
  void compact(std::uint64_t index);
  // Replaces everything by an empty log after (index, term).
  void restore(std::uint64_t index, std::uint64_t t);

  // Raft §5.4.1: a candidate's log is at least as up to date as ours.
  bool is_up_to_date(std::uint64_t last_idx, std::uint64_t last_t) const {
    return last_t > last_term() || (last_t == last_term() && last_idx >= last_index());
  }

  static std::uint64_t entry_bytes(const Entry& e) { return e.data.size() + 16; }

 private:
  std::uint64_t snapshot_index_ = 0;
  std::uint64_t snapshot_term_ = 0;
  // Invariant: entries_[i].index == snapshot_index_ + 1 + i; terms never decrease.
  std::vector<Entry> entries_;
};

}  // namespace kvc::raft
