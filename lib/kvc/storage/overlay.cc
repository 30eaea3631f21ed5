#include "kvc/storage/overlay.h"

namespace kvc::storage {
namespace {

// What a std::map node and a std::string header cost beside the bytes they hold (roughly).
constexpr std::size_t kSlotOverhead = 112;
constexpr std::size_t kEventOverhead = 96;

}  // namespace

const OverlaySlot* Overlay::find(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

void Overlay::put(const KeyValue& kv) {
  auto it = entries_.find(std::string_view(kv.key));
  if (it == entries_.end()) {
    it = entries_.emplace(kv.key, OverlaySlot{}).first;
    bytes_ += kSlotOverhead + kv.key.size();
  } else {
    bytes_ -= it->second.value.size();
  }
  OverlaySlot& s = it->second;
  s.deleted = false;
  s.value = kv.value;
  s.create_revision = kv.create_revision;
  s.mod_revision = kv.mod_revision;
  s.version = kv.version;
  bytes_ += kv.value.size();
}

void Overlay::erase(std::string_view key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    it = entries_.emplace(std::string(key), OverlaySlot{}).first;
    bytes_ += kSlotOverhead + key.size();
  } else {
    bytes_ -= it->second.value.size();
  }
  it->second = OverlaySlot{.deleted = true};
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
