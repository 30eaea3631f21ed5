#include "kvc/common/sha256.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace kvc::sha256 {
namespace {

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

TEST(Sha256Test, MatchesFips180Vectors) {
  const struct {
    const char* name;
    std::string data;
    const char* want;
  } cases[] = {
      {"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"two blocks", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"896 bits",
       "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
       "mnopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {"million a", repeat('a', 1000000),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(to_hex(hash(c.data)), c.want);
  }
}

TEST(Sha256Test, IncrementalEqualsWholeAtEverySplit) {
  std::mt19937 rng(301);
  std::string data(300, '\0');
  for (auto& ch : data) ch = static_cast<char>(rng());
  const Digest whole = hash(data);
  for (std::size_t split = 0; split <= data.size(); ++split) {
    Hasher h;
    h.update(data.substr(0, split));
    h.update(data.substr(split));
    EXPECT_EQ(h.finish(), whole) << "split " << split;
  }
}

TEST(Sha256Test, HmacMatchesRfc4231Vectors) {
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4.push_back(static_cast<char>(i));
  const struct {
    const char* name;
    std::string key, data;
    const char* want;
  } cases[] = {
      {"case 1", repeat('\x0b', 20), "Hi There",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"case 2", "Jefe", "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"case 3", repeat('\xaa', 20), repeat('\xdd', 50),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"case 4", key4, repeat('\xcd', 50),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"case 6", repeat('\xaa', 131), "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"case 7", repeat('\xaa', 131),
       "This is a test using a larger than block-size key and a larger than block-size data. "
       "The key needs to be hashed before being used by the HMAC algorithm.",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(to_hex(hmac(c.key, c.data)), c.want);
  }
  // Case 5 is truncated to 128 bits.
  EXPECT_EQ(to_hex(hmac(repeat('\x0c', 20), "Test With Truncation")).substr(0, 32),
            "a3b6167473100ee06e0c796c2955552b");
}

TEST(Sha256Test, ConstantTimeEqualComparesEveryByte) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("xbc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal(std::string(32, '\0'), std::string(31, '\0') + '\x01'));
}

}  // namespace
}  // namespace kvc::sha256
