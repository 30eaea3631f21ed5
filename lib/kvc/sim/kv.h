// The simulator's replicated state machine: kvc's key-value model (put, delete, compare-and-set
// on a key's mod revision; the revision of a write is the Raft index of its entry), with the
// command encoding the simulated clients propose and a snapshot serialization. Test tooling;
// plain values, thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

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
  };

  // Applies a write at `index` (its revision). Gets are not applied through the log.
  KvResult apply(const KvCommand& c, std::uint64_t index);
  const Item* find(const std::string& key) const;

  std::uint64_t applied() const { return applied_; }
  void set_applied(std::uint64_t index) { applied_ = index; }

  std::string serialize() const;
  static Result<KvStore> deserialize(std::string_view data);

 private:
  std::map<std::string, Item> items_;
  std::uint64_t applied_ = 0;
};

}  // namespace kvc::sim
