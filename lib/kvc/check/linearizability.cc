// The linearizability check: per key, exact linear-time passes for the common anomalies, then
// Wing & Gong's backtracking over a list of call and return events with Lowe's memo table of
// (linearized set, model state), operations of unknown outcome treated as optional, and pruning
// by revision deadlines, stranded reads and forced read-only steps; on failure, a bisection for
// the first instant the history goes wrong, to explain it. docs/checker.md describes the model
// and why each pruning rule keeps the check sound. No shared state: thread-safe.
#include "kvc/check/linearizability.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "kvc/common/check.h"
#include "kvc/common/status.h"

namespace kvc::check {
namespace {

constexpr std::uint32_t kAbsent = 0xffffffffu;  // value id of "no value": the key is absent
// The value id of every written value that no completed read returns. A value matters only to
// reads, so such values are interchangeable; one id lets their states (and ops) coincide.
constexpr std::uint32_t kUnread = 0xfffffffeu;
constexpr std::size_t kShownPrefixOps = 8;  // prefix operations an explanation shows
constexpr std::size_t kShownCulprits = 12;  // unplaceable operations it shows
constexpr std::size_t kShownBytes = 40;     // bytes of a key or value that describe() shows
// States the search for a failure's first point may spend: this many times the failed search's,
// and at least kExplainMinStates.
constexpr std::uint64_t kExplainStatesFactor = 10;
constexpr std::uint64_t kExplainMinStates = 100'000;

std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finalizer: a cheap, good 64-bit mix
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A string as describe() shows it: bare when plain, else quoted with C escapes; shortened.
std::string shown(const std::string& v) {
  const bool plain =
      !v.empty() && v.size() <= kShownBytes && std::all_of(v.begin(), v.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != ',' && c != '(' && c != ')';
      });
  if (plain) return v;
  std::string out = "\"";
  const std::size_t n = std::min(v.size(), kShownBytes);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        }
    }
  }
  out += "\"";
  if (v.size() > n) out += "...(" + std::to_string(v.size()) + " bytes)";
  return out;
}

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

State absent_with_floor(std::uint64_t floor) { return State{floor, kAbsent, false}; }

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
bool cas_may_succeed(const State& s, std::uint64_t expect, std::uint64_t* bound) {
  if (expect == 0) {
    *bound = s.floor;
    return !s.present();
  }
  if (!s.present()) return false;
  *bound = expect;
  return s.exact ? s.floor == expect : expect > s.floor;
}

// The highest floor (see State) under which `op` can still be linearized; a key's floor
// never decreases along a linearization, so once it passes a remaining op's deadline that op
// can never be placed and the branch is dead. Catching that at once, rather than when the
// op's return blocks the search, is what keeps concurrent writes with known revisions cheap.
std::uint64_t deadline(const KeyOp& op) {
  std::uint64_t d = kNever;
  auto below = [&](std::uint64_t rev) {
    if (rev != 0) d = std::min(d, rev - 1);
  };
  switch (op.kind) {
    case OpKind::kPut:
      below(op.revision);
      break;
    case OpKind::kGet:
      if (op.found && op.revision != 0) d = op.revision;
      break;
    case OpKind::kDelete:
      if (op.found) below(op.revision);
      break;
    case OpKind::kCas:
      if (op.found) {
        below(op.revision);
        if (op.expect != 0) d = std::min(d, op.expect);
      }
      break;
  }
  return d;
}

// A floor the key has reached once `op` (completed) is linearized: its revisions only grow.
std::uint64_t floor_after(const KeyOp& op) {
  switch (op.kind) {
    case OpKind::kPut:
      return op.revision;
    case OpKind::kGet:
      return op.found ? op.revision : 0;
    case OpKind::kDelete:
      return op.found ? op.revision : 0;
    case OpKind::kCas:
      if (!op.found) return 0;
      return op.revision != 0 ? op.revision : op.expect;
  }
  return 0;
}

// Why `op` cannot be placed once the key's floor is `floor` (> deadline(op)).
std::string past_deadline(const KeyOp& op, std::uint64_t floor) {
  const std::string at = "the key is already at revision " + std::to_string(floor);
  if (op.kind == OpKind::kGet) {
    return "it returned revision " + std::to_string(op.revision) + ", but " + at +
           " and revisions only grow";
  }
  if (op.kind == OpKind::kCas && op.expect != 0 && op.expect < floor) {
    return "it expected revision " + std::to_string(op.expect) + ", but " + at +
           " and revisions only grow";
  }
  return "its revision " + std::to_string(op.revision) + " is not above the key's " +
         std::to_string(floor);
}

// Applies `op` to `s`. For a completed operation: false when its recorded result is impossible
// in `s` (with the reason in *why when given). For an optional one: the state if it took effect
// (a CAS that succeeded, a delete that found the key); false when it cannot take effect in `s`.
bool step(const KeyOp& op, const State& s, State* out, std::string* why) {
  auto fail = [&](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return false;
  };
  auto rev_after = [&](std::uint64_t bound, std::uint64_t rev) -> bool {
    if (rev != 0 && rev <= bound) {
      return fail("its revision " + std::to_string(rev) + " is not above the key's revision " +
                  std::to_string(bound));
    }
    *out = State{rev != 0 ? rev : bound, op.value, rev != 0};
    return true;
  };
  switch (op.kind) {
    case OpKind::kPut:
      if (op.optional) {
        *out = State{s.floor, op.value, false};
        return true;
      }
      return rev_after(s.floor, op.revision);
    case OpKind::kGet:
      KVC_CHECK(!op.optional, "unknown-outcome reads are dropped before the search");
      if (!op.found) {
        if (s.present()) return fail("it found nothing but the key exists");
        *out = s;
        return true;
      }
      if (!s.present()) return fail("it read a value but the key does not exist");
      if (s.value != op.read_value) return fail("it read another value than the key holds");
      *out = s;
      if (op.revision == 0) return true;
      if (s.exact) {
        if (op.revision != s.floor) {
          return fail("it read revision " + std::to_string(op.revision) + " but the value has " +
                      std::to_string(s.floor));
        }
        return true;
      }
      if (op.revision <= s.floor) {
        return fail("it read revision " + std::to_string(op.revision) +
                    " but the value was written after revision " + std::to_string(s.floor));
      }
      *out = State{op.revision, s.value, true};  // the read tells the unknown revision
      return true;
    case OpKind::kDelete:
      if (op.optional) {
        if (!s.present()) return false;
        *out = absent_with_floor(s.floor);
        return true;
      }
      if (!op.found) {
        if (s.present()) return fail("it found nothing but the key exists");
        *out = s;
        return true;
      }
      if (!s.present()) return fail("it deleted a key that does not exist");
      if (op.revision != 0 && op.revision <= s.floor) {
        return fail("its revision " + std::to_string(op.revision) +
                    " is not above the key's revision " + std::to_string(s.floor));
      }
      *out = absent_with_floor(op.revision != 0 ? op.revision : s.floor);
      return true;
    case OpKind::kCas: {
      std::uint64_t bound = 0;
      const bool may_succeed = cas_may_succeed(s, op.expect, &bound);
      if (op.optional) {
        if (!may_succeed) return false;
        *out = State{bound, op.value, false};
        return true;
      }
      if (op.found) {
        if (!may_succeed) {
          if (!s.present()) return fail("it succeeded but the key does not exist");
          if (op.expect == 0) return fail("it expected no key and succeeded but the key exists");
          return fail("it succeeded but the key's revision is " +
                      (s.exact ? std::to_string(s.floor) : "above " + std::to_string(s.floor)));
        }
        return rev_after(bound, op.revision);
      }
      // A failed compare: possible unless the compare certainly matches. A present key whose
      // revision is unknown might still hold `expect`; that is left open (sound, not complete).
      const bool certainly_matches =
          op.expect == 0 ? !s.present() : (s.present() && s.exact && s.floor == op.expect);
      if (certainly_matches) return fail("its compare failed but the key matched");
      *out = s;
      return true;
    }
  }
  return fail("unknown operation kind");
}

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

// A set of small integers that knows its "interesting" window of words: [lo, hi), where every
// word below lo is all ones and every word from hi on is zero. Ops are numbered in invocation
// order and linearized roughly in that order, so the window stays short however long the
// history is; the memo stores only the window.
class Bits {
 public:
  explicit Bits(std::size_t n) : words_((n + 63) / 64, 0) {}
  void set(std::size_t i) {
    const std::size_t w = i / 64;
    words_[w] |= std::uint64_t{1} << (i % 64);
    hi_ = std::max(hi_, w + 1);
    while (lo_ < words_.size() && words_[lo_] == ~std::uint64_t{0}) ++lo_;
  }
  void clear(std::size_t i) {
    const std::size_t w = i / 64;
    words_[w] &= ~(std::uint64_t{1} << (i % 64));
    lo_ = std::min(lo_, w);
    while (hi_ > 0 && words_[hi_ - 1] == 0) --hi_;
  }
  std::size_t lo() const { return std::min(lo_, hi_); }
  std::size_t hi() const { return hi_; }
  std::uint64_t word(std::size_t w) const { return w < words_.size() ? words_[w] : 0; }
  const std::uint64_t* data() const { return words_.data(); }

 private:
  std::vector<std::uint64_t> words_;
  // Invariant: words_[w] is all ones for w < lo_, zero for w >= hi_.
  std::size_t lo_ = 0, hi_ = 0;
};

// The memo table: which (required ops linearized, optional ops used, state) were visited.
// A visit is redundant when the same required set and state were seen with a subset of the
// optional ops used: every continuation of the later visit is open to the earlier one, which was
// explored to the end (or is being explored, as an ancestor on the current path).
class Memo {
 public:
  // True when the visit is new (and records it).
  bool insert(const Bits& r, std::uint64_t r_hash, const Bits& u, const State& s) {
    const std::uint64_t h = mix64(r_hash ^ s.hash());
    auto [it, inserted] = heads_.try_emplace(h, kNone);
    const auto r_lo = static_cast<std::uint32_t>(r.lo());
    const auto r_len = static_cast<std::uint32_t>(r.hi() - r.lo());
    std::size_t variants = 0;
    for (std::size_t e = it->second; e != kNone; e = entries_[e].next) {
      const Entry& entry = entries_[e];
      if (!(entry.state == s) || entry.r_lo != r_lo || entry.r_len != r_len) continue;
      const std::uint64_t* stored = words_.data() + entry.offset;
      if (!std::equal(stored, stored + r_len, r.data() + r_lo)) continue;
      ++variants;
      const std::uint64_t* used = stored + r_len;
      bool subset = true;
      for (std::uint32_t w = 0; w < entry.u_len && subset; ++w) {
        subset = (used[w] & ~u.word(w)) == 0;
      }
      if (subset) return false;
    }
    // Past kMaxVariants sets of optional ops for one (required set, state), new ones are
    // explored but not recorded: the memo only saves work, and long chains would cost more.
    if (variants >= kMaxVariants) return true;
    const std::size_t offset = words_.size();
    words_.insert(words_.end(), r.data() + r_lo, r.data() + r_lo + r_len);
    words_.insert(words_.end(), u.data(), u.data() + u.hi());
    entries_.push_back(
        Entry{offset, s, it->second, r_lo, r_len, static_cast<std::uint32_t>(u.hi())});
    it->second = entries_.size() - 1;
    return true;
  }

  std::uint64_t bytes() const {
    return words_.capacity() * sizeof(std::uint64_t) + entries_.capacity() * sizeof(Entry) +
           heads_.size() * (sizeof(std::uint64_t) * 4);
  }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  static constexpr std::size_t kMaxVariants = 16;
  struct Entry {
    std::size_t offset;  // into words_: r_len words of the required set's window, then u_len
    State state;
    std::size_t next;  // next entry with the same hash, or kNone
    std::uint32_t r_lo, r_len, u_len;
  };
  std::unordered_map<std::uint64_t, std::size_t> heads_;
  std::vector<Entry> entries_;
  std::vector<std::uint64_t> words_;
};

// Minimum over a fixed array under point updates, in O(log n).
class MinTree {
 public:
  void init(std::size_t n) {
    size_ = 1;
    while (size_ < n) size_ *= 2;
    tree_.assign(2 * size_, kNever);
  }
  void set(std::size_t i, std::uint64_t v) {
    std::size_t n = size_ + i;
    tree_[n] = v;
    for (n /= 2; n >= 1; n /= 2) tree_[n] = std::min(tree_[2 * n], tree_[2 * n + 1]);
  }
  std::uint64_t min() const { return tree_[1]; }

 private:
  std::size_t size_ = 1;
  std::vector<std::uint64_t> tree_;
};

struct KeyResult {
  Verdict verdict = Verdict::kLinearizable;
  std::uint64_t states = 0;
  std::string explanation;
  std::vector<std::size_t> culprits;
};

// The search over one key's sub-history.
//
// Required (completed) operations live in a doubly linked list of call and return events in time
// order (a call before a return at equal times: equal times count as overlapping). The ops that
// may be linearized next are those whose call comes before the first return in the list.
// Optional operations have no return; they live in a second list in invocation order, and may be
// linearized next when invoked no later than the first return. Linearizing an op unlinks its
// events; backtracking links them back (in reverse order, so the links are restored exactly).
class KeySearch {
 public:
  KeySearch(const std::string& key, std::vector<KeyOp> ops, const ValueTable& values,
            const History& history, const CheckOptions& options)
      : key_(key), values_(values), history_(history), options_(options) {
    for (KeyOp& op : ops) (op.optional ? opt_ : req_).push_back(op);
    // Number ops in invocation order (see Bits).
    std::stable_sort(req_.begin(), req_.end(),
                     [](const KeyOp& a, const KeyOp& b) { return a.invoke < b.invoke; });
    build_lists();
    build_classes();
    deadlines_.init(req_.size());
    for (std::size_t i = 0; i < req_.size(); ++i) deadlines_.set(i, deadline(req_[i]));
    writers_left_.assign(values.size(), 0);
    readers_left_.assign(values.size(), 0);
    for (const std::vector<KeyOp>* list : {&req_, &opt_}) {
      for (const KeyOp& op : *list) count(op, +1);
    }
  }

  // Explanations (and culprits) are built only when `explain` is set.
  KeyResult run(bool explain) {
    KeyResult result;
    const std::size_t nr = req_.size();
    const std::size_t no = opt_.size();
    Bits r(nr), u(no);
    std::uint64_t r_hash = 0;
    Memo memo;
    State s;  // absent, revision 0
    std::size_t remaining = nr;
    std::vector<Frame> frames;
    frames.reserve(nr + 16);

    bool in_optional = false;  // which list the cursor walks
    bool fresh = true;         // the cursor just arrived at a node: look for a forced step
    std::size_t cur = next_[head_];
    std::uint64_t limit = 0;  // while in_optional: time of the first remaining return
    State next_state;

    // Linearizes completed op `op` next if it fits and leads to a state not seen before.
    auto push_required = [&](std::size_t op, bool forced) {
      if (!step(req_[op], s, &next_state, nullptr)) return false;
      deadlines_.set(op, kNever);
      count(req_[op], -1);
      r.set(op);
      r_hash ^= zobrist(op);
      const bool doomed = next_state.floor > deadlines_.min() || strands_a_read(s, next_state);
      // A doomed step still extends a linearizable prefix, which explanations report.
      if (doomed) note_doomed(frames, nr - remaining + 1, Step{op, false});
      if (!doomed && memo.insert(r, r_hash, u, next_state)) {
        ++result.states;
        frames.push_back(Frame{op, false, forced, s, 0});
        unlink(2 * op);
        unlink(2 * op + 1);
        --remaining;
        s = next_state;
        note_depth(frames, nr - remaining);
        in_optional = false;
        fresh = true;
        cur = next_[head_];
        return true;
      }
      r.clear(op);
      r_hash ^= zobrist(op);
      count(req_[op], +1);
      deadlines_.set(op, deadline(req_[op]));
      return false;
    };

    while (true) {
      if (remaining == 0) {
        result.verdict = Verdict::kLinearizable;
        return result;
      }
      if (result.states > options_.max_states_per_key ||
          (result.states % 4096 == 0 && memo.bytes() > options_.max_memory_bytes_per_key)) {
        result.verdict = Verdict::kGaveUp;
        result.explanation = "key " + shown(key_) + ": gave up after " +
                             std::to_string(result.states) + " states (" +
                             std::to_string(memo.bytes() >> 20) + " MiB of memo); " +
                             std::to_string(nr) + " completed and " + std::to_string(no) +
                             " unknown-outcome operations";
        return result;
      }
      bool backtrack = false;
      if (fresh) {
        fresh = false;
        // Partial-order reduction: a completed op that never changes the state (a read, a
        // failed compare, a delete that finds nothing) and fits here unchanged can be moved to
        // the front of any linearization from here (a read that would bind an unknown revision
        // later could not fit later either: the floor only grows), so it goes next and the
        // node has no other children. A write that happens to leave this state as it is (an
        // unread value over an unread value) is not such an op: elsewhere it changes things.
        std::size_t forced = kNoOp;
        for (std::size_t n = next_[head_]; n % 2 == 0; n = next_[n]) {
          KVC_CHECK(n != head_, "a remaining operation's return must still be in the list");
          const KeyOp& op = req_[n / 2];
          const bool read_only = op.kind == OpKind::kGet || (op.kind != OpKind::kPut && !op.found);
          if (read_only && step(op, s, &next_state, nullptr) && next_state == s) {
            forced = n / 2;
            break;
          }
        }
        if (forced != kNoOp) {
          if (push_required(forced, true)) continue;
          backtrack = true;  // seen before: this node fails as that one did
        }
      }
      if (!backtrack && !in_optional) {
        KVC_CHECK(cur != head_, "a remaining operation's return must still be in the list");
        const std::size_t op = cur / 2;
        if (cur % 2 == 1) {  // the first return: no required call after it may go next
          limit = req_[op].response;
          in_optional = true;
          cur = onext_[ohead_];
          continue;
        }
        if (push_required(op, false)) continue;
        cur = next_[cur];
        continue;
      }
      if (!backtrack) {  // the optional list
        if (cur == ohead_ || opt_[cur].invoke > limit) {
          backtrack = true;
        } else {
          const KeyOp& op = opt_[cur];
          // An optional put straight after another optional op: the state is the same as with
          // the put alone (or has a lower floor), a sibling the search tries anyway.
          const bool after_optional = !frames.empty() && frames.back().optional;
          const std::size_t cls = class_of_[cur];
          if (!(after_optional && op.kind == OpKind::kPut) &&
              members_[cls][class_used_[cls]] == cur && step(op, s, &next_state, nullptr) &&
              !(next_state == s)) {
            count(op, -1);
            u.set(cur);
            const bool doomed =
                next_state.floor > deadlines_.min() || strands_a_read(s, next_state);
            if (doomed) note_doomed(frames, nr - remaining, Step{cur, true});
            if (!doomed && memo.insert(r, r_hash, u, next_state)) {
              ++result.states;
              frames.push_back(Frame{cur, true, false, s, limit});
              ounlink(cur);
              ++class_used_[cls];
              s = next_state;
              note_depth(frames, nr - remaining);
              in_optional = false;
              fresh = true;
              cur = next_[head_];
              continue;
            }
            u.clear(cur);
            count(op, +1);
          }
          cur = onext_[cur];
          continue;
        }
      }
      // Backtrack: undo the last step and try the next sibling; a forced step has none.
      bool resumed = false;
      while (!frames.empty() && !resumed) {
        const Frame f = frames.back();
        frames.pop_back();
        common_ = std::min(common_, frames.size());
        s = f.before;
        if (f.optional) {
          orelink(f.op);
          u.clear(f.op);
          count(opt_[f.op], +1);
          --class_used_[class_of_[f.op]];
          in_optional = true;
          limit = f.limit;
          cur = onext_[f.op];
        } else {
          relink(2 * f.op + 1);
          relink(2 * f.op);
          r.clear(f.op);
          r_hash ^= zobrist(f.op);
          deadlines_.set(f.op, deadline(req_[f.op]));
          count(req_[f.op], +1);
          ++remaining;
          in_optional = false;
          cur = next_[2 * f.op];
        }
        resumed = !f.forced;
      }
      if (!resumed) break;
    }
    result.verdict = Verdict::kNotLinearizable;
    if (explain) this->explain(&result);
    return result;
  }

 private:
  struct Step {
    std::size_t op;
    bool optional;
  };
  struct Frame {
    std::size_t op;  // index into req_ or opt_
    bool optional;
    bool forced;  // taken without branching (see run)
    State before;
    std::uint64_t limit;  // optional frames: the cursor's limit when the op was chosen
  };

  static std::uint64_t zobrist(std::size_t op) { return mix64(op * 0x2545f4914f6cdd1dull + 1); }

  void build_lists() {
    const std::size_t nr = req_.size();
    // Required events: node 2i is op i's call, 2i+1 its return; head_ is the sentinel.
    std::vector<std::size_t> order(2 * nr);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto time_of = [&](std::size_t n) {
      return n % 2 == 0 ? req_[n / 2].invoke : req_[n / 2].response;
    };
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      const auto ka = std::make_tuple(time_of(a), a % 2, a / 2);
      const auto kb = std::make_tuple(time_of(b), b % 2, b / 2);
      return ka < kb;
    });
    head_ = 2 * nr;
    next_.assign(2 * nr + 1, head_);
    prev_.assign(2 * nr + 1, head_);
    std::size_t last = head_;
    for (std::size_t n : order) {
      next_[last] = n;
      prev_[n] = last;
      last = n;
    }
    next_[last] = head_;
    prev_[head_] = last;

    std::stable_sort(opt_.begin(), opt_.end(),
                     [](const KeyOp& a, const KeyOp& b) { return a.invoke < b.invoke; });
    const std::size_t no = opt_.size();
    ohead_ = no;
    onext_.assign(no + 1, ohead_);
    oprev_.assign(no + 1, ohead_);
    last = ohead_;
    for (std::size_t i = 0; i < no; ++i) {
      onext_[last] = i;
      oprev_[i] = last;
      last = i;
    }
    onext_[last] = ohead_;
    oprev_[ohead_] = last;
  }

  // Optional ops with the same kind, value id and expectation have the same effect, and once
  // one is invocable so are those invoked before it: using them in invocation order loses no
  // linearization, so only the first unused member of a class is ever tried.
  void build_classes() {
    std::map<std::tuple<OpKind, std::uint32_t, std::uint64_t>, std::size_t> ids;
    class_of_.resize(opt_.size());
    for (std::size_t i = 0; i < opt_.size(); ++i) {
      const KeyOp& op = opt_[i];
      const auto [it, inserted] = ids.try_emplace({op.kind, op.value, op.expect}, members_.size());
      if (inserted) members_.emplace_back();
      class_of_[i] = it->second;
      members_[it->second].push_back(i);
    }
    for (auto& m : members_) m.push_back(kNoOp);  // so members_[c][used] is always valid
    class_used_.assign(members_.size(), 0);
  }

  // Tracks, per value, the writes of it not yet linearized and the completed reads of it not
  // yet linearized: delta -1 when `op` is linearized, +1 when that is undone.
  void count(const KeyOp& op, int delta) {
    const bool writes =
        op.kind == OpKind::kPut || (op.kind == OpKind::kCas && (op.optional || op.found));
    if (writes && op.value < writers_left_.size()) writers_left_[op.value] += delta;
    if (op.kind == OpKind::kGet && op.found) readers_left_[op.read_value] += delta;
  }

  // True when the step from `before` to `after` overwrote a value that a remaining read
  // returns and that no remaining write can write again: that read can never be placed.
  bool strands_a_read(const State& before, const State& after) const {
    const std::uint32_t v = before.value;
    return v != after.value && v < writers_left_.size() && writers_left_[v] == 0 &&
           readers_left_[v] > 0;
  }

  void unlink(std::size_t n) {
    next_[prev_[n]] = next_[n];
    prev_[next_[n]] = prev_[n];
  }
  void relink(std::size_t n) {
    next_[prev_[n]] = n;
    prev_[next_[n]] = n;
  }
  void ounlink(std::size_t n) {
    onext_[oprev_[n]] = onext_[n];
    oprev_[onext_[n]] = oprev_[n];
  }
  void orelink(std::size_t n) {
    onext_[oprev_[n]] = n;
    oprev_[onext_[n]] = n;
  }

  // Keeps best_ equal to the path that linearized the most completed ops. Amortized O(1) per
  // step: only the part of the path above common_ (the prefix shared with best_) is copied.
  // Keeps best_ equal to the deepest path: the most completed ops linearized, then the most
  // steps. Amortized O(1) per step: only the part of the path above common_ (the prefix it
  // shares with best_) is copied.
  void note_depth(const std::vector<Frame>& frames, std::size_t depth) {
    if (std::make_pair(depth, frames.size()) <= std::make_pair(best_depth_, best_.size())) return;
    best_depth_ = depth;
    best_.resize(common_);
    for (std::size_t i = common_; i < frames.size(); ++i) {
      best_.push_back(Step{frames[i].op, frames[i].optional});
    }
    common_ = frames.size();
  }

  // Like note_depth, for the path plus one last step that is linearizable but that the search
  // does not follow because it makes some remaining op impossible.
  void note_doomed(const std::vector<Frame>& frames, std::size_t depth, Step last) {
    if (std::make_pair(depth, frames.size() + 1) <= std::make_pair(best_depth_, best_.size())) {
      return;
    }
    best_depth_ = depth;
    best_.resize(common_);
    for (std::size_t i = common_; i < frames.size(); ++i) {
      best_.push_back(Step{frames[i].op, frames[i].optional});
    }
    common_ = frames.size();
    best_.push_back(last);
  }

  const KeyOp& op_of(std::size_t op, bool optional) const { return optional ? opt_[op] : req_[op]; }

  std::string describe_state(const State& s) const {
    if (!s.present()) {
      return "absent (last revision " + std::to_string(s.floor) + (s.exact ? ")" : " or later)");
    }
    return (s.value == kUnread ? "a value no read returned"
                               : "value " + shown(values_.name(s.value))) +
           (s.exact ? " at revision " + std::to_string(s.floor)
                    : " at an unknown revision above " + std::to_string(s.floor));
  }

  // Why `op` can never be placed after a path that ended in state `s`, with `used` telling
  // which optional ops that path used; empty when it still might be.
  std::string never_placeable(const KeyOp& op, const State& s, const std::vector<bool>& done,
                              const std::vector<bool>& used) const {
    const std::uint64_t d = deadline(op);
    if (s.floor > d) return past_deadline(op, s.floor);
    if (op.kind != OpKind::kGet || !op.found || op.read_value == s.value) return "";
    auto writes_it = [&](const KeyOp& w) {
      return (w.kind == OpKind::kPut || w.kind == OpKind::kCas) &&
             w.original_value == op.read_value && (w.optional || w.kind == OpKind::kPut || w.found);
    };
    for (std::size_t i = 0; i < req_.size(); ++i) {
      if (!done[i] && writes_it(req_[i])) return "";
    }
    for (std::size_t i = 0; i < opt_.size(); ++i) {
      if (!used[i] && writes_it(opt_[i])) return "";
    }
    return "the value it read was overwritten and no remaining write writes it again";
  }

  void explain(KeyResult* result) const {
    // Replay the deepest path to its state; then report the ops that can never be placed after
    // it or, if there are none, those that could go next there and why each cannot.
    State s;
    std::vector<bool> done(req_.size(), false), used(opt_.size(), false);
    for (const Step& st : best_) {
      State n;
      KeyOp shown_op = op_of(st.op, st.optional);
      shown_op.value = shown_op.original_value;  // the replay shows the real values
      const bool ok = step(shown_op, s, &n, nullptr);
      KVC_CHECK(ok, "the deepest path must replay");
      s = n;
      (st.optional ? used : done)[st.op] = true;
    }
    std::vector<std::pair<std::size_t, std::string>> culprits;  // req_ index, reason
    for (std::size_t i = 0; i < req_.size(); ++i) {
      if (done[i]) continue;
      std::string why = never_placeable(req_[i], s, done, used);
      if (!why.empty()) culprits.emplace_back(i, std::move(why));
    }
    const bool stuck = culprits.empty();
    if (stuck) {
      std::uint64_t first_return = kNever;
      for (std::size_t i = 0; i < req_.size(); ++i) {
        if (!done[i]) first_return = std::min(first_return, req_[i].response);
      }
      for (std::size_t i = 0; i < req_.size(); ++i) {
        if (done[i] || req_[i].invoke > first_return) continue;
        std::string why;
        State n;
        if (step(req_[i], s, &n, &why)) {
          why = "fits here, but then the remaining operations cannot all be placed";
        }
        culprits.emplace_back(i, std::move(why));
      }
    }
    std::string out = "The longest linearizable prefix places " + std::to_string(best_depth_) +
                      " of " + std::to_string(req_.size()) + " completed operations";
    if (!opt_.empty()) {
      out += " (" + std::to_string(opt_.size()) + " more may or may not have taken effect)";
    }
    out += "; after it the key holds " + describe_state(s) + ".\n";
    if (!best_.empty()) {
      out += "  prefix ends:\n";
      const std::size_t from = best_.size() > kShownPrefixOps ? best_.size() - kShownPrefixOps : 0;
      if (from > 0) out += "    ... " + std::to_string(from) + " earlier\n";
      for (std::size_t i = from; i < best_.size(); ++i) {
        const KeyOp& op = op_of(best_[i].op, best_[i].optional);
        out += "    " + describe(history_[op.index]) + (op.optional ? " (took effect)" : "") + "\n";
      }
    }
    out +=
        stuck ? "  none of these can be placed next:\n" : "  after it these can never be placed:\n";
    for (std::size_t k = 0; k < culprits.size(); ++k) {
      const KeyOp& op = req_[culprits[k].first];
      result->culprits.push_back(op.index);
      if (k < kShownCulprits) {
        out += "    " + describe(history_[op.index]) + ": " + culprits[k].second + "\n";
      }
    }
    if (culprits.size() > kShownCulprits) {
      out += "    ... " + std::to_string(culprits.size() - kShownCulprits) + " more\n";
    }
    std::sort(result->culprits.begin(), result->culprits.end());
    result->explanation = std::move(out);
  }

  const std::string& key_;
  const ValueTable& values_;
  const History& history_;
  const CheckOptions& options_;
  std::vector<KeyOp> req_, opt_;
  std::vector<std::size_t> next_, prev_, onext_, oprev_;
  std::size_t head_ = 0, ohead_ = 0;
  static constexpr std::size_t kNoOp = static_cast<std::size_t>(-1);
  MinTree deadlines_;  // remaining required ops' deadlines; kNever for linearized ones
  // Invariant: per value id, the writes of it (resp. completed reads returning it) that are not
  // linearized on the current path. kUnread and kAbsent are not counted.
  std::vector<std::int64_t> writers_left_, readers_left_;
  std::vector<std::size_t> class_of_;              // optional op -> its class
  std::vector<std::vector<std::size_t>> members_;  // class -> its ops in list order, then kNoOp
  // Invariant: exactly the first class_used_[c] members of class c are linearized.
  std::vector<std::size_t> class_used_;
  std::vector<Step> best_;
  std::size_t best_depth_ = 0;
  // Invariant: best_[0, common_) equals the current path's first common_ steps.
  std::size_t common_ = 0;
};

// Per key: once a completed op left the key at revision f, every op invoked after it finished
// needs the key at f or later. A cheap, exact first pass for most stale reads and writes;
// returns a non-ok Status (and fills *result) when it finds one.
Status check_key_revision_order(const std::string& key, const std::vector<KeyOp>& ops,
                                const History& history, CheckResult* result) {
  std::vector<const KeyOp*> by_response, by_invoke;
  for (const KeyOp& op : ops) {
    if (op.optional) continue;
    if (floor_after(op) != 0) by_response.push_back(&op);
    if (deadline(op) != kNever) by_invoke.push_back(&op);
  }
  std::sort(by_response.begin(), by_response.end(),
            [](const KeyOp* a, const KeyOp* b) { return a->response < b->response; });
  std::sort(by_invoke.begin(), by_invoke.end(),
            [](const KeyOp* a, const KeyOp* b) { return a->invoke < b->invoke; });
  std::size_t done = 0;
  const KeyOp* highest = nullptr;
  for (const KeyOp* b : by_invoke) {
    while (done < by_response.size() && by_response[done]->response < b->invoke) {
      const KeyOp* a = by_response[done++];
      if (highest == nullptr || floor_after(*a) > floor_after(*highest)) highest = a;
    }
    if (highest == nullptr || floor_after(*highest) <= deadline(*b)) continue;
    result->verdict = Verdict::kNotLinearizable;
    result->key = key;
    result->culprits = {std::min(highest->index, b->index), std::max(highest->index, b->index)};
    result->explanation = "key " + shown(key) + ": not linearizable: an operation began after " +
                          "another had finished, yet needs an older revision.\n    " +
                          describe(history[highest->index]) + ": left the key at revision " +
                          std::to_string(floor_after(*highest)) + " or later\n    " +
                          describe(history[b->index]) + ": " +
                          past_deadline(*b, floor_after(*highest)) + "\n";
    return Status::failed_precondition("not linearizable");
  }
  return Status();
}

// Writes must get revisions in real-time order, across keys: when one write finished before
// another began, its revision is smaller. Only completed writes with a known revision count.
bool check_revision_order(const History& history, CheckResult* result) {
  std::vector<std::size_t> writes;
  for (std::size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome != Outcome::kOk || op.revision == 0) continue;
    const bool wrote = op.kind == OpKind::kPut ||
                       ((op.kind == OpKind::kDelete || op.kind == OpKind::kCas) && op.found);
    if (wrote) writes.push_back(i);
  }
  std::vector<std::size_t> by_response = writes;
  std::sort(by_response.begin(), by_response.end(), [&](std::size_t a, std::size_t b) {
    return history[a].response_time < history[b].response_time;
  });
  std::sort(writes.begin(), writes.end(), [&](std::size_t a, std::size_t b) {
    return history[a].invoke_time < history[b].invoke_time;
  });
  std::size_t done = 0;
  std::optional<std::size_t> highest;  // the finished write with the highest revision so far
  for (std::size_t b : writes) {
    while (done < by_response.size() &&
           history[by_response[done]].response_time < history[b].invoke_time) {
      const std::size_t a = by_response[done++];
      if (!highest || history[a].revision > history[*highest].revision) highest = a;
    }
    if (highest && history[*highest].revision >= history[b].revision) {
      const Operation& a = history[*highest];
      const Operation& later = history[b];
      result->verdict = Verdict::kNotLinearizable;
      result->key = later.key;
      result->culprits = {std::min(*highest, b), std::max(*highest, b)};
      result->explanation =
          "revisions go backwards in real time: a write finished before another began but got "
          "a revision that is not smaller.\n  first:  " +
          describe(a) + "\n  second: " + describe(later) + "\n";
      return false;
    }
  }
  return true;
}

// Runs the search over one key's ops (interning done; reads still to be counted).
KeyResult search_ops(const std::string& key, std::vector<KeyOp> ops, const ValueTable& values,
                     const History& history, const CheckOptions& options, bool explain) {
  std::vector<bool> read(values.size(), false);
  for (const KeyOp& k : ops) {
    if (k.kind == OpKind::kGet && k.found && !k.optional) read[k.read_value] = true;
  }
  for (KeyOp& k : ops) {
    k.original_value = k.value;
    if ((k.kind == OpKind::kPut || k.kind == OpKind::kCas) && !read[k.value]) k.value = kUnread;
  }
  KeySearch search(key, std::move(ops), values, history, options);
  return search.run(explain);
}

// The key's sub-history as it stood at time `t`: ops completed by then are required; ops
// invoked by then but not completed, like unknown-outcome ones, are optional (reads among them
// constrain nothing and are dropped); later ops are left out. If the whole history is
// linearizable so is every such prefix (cut a linearization at t), so the first `t` at which
// it is not is where the history first goes wrong.
std::vector<KeyOp> prefix_at(const std::vector<KeyOp>& ops, std::uint64_t t) {
  std::vector<KeyOp> out;
  for (const KeyOp& op : ops) {
    if (op.invoke > t) continue;
    KeyOp k = op;
    if (!op.optional && op.response > t) {
      if (op.kind == OpKind::kGet) continue;
      k.optional = true;
      k.found = false;
      k.revision = 0;
      k.response = kNever;
    }
    out.push_back(k);
  }
  return out;
}

// Replaces a failed key's explanation with one about the first time its history goes wrong:
// a binary search over response times for the shortest failing prefix, whose last completed
// op is the culprit. Leaves *result alone if a probe gives up.
void explain_first_failure(const std::string& key, const std::vector<KeyOp>& ops,
                           const ValueTable& values, const History& history,
                           const CheckOptions& options, std::uint64_t main_states,
                           CheckResult* result) {
  std::vector<std::uint64_t> times;
  for (const KeyOp& op : ops) {
    if (!op.optional) times.push_back(op.response);
  }
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  if (times.empty()) return;
  // A prefix can be much harder to check than the whole (a planted anomaly often dooms every
  // branch of the whole early), so the probes share a budget of states; past it, the
  // explanation of the whole history stands.
  std::uint64_t budget =
      std::min(options.max_states_per_key,
               std::max<std::uint64_t>(kExplainMinStates, kExplainStatesFactor * main_states));
  CheckOptions probe_options = options;
  std::size_t lo = 0, hi = times.size() - 1;  // Invariant: the prefix at times[hi] fails.
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    probe_options.max_states_per_key = budget;
    const KeyResult probe =
        search_ops(key, prefix_at(ops, times[mid]), values, history, probe_options, false);
    if (probe.verdict == Verdict::kGaveUp) return;
    budget -= std::min(budget, probe.states);
    if (probe.verdict == Verdict::kNotLinearizable) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const std::uint64_t t = times[hi];
  probe_options.max_states_per_key = budget;
  KeyResult failing = search_ops(key, prefix_at(ops, t), values, history, probe_options, true);
  if (failing.verdict != Verdict::kNotLinearizable) return;
  std::vector<std::size_t> last;
  for (const KeyOp& op : ops) {
    if (!op.optional && op.response == t) last.push_back(op.index);
  }
  std::sort(last.begin(), last.end());
  std::string out = "key " + shown(key) + ": not linearizable. Its operations are linearizable" +
                    (hi > 0 ? " up to time " + std::to_string(times[hi - 1]) : "") +
                    ", but not once this completes at time " + std::to_string(t) + ":\n";
  for (std::size_t i : last) out += "    " + describe(history[i]) + "\n";
  out += "  Up to then: " + failing.explanation;
  result->explanation = std::move(out);
  result->culprits = std::move(last);
}

}  // namespace

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kGaveUp:
      return "gave up";
  }
  return "unknown verdict";
}

std::string describe(const Operation& op) {
  std::string out = "c" + std::to_string(op.client) + " ";
  switch (op.kind) {
    case OpKind::kPut:
      out += "put(" + shown(op.key) + ", " + shown(op.value) + ")";
      break;
    case OpKind::kGet:
      out += "get(" + shown(op.key) + ")";
      break;
    case OpKind::kDelete:
      out += "delete(" + shown(op.key) + ")";
      break;
    case OpKind::kCas:
      out += "cas(" + shown(op.key) + ", " + shown(op.value) +
             ", expect=" + std::to_string(op.expect_revision) + ")";
      break;
  }
  out += " -> ";
  const std::string rev = op.revision != 0 ? " rev=" + std::to_string(op.revision) : "";
  switch (op.outcome) {
    case Outcome::kFailed:
      out += "failed";
      break;
    case Outcome::kUnknown:
      out += "unknown";
      break;
    case Outcome::kOk:
      switch (op.kind) {
        case OpKind::kPut:
          out += "ok" + rev;
          break;
        case OpKind::kGet:
          out += op.found ? shown(op.read_value) + rev : "not found";
          break;
        case OpKind::kDelete:
          out += op.found ? "deleted" + rev : "not found";
          break;
        case OpKind::kCas:
          out += op.found ? "ok" + rev : "compare failed";
          break;
      }
      break;
  }
  out += " [" + std::to_string(op.invoke_time) + ",";
  out += op.outcome == Outcome::kUnknown || op.response_time == kNever
             ? std::string("inf")
             : std::to_string(op.response_time);
  out += "]";
  return out;
}

CheckResult check_history(const History& history, const CheckOptions& options) {
  CheckResult result;
  // Partition by key; std::map so keys are checked (and failures reported) in a stable order.
  std::map<std::string, std::vector<std::size_t>> by_key;
  for (std::size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome == Outcome::kFailed) continue;
    ++result.operations;
    if (op.outcome == Outcome::kUnknown && op.kind == OpKind::kGet) continue;  // constrains nothing
    by_key[op.key].push_back(i);
  }
  result.keys = by_key.size();
  std::optional<CheckResult> gave_up;
  for (const auto& [key, indexes] : by_key) {
    ValueTable values;
    std::vector<KeyOp> ops;
    ops.reserve(indexes.size());
    for (std::size_t i : indexes) {
      const Operation& op = history[i];
      KeyOp k;
      k.index = i;
      k.kind = op.kind;
      k.optional = op.outcome == Outcome::kUnknown;
      k.found = op.found;
      if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) k.value = values.intern(op.value);
      if (op.kind == OpKind::kGet && op.found) k.read_value = values.intern(op.read_value);
      k.expect = op.expect_revision;
      k.revision = op.revision;
      k.invoke = op.invoke_time;
      k.response = k.optional ? kNever : std::max(op.response_time, op.invoke_time);
      ops.push_back(k);
    }
    // A read of a value that no operation on the key wrote fails wherever it is placed; saying
    // so directly is clearer (and quicker) than an exhausted search.
    std::vector<bool> written(values.size(), false);
    for (const KeyOp& k : ops) {
      if (k.kind == OpKind::kPut || k.kind == OpKind::kCas) written[k.value] = true;
    }
    for (const KeyOp& k : ops) {
      if (k.kind != OpKind::kGet || !k.found || written[k.read_value]) continue;
      result.verdict = Verdict::kNotLinearizable;
      result.key = key;
      result.culprits = {k.index};
      result.explanation = "key " + shown(key) + ": not linearizable: a read returned a value " +
                           "that no operation on the key wrote.\n    " +
                           describe(history[k.index]) + "\n";
      return result;
    }
    // Likewise a read of a value whose every write completed with a known revision, none of
    // them the revision read.
    std::vector<std::vector<std::uint64_t>> revisions(values.size());
    std::vector<bool> any_revision(values.size(), false);
    for (const KeyOp& k : ops) {
      if (k.kind != OpKind::kPut && k.kind != OpKind::kCas) continue;
      if (k.optional || k.revision == 0) {
        any_revision[k.value] = true;
      } else if (k.kind == OpKind::kPut || k.found) {
        revisions[k.value].push_back(k.revision);
      }
    }
    for (const KeyOp& k : ops) {
      if (k.kind != OpKind::kGet || !k.found || k.revision == 0 || any_revision[k.read_value]) {
        continue;
      }
      const auto& revs = revisions[k.read_value];
      if (std::find(revs.begin(), revs.end(), k.revision) != revs.end()) continue;
      result.verdict = Verdict::kNotLinearizable;
      result.key = key;
      result.culprits = {k.index};
      result.explanation = "key " + shown(key) + ": not linearizable: a read returned a value " +
                           "with a revision that no write of that value got.\n    " +
                           describe(history[k.index]) + "\n";
      return result;
    }
    // And an op that needs a revision below one an op that finished before it began left.
    if (Status why = check_key_revision_order(key, ops, history, &result); !why.ok()) {
      return result;
    }
    KeyResult kr = search_ops(key, ops, values, history, options, true);
    result.states_explored += kr.states;
    if (kr.verdict == Verdict::kNotLinearizable) {
      result.verdict = Verdict::kNotLinearizable;
      result.key = key;
      result.explanation = "key " + shown(key) + ": not linearizable. " + kr.explanation;
      result.culprits = std::move(kr.culprits);
      explain_first_failure(key, ops, values, history, options, kr.states, &result);
      return result;
    }
    if (kr.verdict == Verdict::kGaveUp && !gave_up) {
      gave_up = CheckResult{Verdict::kGaveUp, key, std::move(kr.explanation), {}, 0, 0, 0};
    }
  }
  if (options.check_revision_order && !check_revision_order(history, &result)) return result;
  if (gave_up) {
    result.verdict = Verdict::kGaveUp;
    result.key = gave_up->key;
    result.explanation = std::move(gave_up->explanation);
  }
  return result;
}

}  // namespace kvc::check
