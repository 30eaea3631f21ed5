// The simulator's replicated state machine: kvc's key-value model (put, delete, compare-and-set
// on a key's mod revision; the revision of a write is the Raft index of its entry), with the
// command encoding the simulated clients propose and a snapshot serialization. Like kvc's LMDB
// state, every stored value carries a checksum (CRC32C over key, value and revision) that is
// verified whenever the value is read: to answer a client, to apply a write over it, or to build
// a snapshot; a mismatch is a kCorruption Status, never a value. damage() is the simulator's
// fault hook. Test tooling; plain values, thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/check/history.h"
#include "kvc/common/status.h"

namespace kvc::sim {

struct KvCommand {
  std::uint64_t op_id = 0;  // unique per simulation; 0 for the liveness probe
  check::OpKind kind = check::OpKind::kPut;
  std::string key;
  std::string value;
  std::uint64_t expect_revision = 0;
};

// "op_id|kind|key|value|expect" (keys and values are simulator-made: no '|').
std::string encode_command(const KvCommand& c);
Result<KvCommand> decode_command(std::string_view data);

struct KvResult {
  bool found = false;
  std::uint64_t revision = 0;
};

class KvStore {
 public:
  struct Item {
    std::string value;
    std::uint64_t mod_revision = 0;
    // Invariant (unless damage() broke it): checksum == item_checksum(key, value, revision).
    std::uint32_t checksum = 0;
  };

  // Applies a write at `index` (its revision). Gets are not applied through the log. The key's
  // current value is read first (as a real store does for the previous revision) and verified:
  // a damaged one fails with kCorruption and changes nothing, applied() included.
  Result<KvResult> apply(const KvCommand& c, std::uint64_t index);
  // The verified item of `key`: nullptr when absent, kCorruption when its checksum fails.
  Result<const Item*> get(const std::string& key) const;
  // Every value verified; the first damaged key in the error.
  Status verify() const;

  std::uint64_t applied() const { return applied_; }
  void set_applied(std::uint64_t index) { applied_ = index; }
  std::vector<std::string> keys() const;

  // Verifies every value on the way: a damaged state never leaves in a snapshot.
  Result<std::string> serialize() const;
  // Each line's checksum is verified too.
  static Result<KvStore> deserialize(std::string_view data);

  // Fault injection: changes one byte of `key`'s value without fixing its checksum (as a
  // flipped bit on disk would). False when the key is absent.
  bool damage(const std::string& key);

 private:
  std::map<std::string, Item> items_;
  std::uint64_t applied_ = 0;
};

}  // namespace kvc::sim
