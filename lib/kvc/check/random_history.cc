// A discrete-event simulation: clients invoke operations; each takes effect on an atomic map at
// an instant inside its interval (events ordered by time, then by sequence number); the client
// sees the response afterwards, or, for a lost response, gives up after a timeout and moves on.
#include "kvc/check/random_history.h"

#include <map>
#include <queue>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kvc/common/check.h"

namespace kvc::check {
namespace {

struct Event {
  std::uint64_t time;
  std::uint64_t seq;
  enum Type : std::uint8_t { kInvoke, kEffect, kRespond } type;
  std::size_t target;  // kInvoke: client; kEffect, kRespond: operation index
  bool operator>(const Event& o) const { return std::tie(time, seq) > std::tie(o.time, o.seq); }
};

struct Version {
  std::string value;
  std::uint64_t mod_revision = 0;
};

// One run of the simulation: the clients, the atomic map, and the history being written.
class HistorySim {
 public:
  explicit HistorySim(const RandomHistoryOptions& options)
      : options_(options),
        rng_(options.seed),
        kind_dist_(
            {options.get_weight, options.put_weight, options.delete_weight, options.cas_weight}),
        seen_(options.clients) {
    for (std::uint64_t k = 0; k < options.keys; ++k) {
      std::string key = "k" + std::to_string(k);
      if (options.binary_values && k % 2 == 1) key += std::string("\0\xff\n\"", 4);
      keys_.push_back(std::move(key));
    }
  }

  History run() {
    history_.reserve(options_.operations);
    for (std::uint64_t c = 0; c < options_.clients; ++c) {
      events_.push(Event{uniform(0, options_.max_think), seq_++, Event::kInvoke, c});
    }
    while (!events_.empty()) {
      const Event e = events_.top();
      events_.pop();
      switch (e.type) {
        case Event::kInvoke:
          invoke(e);
          break;
        case Event::kEffect:
          take_effect(e);
          break;
        case Event::kRespond:
          respond(e);
          break;
      }
    }
    return std::move(history_);
  }

 private:
  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  // A client invokes its next operation (unless the history is full): it fails, is lost (its
  // outcome unknown), or takes effect later.
  void invoke(const Event& e) {
    if (history_.size() >= options_.operations) return;  // this client is done
    Operation op;
    op.client = e.target;
    op.kind = static_cast<OpKind>(kind_dist_(rng_));
    op.key = keys_[uniform(0, keys_.size() - 1)];
    op.invoke_time = e.time;
    const std::uint64_t n = history_.size();
    if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) {
      op.value = "v" + std::to_string(n);
      if (options_.binary_values && n % 3 == 0) op.value += std::string("\x80\0\xc3", 3);
    }
    if (op.kind == OpKind::kCas) {
      const auto it = seen_[e.target].find(op.key);
      const std::uint64_t last = it == seen_[e.target].end() ? 0 : it->second;
      const auto pick = uniform(0, 9);
      op.expect_revision = pick < 7 ? last : pick < 8 ? 0 : uniform(0, revision_ + 1);
    }
    const bool fail = chance(options_.failed_fraction);
    const bool unknown = !fail && chance(options_.unknown_fraction);
    const std::uint64_t timeout = 3 * options_.max_latency;
    if (fail) {
      op.outcome = Outcome::kFailed;
      op.response_time = e.time + uniform(1, 2 * options_.max_latency);
      history_.push_back(op);
      lost_.push_back(false);
      events_.push(Event{op.response_time, seq_++, Event::kRespond, n});
      return;
    }
    if (unknown) {
      op.outcome = Outcome::kUnknown;
      op.response_time = kNever;
      history_.push_back(op);
      lost_.push_back(true);
      // Half take effect, some long after the client gave up on them.
      if (chance(0.5)) {
        events_.push(Event{e.time + uniform(1, 10 * timeout), seq_++, Event::kEffect, n});
      }
      events_.push(Event{e.time + timeout + uniform(0, options_.max_think), seq_++, Event::kInvoke,
                         e.target});
      return;
    }
    history_.push_back(op);
    lost_.push_back(false);
    const std::uint64_t effect = e.time + uniform(1, options_.max_latency);
    events_.push(Event{effect, seq_++, Event::kEffect, n});
    // The response is scheduled when the effect happens (it must come after it).
  }

  // The operation takes effect on the map, atomically; its response is scheduled after it.
  void take_effect(const Event& e) {
    Operation& op = history_[e.target];
    auto it = store_.find(op.key);
    const bool present = it != store_.end();
    switch (op.kind) {
      case OpKind::kPut:
        store_[op.key] = Version{op.value, ++revision_};
        op.revision = revision_;
        break;
      case OpKind::kGet:
        op.found = present;
        if (present) {
          op.read_value = it->second.value;
          op.revision = it->second.mod_revision;
        }
        break;
      case OpKind::kDelete:
        op.found = present;
        if (present) {
          store_.erase(it);
          op.revision = ++revision_;
        }
        break;
      case OpKind::kCas: {
        const bool match = op.expect_revision == 0
                               ? !present
                               : present && it->second.mod_revision == op.expect_revision;
        op.found = match;
        if (match) {
          store_[op.key] = Version{op.value, ++revision_};
          op.revision = revision_;
        }
        break;
      }
    }
    if (lost_[e.target]) {  // nobody hears about it: clear what the client could not know
      op.found = false;
      op.read_value.clear();
      op.revision = 0;
      return;
    }
    op.response_time = e.time + uniform(1, options_.max_latency);
    events_.push(Event{op.response_time, seq_++, Event::kRespond, e.target});
  }

  // The client hears the response, remembers the revision it saw, and thinks before the next.
  void respond(const Event& e) {
    const Operation& op = history_[e.target];
    if (op.outcome == Outcome::kOk && op.revision != 0) {
      const bool present_after = op.kind == OpKind::kPut || op.kind == OpKind::kGet ||
                                 (op.kind == OpKind::kCas && op.found);
      if (present_after) seen_[op.client][op.key] = op.revision;
    }
    events_.push(Event{e.time + uniform(0, options_.max_think), seq_++, Event::kInvoke, op.client});
  }

  const RandomHistoryOptions& options_;
  std::mt19937_64 rng_;
  std::discrete_distribution<int> kind_dist_;
  std::vector<std::string> keys_;
  std::map<std::string, Version> store_;
  std::uint64_t revision_ = 0;
  // What each client last saw of each key's revision, for realistic CAS expectations.
  std::vector<std::map<std::string, std::uint64_t>> seen_;
  History history_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::uint64_t seq_ = 0;
  std::vector<bool> lost_;  // per operation: the client never sees the response
};

}  // namespace

History random_history(const RandomHistoryOptions& options) {
  KVC_CHECK(options.clients > 0 && options.keys > 0, "random_history needs clients and keys");
  KVC_CHECK(options.max_latency > 0, "random_history needs max_latency > 0");
  return HistorySim(options).run();
}

}  // namespace kvc::check
