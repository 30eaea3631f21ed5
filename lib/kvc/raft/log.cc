// The in-memory Raft log.
#include "kvc/raft/log.h"

#include "kvc/common/check.h"

namespace kvc::raft {

RaftLog::RaftLog(std::uint64_t snapshot_index, std::uint64_t snapshot_term,
                 std::vector<Entry> entries)
    : snapshot_index_(snapshot_index),
      snapshot_term_(snapshot_term),
      entries_(std::move(entries)) {}

std::optional<std::uint64_t> RaftLog::term(std::uint64_t index) const {
  if (index == snapshot_index_) return snapshot_term_;
  if (index < snapshot_index_ || index > last_index()) return std::nullopt;
  return entries_[index - snapshot_index_ - 1].term;
}

const Entry& RaftLog::at(std::uint64_t index) const {
  KVC_CHECK(index > snapshot_index_ && index <= last_index(), "log index out of range");
  return entries_[index - snapshot_index_ - 1];
}

std::vector<Entry> RaftLog::slice(std::uint64_t lo, std::uint64_t hi,
                                  std::uint64_t max_bytes) const {
  std::vector<Entry> out;
  KVC_CHECK_GT(lo, snapshot_index_);
  hi = std::min(hi, last_index());
  std::uint64_t bytes = 0;
  for (std::uint64_t i = lo; i <= hi; ++i) {
    const Entry& e = at(i);
    const std::uint64_t b = entry_bytes(e);
    if (!out.empty() && bytes + b > max_bytes) break;
    bytes += b;
    out.push_back(e);
  }
  return out;
}

std::uint64_t RaftLog::find_conflict(std::span<const Entry> ents) const {
  for (const Entry& e : ents) {
    if (e.index <= snapshot_index_) continue;  // compacted: committed, so it matches
    if (!match_term(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<std::uint64_t, std::uint64_t> RaftLog::find_conflict_by_term(std::uint64_t index,
                                                                       std::uint64_t t) const {
  index = std::min(index, last_index());
  while (index > snapshot_index_) {
    const std::uint64_t have = at(index).term;
    if (have <= t) return {index, have};
    --index;
  }
  return {index, index == snapshot_index_ ? snapshot_term_ : 0};
}

void RaftLog::truncate_and_append(std::span<const Entry> ents) {
  if (ents.empty()) return;
  const std::uint64_t from = ents.front().index;
  KVC_CHECK(from > snapshot_index_ && from <= last_index() + 1, "append leaves a gap");
  entries_.resize(from - snapshot_index_ - 1);
  for (const Entry& e : ents) {
    KVC_CHECK_EQ(e.index, last_index() + 1);
    entries_.push_back(e);
  }
}

void RaftLog::append(Entry e) {
  KVC_CHECK_EQ(e.index, last_index() + 1);
  KVC_CHECK_GE(e.term, last_term());
  entries_.push_back(std::move(e));
}

void RaftLog::compact(std::uint64_t index) {
  if (index <= snapshot_index_) return;
  KVC_CHECK_LE(index, last_index());
  const std::uint64_t t = at(index).term;
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<std::ptrdiff_t>(index - snapshot_index_));
  snapshot_index_ = index;
  snapshot_term_ = t;
}

void RaftLog::restore(std::uint64_t index, std::uint64_t t) {
  entries_.clear();
  snapshot_index_ = index;
  snapshot_term_ = t;
}

}  // namespace kvc::raft
