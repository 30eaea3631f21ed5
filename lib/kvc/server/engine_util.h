// Small helpers shared by the files of Engine::Impl (internal to server/).
#pragma once

#include <sys/random.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "kvc/common/status.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/state.h"
#include "kvc/wire/messages.h"

namespace kvc::server {

inline constexpr std::uint64_t kScrubTickMs = 100;
// How long one job that maps the state file in (Engine::Impl::maybe_map_in) goes on taking steps.
inline constexpr std::chrono::milliseconds kMapInJobTime{50};
// Overlay bytes retired by flushes after which an idle member trims its heap (maybe_trim_heap).
inline constexpr std::uint64_t kTrimAfterBytes = 16ull << 20;

inline std::string hex(std::uint64_t id) { return storage::member_id_hex(id); }

inline std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) {
    v = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<std::uint64_t>(::getpid()) << 32);
  }
  return v;
}

inline wire::KeyValue to_wire(const storage::KeyValue& kv, bool keys_only) {
  return {kv.key,
          keys_only ? std::string() : kv.value,
          kv.create_revision,
          kv.mod_revision,
          kv.version,
          kv.lease};
}

// The error a client sees for a Status from the state machine or the Raft core.
inline void set_error(wire::Response& r, const Status& s) {
  r.code = s.code();
  r.message = s.message();
}

// A damaged identity file or state refuses the start; neither can be mended in place, so the
// refusal ends with what to do (kvc-node(1), INTEGRITY): rebuild the member from the cluster.
inline Status with_rebuild_advice(const Status& s) {
  if (s.code() != Code::kCorruption) return s;
  return Status::corruption(s.message() + "; " + std::string(storage::rebuild_advice()));
}

}  // namespace kvc::server
