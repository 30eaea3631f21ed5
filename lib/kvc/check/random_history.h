// Random linearizable histories, for testing and benchmarking the checker: concurrent clients
// run against a simulated atomic store on a logical clock. Each operation takes effect at one
// instant strictly inside its [invoke, response] interval, so the history is linearizable by
// construction; lost responses (outcome unknown) may take effect much later or never, and
// failed operations never take effect. Every write carries a unique value. Not a test of kvc
// itself: it only feeds the checker. Deterministic for a given seed; thread-compatible.
#pragma once

#include <cstdint>

#include "kvc/check/history.h"

namespace kvc::check {

struct RandomHistoryOptions {
  std::uint64_t seed = 1;
  std::uint64_t operations = 1000;  // operations recorded (all outcomes)
  std::uint64_t clients = 10;       // concurrent clients, each with one operation at a time
  std::uint64_t keys = 5;
  double unknown_fraction = 0.03;  // responses lost; half of those ops take effect anyway
  double failed_fraction = 0.01;   // rejected before taking effect
  // Relative weights of the operation kinds.
  double get_weight = 4, put_weight = 3, delete_weight = 1, cas_weight = 2;
  std::uint64_t max_latency = 20;  // ticks from invoke to effect, and from effect to response
  std::uint64_t max_think = 10;    // ticks a client waits between operations
  bool binary_values = false;      // add arbitrary bytes (NUL, invalid UTF-8) to keys and values
};

History random_history(const RandomHistoryOptions& options);

}  // namespace kvc::check
