// Checks whether a history of key-value operations is linearizable against kvc's key-value
// model (see history.h). The search is Wing & Gong's, with Lowe's memoization of
// (linearized set, model state) and per-key partitioning (linearizability is local, so each
// key's sub-history is checked on its own). Pure function of its input; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/check/history.h"

namespace kvc::check {

struct CheckOptions {
  // Give up (result kUnknown) when one key's search visits more states than this.
  std::uint64_t max_states_per_key = 50'000'000;
};

enum class Verdict : std::uint8_t { kLinearizable, kNotLinearizable, kGaveUp };

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  std::string key;          // the key whose sub-history failed (or was given up on)
  std::string explanation;  // human-readable: the longest linearizable prefix found and the
                            // operations that could not be placed after it
  std::vector<std::size_t> culprits;  // indexes into the input history of those operations
  std::uint64_t operations = 0;       // operations checked (kFailed ones are dropped)
  std::uint64_t states_explored = 0;
};

CheckResult check_history(const History& history, const CheckOptions& options = {});

// One operation as text, for traces: "c3 cas(k, v7, expect=12) -> ok rev=15 [40,52]".
std::string describe(const Operation& op);

}  // namespace kvc::check
