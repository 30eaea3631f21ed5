#include "kvc/storage/overlay.h"

#include <gtest/gtest.h>

namespace kvc::storage {
namespace {

TEST(OverlayTest, PutsAndTombstonesReplaceEachOther) {
  Overlay o(10, 2);
  EXPECT_TRUE(o.empty());
  EXPECT_EQ(o.find("k"), nullptr);
  o.put({"k", "v1", 11, 11, 1});
  o.advance(11, 2, true);
  ASSERT_NE(o.find("k"), nullptr);
  EXPECT_FALSE(o.find("k")->deleted);
  EXPECT_EQ(o.find("k")->value, "v1");
  o.erase("k");
  o.advance(12, 3, true);
  ASSERT_NE(o.find("k"), nullptr);
  EXPECT_TRUE(o.find("k")->deleted);
  EXPECT_TRUE(o.find("k")->value.empty());
  o.erase("never-put");  // a tombstone for a key only a lower layer has
  EXPECT_TRUE(o.find("never-put")->deleted);
  o.advance(13, 3, false);
  EXPECT_FALSE(o.empty());
  EXPECT_EQ(o.base_index(), 10u);
  EXPECT_EQ(o.last_index(), 13u);
  EXPECT_EQ(o.last_term(), 3u);
  EXPECT_EQ(o.revision(), 12u);
  EXPECT_EQ(o.applied_entries(), 3u);
  EXPECT_EQ(o.entries().size(), 2u);
}

TEST(OverlayTest, BytesFollowWhatIsHeld) {
  Overlay o(0, 0);
  o.put({"key", std::string(1000, 'v'), 1, 1, 1});
  const std::size_t one = o.bytes();
  EXPECT_GE(one, 1003u);
  o.put({"key", std::string(10, 'v'), 1, 2, 2});  // smaller value, same key
  EXPECT_EQ(o.bytes(), one - 990);
  o.erase("key");
  EXPECT_EQ(o.bytes(), one - 1000);
  o.add_event({.revision = 1, .key = "key", .value = std::string(500, 'e')});
  EXPECT_GE(o.bytes(), one - 1000 + 503);
}

// find() asks a filter of the layer's keys before it walks the map; the filter grows with the
// layer (from all its keys) and must never hide a key the layer has: every key put or erased
// is found after every growth, and keys never put are not.
TEST(OverlayTest, EveryKeyIsFoundAsTheLayerGrows) {
  Overlay o(0, 0);
  const auto key = [](int i) { return "key/" + std::to_string(i * 7919 % 100003); };
  std::uint64_t rev = 0;
  for (int i = 0; i < 40000; ++i) {
    ++rev;
    if (i % 5 == 4) {
      o.erase(key(i));
    } else {
      o.put({key(i), "v" + std::to_string(i), rev, rev, 1});
    }
    if ((i & (i + 1)) == 0 || i == 39999) {  // after each power of two, where it grows
      for (int j = 0; j <= i; ++j) {
        const OverlaySlot* s = o.find(key(j));
        ASSERT_NE(s, nullptr) << "key " << key(j) << " lost after " << i + 1 << " keys";
        EXPECT_EQ(s->deleted, j % 5 == 4);
        if (j % 5 != 4) {
          EXPECT_EQ(s->value, "v" + std::to_string(j));
        }
      }
    }
  }
  for (int i = 0; i < 40000; ++i) EXPECT_EQ(o.find("absent/" + std::to_string(i)), nullptr);
  EXPECT_EQ(o.entries().size(), 40000u);
}

TEST(OverlayDeathTest, EventsAndIndexesMustAdvanceInOrder) {
  Overlay o(5, 1);
  o.add_event({.revision = 6, .sequence = 0});
  o.add_event({.revision = 6, .sequence = 1});
  EXPECT_DEATH(o.add_event({.revision = 6, .sequence = 3}), "events out of order");
  EXPECT_DEATH(o.add_event({.revision = 5}), "below the overlay's base");
  EXPECT_DEATH(o.advance(7, 1, false), "check failed");
}

}  // namespace
}  // namespace kvc::storage
