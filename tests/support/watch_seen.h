// What a watch stream delivered, recorded from the client's callback thread and read by the
// test (STYLE.md, section 8: one copy of each helper). Header-only; thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/wire/messages.h"

namespace kvc::test {

struct WatchSeen {
  std::mutex mu;
  bool started = false;  // the member's first answer (the watch is registered)
  std::vector<std::string> keys;
  std::vector<wire::Response> finals;  // done, or an error

  // A stream callback (client::Client::stream) that records into this; keeps the stream open.
  auto recorder() {
    return [this](const wire::Response& r) {
      std::lock_guard<std::mutex> lock(mu);
      started = true;
      for (const wire::Event& e : r.events) keys.push_back(e.kv.key);
      if (r.done || r.code != Code::kOk) finals.push_back(r);
      return true;
    };
  }
  std::vector<std::string> keys_so_far() {
    std::lock_guard<std::mutex> lock(mu);
    return keys;
  }
};

}  // namespace kvc::test
