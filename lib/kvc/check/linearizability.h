// Checks whether a history of key-value operations is linearizable against kvc's key-value
// model (see history.h). The search is Wing & Gong's, with Lowe's memoization of
// (linearized set, model state) and per-key partitioning (linearizability is local, so each
// key's sub-history is checked on its own), plus a cross-key check that write revisions never
// go backwards in real time. Operations whose outcome is unknown are optional: each may take
// effect at any point after its invocation, or never. Multi-key transactions are recorded as
// per-key operations sharing the txn's revision (docs/checker.md, "Transactions"); every key
// starts absent at revision 0. The model and the search
// are described in docs/checker.md. Pure function of its input; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/check/history.h"

namespace kvc::check {

struct CheckOptions {
  // Give up (result kGaveUp) when one key's search visits more states than this.
  std::uint64_t max_states_per_key = 50'000'000;
  // Give up (result kGaveUp) when one key's memo table grows past this many bytes.
  std::uint64_t max_memory_bytes_per_key = std::uint64_t{1} << 30;
  // Also check that a write that completed before another write began got the smaller revision
  // (across keys; revisions are global). Per-key revision order is part of the model anyway.
  bool check_revision_order = true;
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
  std::uint64_t keys = 0;  // distinct keys (sub-histories) checked
};

// "linearizable", "not linearizable", "gave up".
std::string_view verdict_name(Verdict verdict);

CheckResult check_history(const History& history, const CheckOptions& options = {});

// One operation as text, for traces: "c3 cas(k, v7, expect=12) -> ok rev=15 [40,52]".
// Keys and values that are not plain printable ASCII are quoted with C escapes; long ones are
// shortened.
std::string describe(const Operation& op);

}  // namespace kvc::check
