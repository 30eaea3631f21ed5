// The backtracking search over one key's sub-history (linearizability_internal.h): Wing & Gong's
// search over a list of call and return events, with Lowe's memo table of (linearized set, model
// state), operations of unknown outcome optional, pruning by revision deadlines, stranded reads
// and forced read-only steps, and on failure the explanation of where it got stuck
// (docs/checker.md). Invariant kept here: backtracking restores the event lists exactly (links
// are restored in reverse order), so every branch starts from the state it branched from.
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "kvc/check/linearizability_internal.h"
#include "kvc/common/check.h"

namespace kvc::check {

using namespace linearizability_internal;  // the check's shared internals
                                           // (linearizability_internal.h)

namespace {

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

  // One long loop (about 170 lines) on purpose: every step reads and writes the search's cursor
  // (the linearized sets and their hash, the memo, the path, the position in the two event
  // lists); split into methods, that state would become members and the checker's innermost
  // loop would go through them. Its steps are the ones docs/checker.md describes: a forced
  // read-only step, the next completed op, the optional list, backtracking.
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

}  // namespace

namespace linearizability_internal {

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

}  // namespace linearizability_internal

}  // namespace kvc::check
