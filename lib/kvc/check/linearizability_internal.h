// Internals of the linearizability check (linearizability.h), shared by its two files: the
// per-key model (State, KeyOp and the step rules), the value table, and the per-key search.
// linearizability.cc holds the model, the linear-time passes, the bisection that explains a
// failure and check_history(); linearizability_search.cc holds the backtracking search (Wing &
// Gong with Lowe's memo). Not a public API. No shared state: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvc/check/linearizability.h"

// A named namespace (not an anonymous one): the check's two files share these.
namespace kvc::check::linearizability_internal {

inline constexpr std::uint32_t kAbsent = 0xffffffffu;  // value id of "no value": the key is absent
// The value id of every written value that no completed read returns. A value matters only to
// reads, so such values are interchangeable; one id lets their states (and ops) coincide.
inline constexpr std::uint32_t kUnread = 0xfffffffeu;
inline constexpr std::size_t kShownPrefixOps = 8;  // prefix operations an explanation shows
inline constexpr std::size_t kShownCulprits = 12;  // unplaceable operations it shows
inline constexpr std::size_t kShownBytes = 40;     // bytes of a key or value that describe() shows
// States the search for a failure's first point may spend: this many times the failed search's,
// and at least kExplainMinStates.
inline constexpr std::uint64_t kExplainStatesFactor = 10;
inline constexpr std::uint64_t kExplainMinStates = 100'000;

inline std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finalizer: a cheap, good 64-bit mix
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A string as describe() shows it: bare when plain, else quoted with C escapes; shortened.
std::string shown(const std::string& v);

// What the model knows about one key at a point of a linearization.
struct State {
  // The greatest revision known to have been used on this key so far. When `exact`, it is the
  // mod revision of the present value; otherwise the key's last change came from a write whose
  // revision is unknown (an unknown-outcome write, or a result without revision), so the true
  // mod revision is greater than `floor` (or, absent, the next write's revision must be).
  std::uint64_t floor = 0;
  std::uint32_t value = kAbsent;  // interned value id, kAbsent when the key does not exist
  // Invariant: !exact when value == kAbsent (one representation per state, for the memo).
  bool exact = false;

  bool present() const { return value != kAbsent; }
  std::uint64_t hash() const {
    return mix64(floor ^ (std::uint64_t{value} << 32) ^ (exact ? 0x5bd1e995ull : 0));
  }
  friend bool operator==(const State&, const State&) = default;
};

inline State absent_with_floor(std::uint64_t floor) { return State{floor, kAbsent, false}; }

// One operation of a key's sub-history, with its strings interned.
struct KeyOp {
  std::size_t index = 0;  // into the input history
  OpKind kind = OpKind::kGet;
  bool optional = false;  // outcome unknown: may take effect after invoke, or never
  bool found = false;
  std::uint32_t value = kAbsent;           // kPut, kCas: value id written (kUnread if never read)
  std::uint32_t original_value = kAbsent;  // the value id before unread ones became kUnread
  std::uint32_t read_value = kAbsent;      // kGet found: value id read
  std::uint64_t expect = 0;
  std::uint64_t revision = 0;  // 0: not known
  std::uint64_t invoke = 0;
  std::uint64_t response = kNever;
};

// True when a CAS expecting `expect` may succeed in `s`; binds the mod revision into *bound.
bool cas_may_succeed(const State& s, std::uint64_t expect, std::uint64_t* bound);

// The highest floor (see State) under which `op` can still be linearized; a key's floor
// never decreases along a linearization, so once it passes a remaining op's deadline that op
// can never be placed and the branch is dead. Catching that at once, rather than when the
// op's return blocks the search, is what keeps concurrent writes with known revisions cheap.
std::uint64_t deadline(const KeyOp& op);

// A floor the key has reached once `op` (completed) is linearized: its revisions only grow.
std::uint64_t floor_after(const KeyOp& op);

// Why `op` cannot be placed once the key's floor is `floor` (> deadline(op)).
std::string past_deadline(const KeyOp& op, std::uint64_t floor);

// Applies `op` to `s`. For a completed operation: false when its recorded result is impossible
// in `s` (with the reason in *why when given). For an optional one: the state if it took effect
// (a CAS that succeeded, a delete that found the key); false when it cannot take effect in `s`.
bool step(const KeyOp& op, const State& s, State* out, std::string* why);

// Values of one key interned to small ids, so states compare and hash cheaply.
class ValueTable {
 public:
  std::uint32_t intern(const std::string& v) {
    auto [it, inserted] = ids_.try_emplace(v, static_cast<std::uint32_t>(names_.size()));
    if (inserted) names_.push_back(&it->first);
    return it->second;
  }
  const std::string& name(std::uint32_t id) const { return *names_.at(id); }
  std::size_t size() const { return names_.size(); }

 private:
  std::unordered_map<std::string, std::uint32_t> ids_;
  std::vector<const std::string*> names_;  // node-based map: pointers stay valid
};

struct KeyResult {
  Verdict verdict = Verdict::kLinearizable;
  std::uint64_t states = 0;
  std::string explanation;
  std::vector<std::size_t> culprits;
};

// Runs the search over one key's ops (interning done; reads still to be counted).
KeyResult search_ops(const std::string& key, std::vector<KeyOp> ops, const ValueTable& values,
                     const History& history, const CheckOptions& options, bool explain);

}  // namespace kvc::check::linearizability_internal
