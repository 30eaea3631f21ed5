// One layer of changes that the state machine has applied but not yet written to LMDB: the
// keys written (with their new value and revisions) or deleted (a tombstone, which hides the
// key in the layers below), the watch events of those entries, the membership if it changed,
// and the range of Raft indexes it covers. The state machine keeps an active overlay that apply
// writes to and, during a flush, a frozen one (state.h). An Overlay does no I/O and knows
// nothing of LMDB. Not thread-safe; a frozen overlay is never modified, so any number of threads
// may read it at once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/storage/membership.h"
#include "kvc/storage/state_types.h"

namespace kvc::storage {

struct OverlaySlot {
  bool deleted = false;  // a tombstone: absent, whatever the layers below hold
  std::string value;
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
};

class Overlay {
 public:
  using Map = std::map<std::string, OverlaySlot, std::less<>>;

  // An empty overlay on top of a state whose last applied entry is (base_index, base_term).
  Overlay(std::uint64_t base_index, std::uint64_t base_term)
      : base_index_(base_index), last_index_(base_index), last_term_(base_term) {}

  // The slot of `key` in this layer (possibly a tombstone), or null when this layer does not
  // mention it.
  const OverlaySlot* find(std::string_view key) const;
  void put(const KeyValue& kv);
  void erase(std::string_view key);
  void add_event(Event e);
  void set_membership(Membership m) { membership_ = std::move(m); }
  // The leases changed by this layer's entries, as they stand at its last index (nullopt: the
  // lease was revoked). The state machine keeps the live lease table itself and records here,
  // when it freezes the layer, what the flush must write.
  using LeaseChanges = std::map<std::uint64_t, std::optional<Lease>>;
  void set_lease_changes(LeaseChanges changes) { lease_changes_ = std::move(changes); }
  const LeaseChanges& lease_changes() const { return lease_changes_; }
  // Records that the entry (index, term) was applied; `changed` when it changed a key.
  void advance(std::uint64_t index, std::uint64_t term, bool changed);

  const Map& entries() const { return entries_; }
  const std::vector<Event>& events() const { return events_; }
  const std::optional<Membership>& membership() const { return membership_; }
  std::uint64_t base_index() const { return base_index_; }
  std::uint64_t last_index() const { return last_index_; }
  std::uint64_t last_term() const { return last_term_; }
  // The highest revision that changed a key in this layer; 0 when none did.
  std::uint64_t revision() const { return revision_; }
  // True when no entry was applied to this layer.
  bool empty() const { return last_index_ == base_index_; }
  std::uint64_t applied_entries() const { return last_index_ - base_index_; }
  // Approximate memory held, in bytes.
  std::size_t bytes() const { return bytes_; }

 private:
  static std::uint64_t hash(std::string_view key);
  bool may_contain(std::uint64_t h) const;
  void remember(std::uint64_t h);
  Map::iterator slot_for(std::string_view key);

  // Invariant: base_index_ <= revision_ <= last_index_ when revision_ != 0; events_ are in
  // (revision, sequence) order with revisions in (base_index_, last_index_].
  Map entries_;
  std::vector<Event> events_;
  std::optional<Membership> membership_;
  LeaseChanges lease_changes_;
  // A Bloom filter of the keys in entries_ (two bits of one hash per key, at least 16 bits per
  // key): most keys a put or get looks up are in no layer, and the filter answers that without
  // walking the map. Keys are never removed from a layer, so it never needs to forget one.
  std::vector<std::uint64_t> filter_;
  std::uint64_t base_index_;
  std::uint64_t last_index_;
  std::uint64_t last_term_;
  std::uint64_t revision_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace kvc::storage
