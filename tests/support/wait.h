// Bounded polling for tests: wait_until() checks a condition every few milliseconds until it
// holds or a timeout passes, and says what it was waiting for when it gives up. Every wait in the
// tests goes through it, so none sleeps and hopes and none can hang. No state; thread-safe as far
// as the predicate is.
#pragma once

#include <chrono>
#include <functional>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc::test {

// Calls `done` until it returns true, every `every`, for at most `timeout` (and once more at the
// end, so a condition that came true during the last pause is seen). Ok as soon as it holds;
// otherwise kTimeout with "timed out after N ms waiting for <what>".
Status wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                  std::string_view what,
                  std::chrono::milliseconds every = std::chrono::milliseconds(20));

}  // namespace kvc::test
