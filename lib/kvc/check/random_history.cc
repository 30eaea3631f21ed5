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

}  // namespace

History random_history(const RandomHistoryOptions& options) {
  KVC_CHECK(options.clients > 0 && options.keys > 0, "random_history needs clients and keys");
  KVC_CHECK(options.max_latency > 0, "random_history needs max_latency > 0");
  std::mt19937_64 rng(options.seed);
  auto uniform = [&](std::uint64_t lo, std::uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  std::discrete_distribution<int> kind_dist(
      {options.get_weight, options.put_weight, options.delete_weight, options.cas_weight});

  std::vector<std::string> keys;
  for (std::uint64_t k = 0; k < options.keys; ++k) {
    std::string key = "k" + std::to_string(k);
    if (options.binary_values && k % 2 == 1) key += std::string("\0\xff\n\"", 4);
    keys.push_back(std::move(key));
  }
  std::map<std::string, Version> store;
  std::uint64_t revision = 0;
  // What each client last saw of each key's revision, for realistic CAS expectations.
  std::vector<std::map<std::string, std::uint64_t>> seen(options.clients);

  History history;
  history.reserve(options.operations);
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  std::uint64_t seq = 0;
  for (std::uint64_t c = 0; c < options.clients; ++c) {
    events.push(Event{uniform(0, options.max_think), seq++, Event::kInvoke, c});
  }
  std::vector<bool> lost;  // per operation: the client never sees the response

  while (!events.empty()) {
    const Event e = events.top();
    events.pop();
    switch (e.type) {
      case Event::kInvoke: {
        if (history.size() >= options.operations) break;  // this client is done
        Operation op;
        op.client = e.target;
        op.kind = static_cast<OpKind>(kind_dist(rng));
        op.key = keys[uniform(0, keys.size() - 1)];
        op.invoke_time = e.time;
        const std::uint64_t n = history.size();
        if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) {
          op.value = "v" + std::to_string(n);
          if (options.binary_values && n % 3 == 0) op.value += std::string("\x80\0\xc3", 3);
        }
        if (op.kind == OpKind::kCas) {
          const auto it = seen[e.target].find(op.key);
          const std::uint64_t last = it == seen[e.target].end() ? 0 : it->second;
          const auto pick = uniform(0, 9);
          op.expect_revision = pick < 7 ? last : pick < 8 ? 0 : uniform(0, revision + 1);
        }
        const bool fail = chance(options.failed_fraction);
        const bool unknown = !fail && chance(options.unknown_fraction);
        const std::uint64_t timeout = 3 * options.max_latency;
        if (fail) {
          op.outcome = Outcome::kFailed;
          op.response_time = e.time + uniform(1, 2 * options.max_latency);
          history.push_back(op);
          lost.push_back(false);
          events.push(Event{op.response_time, seq++, Event::kRespond, n});
          break;
        }
        if (unknown) {
          op.outcome = Outcome::kUnknown;
          op.response_time = kNever;
          history.push_back(op);
          lost.push_back(true);
          // Half take effect, some long after the client gave up on them.
          if (chance(0.5)) {
            events.push(Event{e.time + uniform(1, 10 * timeout), seq++, Event::kEffect, n});
          }
          events.push(Event{e.time + timeout + uniform(0, options.max_think), seq++, Event::kInvoke,
                            e.target});
          break;
        }
        history.push_back(op);
        lost.push_back(false);
        const std::uint64_t effect = e.time + uniform(1, options.max_latency);
        events.push(Event{effect, seq++, Event::kEffect, n});
        // The response is scheduled when the effect happens (it must come after it).
        break;
      }
      case Event::kEffect: {
        Operation& op = history[e.target];
        auto it = store.find(op.key);
        const bool present = it != store.end();
        switch (op.kind) {
          case OpKind::kPut:
            store[op.key] = Version{op.value, ++revision};
            op.revision = revision;
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
              store.erase(it);
              op.revision = ++revision;
            }
            break;
          case OpKind::kCas: {
            const bool match = op.expect_revision == 0
                                   ? !present
                                   : present && it->second.mod_revision == op.expect_revision;
            op.found = match;
            if (match) {
              store[op.key] = Version{op.value, ++revision};
              op.revision = revision;
            }
            break;
          }
        }
        if (lost[e.target]) {  // nobody hears about it: clear what the client could not know
          op.found = false;
          op.read_value.clear();
          op.revision = 0;
          break;
        }
        op.response_time = e.time + uniform(1, options.max_latency);
        events.push(Event{op.response_time, seq++, Event::kRespond, e.target});
        break;
      }
      case Event::kRespond: {
        const Operation& op = history[e.target];
        if (op.outcome == Outcome::kOk && op.revision != 0) {
          const bool present_after = op.kind == OpKind::kPut || op.kind == OpKind::kGet ||
                                     (op.kind == OpKind::kCas && op.found);
          if (present_after) seen[op.client][op.key] = op.revision;
        }
        events.push(
            Event{e.time + uniform(0, options.max_think), seq++, Event::kInvoke, op.client});
        break;
      }
    }
  }
  return history;
}

}  // namespace kvc::check
