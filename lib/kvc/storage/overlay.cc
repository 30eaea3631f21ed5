#include "kvc/storage/overlay.h"

#include <algorithm>
#include <functional>

namespace kvc::storage {
namespace {

// What a std::map node and a std::string header cost beside the bytes they hold (roughly).
constexpr std::size_t kSlotOverhead = 112;
constexpr std::size_t kEventOverhead = 96;
// The filter: at least this many bits per key (two set per key: about 1.4 % false positives),
// and never fewer than this many 64-bit words.
constexpr std::size_t kFilterBitsPerKey = 16;
constexpr std::size_t kFilterMinWords = 16;

}  // namespace

std::uint64_t Overlay::hash(std::string_view key) { return std::hash<std::string_view>{}(key); }

bool Overlay::may_contain(std::uint64_t h) const {
  if (filter_.empty()) return false;
  const std::uint64_t mask = filter_.size() * 64 - 1;
  const std::uint64_t a = h & mask;
  const std::uint64_t b = (h >> 32 | h << 32) & mask;
  return (filter_[a / 64] >> (a % 64) & 1) != 0 && (filter_[b / 64] >> (b % 64) & 1) != 0;
}

void Overlay::remember(std::uint64_t h) {
  const std::uint64_t mask = filter_.size() * 64 - 1;
  const std::uint64_t a = h & mask;
  const std::uint64_t b = (h >> 32 | h << 32) & mask;
  filter_[a / 64] |= std::uint64_t{1} << (a % 64);
  filter_[b / 64] |= std::uint64_t{1} << (b % 64);
}

// The slot of `key`, made (empty) if the layer has none: one walk of the map, and the filter
// learns the key (grown, from all keys, when the layer outgrows it).
Overlay::Map::iterator Overlay::slot_for(std::string_view key) {
  auto it = entries_.lower_bound(key);
  if (it != entries_.end() && it->first == key) return it;
  it = entries_.emplace_hint(it, std::string(key), OverlaySlot{});
  bytes_ += kSlotOverhead + key.size();
  if (entries_.size() * kFilterBitsPerKey > filter_.size() * 64) {
    bytes_ -= filter_.size() * sizeof(std::uint64_t);
    filter_.assign(std::max<std::size_t>(filter_.size() * 2, kFilterMinWords), 0);
    bytes_ += filter_.size() * sizeof(std::uint64_t);
    for (const auto& [k, slot] : entries_) remember(hash(k));
  } else {
    remember(hash(key));
  }
  return it;
}

const OverlaySlot* Overlay::find(std::string_view key) const {
  if (!may_contain(hash(key))) return nullptr;
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void Overlay::put(const KeyValue& kv) {
  OverlaySlot& s = slot_for(kv.key)->second;
  bytes_ -= s.value.size();
  s.deleted = false;
  s.value = kv.value;
  s.create_revision = kv.create_revision;
  s.mod_revision = kv.mod_revision;
  s.version = kv.version;
  bytes_ += kv.value.size();
}

void Overlay::erase(std::string_view key) {
  OverlaySlot& s = slot_for(key)->second;
  bytes_ -= s.value.size();
  s = OverlaySlot{.deleted = true};
}

void Overlay::add_event(Event e) {
  KVC_CHECK(e.revision > base_index_, "event below the overlay's base index");
  KVC_CHECK(
      events_.empty() || events_.back().revision < e.revision ||
          (events_.back().revision == e.revision && events_.back().sequence + 1 == e.sequence),
      "events out of order");
  bytes_ += kEventOverhead + e.key.size() + e.value.size() + e.prev_value.size();
  events_.push_back(std::move(e));
}

void Overlay::advance(std::uint64_t index, std::uint64_t term, bool changed) {
  KVC_CHECK_EQ(index, last_index_ + 1);
  last_index_ = index;
  last_term_ = term;
  if (changed) revision_ = index;
}

}  // namespace kvc::storage
