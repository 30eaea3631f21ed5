#include "workload.h"

#include <map>
#include <random>

namespace kvc::chaos {

void record_response(check::Operation& op, const wire::Response& r, std::uint64_t response_us) {
  op.found = false;
  op.read_value.clear();
  op.revision = 0;
  if (r.code == Code::kTimeout) {
    op.outcome = check::Outcome::kUnknown;
    op.response_time = check::kNever;
    return;
  }
  op.response_time = response_us;
  const bool ok = r.code == Code::kOk;
  const bool compare_failed = r.code == Code::kCompareFailed && op.kind == check::OpKind::kCas;
  const bool not_found = r.code == Code::kNotFound &&
                         (op.kind == check::OpKind::kGet || op.kind == check::OpKind::kDelete);
  if (!ok && !compare_failed && !not_found) {
    op.outcome = check::Outcome::kFailed;
    return;
  }
  check::record_answer(op, r);
}

std::uint64_t Recorder::now_us() const {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - origin_).count());
}

std::size_t Recorder::begin(check::Operation op) {
  std::lock_guard<std::mutex> lock(mu_);
  // Taken under the lock so invocation times are non-decreasing in the history's order.
  op.invoke_time = now_us();
  op.outcome = check::Outcome::kUnknown;
  op.response_time = check::kNever;
  ops_.push_back(std::move(op));
  pending_.push_back(true);
  return ops_.size() - 1;
}

void Recorder::complete(std::size_t handle, const wire::Response& r) {
  std::lock_guard<std::mutex> lock(mu_);
  std::uint64_t t = now_us();
  check::Operation& op = ops_.at(handle);
  if (t <= op.invoke_time) t = op.invoke_time + 1;  // the checker wants invoke < response
  record_response(op, r, t);
  pending_[handle] = false;
}

check::History Recorder::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  check::History h = ops_;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (!pending_[i]) continue;
    h[i].outcome = check::Outcome::kUnknown;
    h[i].response_time = check::kNever;
    h[i].found = false;
    h[i].revision = 0;
  }
  return h;
}

std::size_t Recorder::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_.size();
}

std::string workload_key(int i) { return "k" + std::to_string(i); }
std::string cold_key(int i) { return "cold" + std::to_string(i); }

std::vector<std::string> workload_keys(int keys, int cold) {
  std::vector<std::string> out;
  for (int i = 0; i < cold; ++i) out.push_back(cold_key(i));
  for (int i = 0; i < keys; ++i) out.push_back(workload_key(i));
  return out;
}

Workload::Workload(ChaosCluster& cluster, Recorder& recorder, WorkloadOptions options)
    : cluster_(cluster), recorder_(recorder), options_(options) {}

Workload::~Workload() { stop(); }

Status Workload::start() {
  const std::vector<int> members = cluster_.active_members();
  // One client per member, each listing that member first, so the clients start (and come
  // back after losing the leader) through different members.
  for (std::size_t first = 0; first < members.size(); ++first) {
    client::ClientOptions o;
    for (std::size_t k = 0; k < members.size(); ++k) {
      const int m = members[(first + k) % members.size()];
      o.endpoints.push_back({"127.0.0.1", cluster_.member(m).client_port});
    }
    o.timeout_ms = options_.op_timeout_ms;
    o.connect_timeout_ms = 500;
    o.name = "kvc-chaos-" + std::to_string(first);
    cluster_.secure(o);
    Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
    if (!c.ok()) return c.status();
    clients_.push_back(std::move(*c));
  }
  for (int id = 0; id < options_.clients; ++id) {
    threads_.emplace_back([this, id] { run_client(id); });
  }
  return Status();
}

void Workload::stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  clients_.clear();
}

WorkloadStats Workload::stats() const { return {ok_.load(), failed_.load(), unknown_.load()}; }

bool Workload::wait_or_stop(std::uint64_t ms) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  return stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stop_.load(); });
}

void Workload::run_client(int id) {
  std::mt19937_64 rng(options_.seed * 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(id));
  client::Client& c = *clients_[static_cast<std::size_t>(id) % clients_.size()];
  std::map<std::string, std::uint64_t> last_revision;  // what this client last saw per key
  std::uint64_t seq = 0;
  auto pick = [&rng](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  // The first clients create the cold keys, one each, so they exist before the first fault.
  bool create_cold = id < options_.cold_keys;
  while (!stop_.load()) {
    check::Operation op;
    op.client = static_cast<std::uint64_t>(id);
    op.key = workload_key(static_cast<int>(pick(static_cast<std::uint64_t>(options_.keys))));
    // One operation in 25 is on a cold key, and only one of those in 20 writes it; the frozen
    // cold key (cold0) is written only when created.
    const bool cold = create_cold || (options_.cold_keys > 0 && pick(25) == 0);
    const bool cold_write = create_cold || (options_.cold_keys > 1 && pick(20) == 0);
    if (cold) {
      const auto n = static_cast<std::uint64_t>(options_.cold_keys);
      op.key = create_cold  ? cold_key(id)
               : cold_write ? cold_key(static_cast<int>(1 + pick(n - 1)))
                            : cold_key(static_cast<int>(pick(n)));
    }
    create_cold = false;
    wire::Request req;
    req.key = op.key;
    client::CallOptions call;
    call.timeout_ms = options_.op_timeout_ms;
    const std::uint64_t roll = cold ? (cold_write ? 50 : 0) : pick(100);
    if (roll < 40) {
      op.kind = check::OpKind::kGet;
      req.op = wire::Op::kGet;
      if (static_cast<int>(pick(100)) < options_.targeted_read_percent) {
        const std::vector<int> members = cluster_.active_members();
        const int m = members[pick(members.size())];
        call.target = net::Address{"127.0.0.1", cluster_.member(m).client_port};
      }
    } else if (roll < 65) {
      op.kind = check::OpKind::kPut;
      req.op = wire::Op::kPut;
    } else if (roll < 88) {
      op.kind = check::OpKind::kCas;
      req.op = wire::Op::kCas;
      const std::uint64_t last = last_revision[op.key];
      const std::uint64_t how = pick(10);
      op.expect_revision = how < 7 ? last : how < 9 ? 0 : last + 1 + pick(3);
      req.expect_revision = op.expect_revision;
    } else {
      op.kind = check::OpKind::kDelete;
      req.op = wire::Op::kDelete;
    }
    if (op.kind == check::OpKind::kPut || op.kind == check::OpKind::kCas) {
      op.value = "c" + std::to_string(id) + "." + std::to_string(++seq);
      req.value = op.value;
    }
    const std::size_t h = recorder_.begin(op);
    const wire::Response r = c.call_sync(std::move(req), call);
    recorder_.complete(h, r);
    check::Operation done = op;
    record_response(done, r, 1);
    switch (done.outcome) {
      case check::Outcome::kOk:
        ++ok_;
        if (done.revision != 0) last_revision[op.key] = done.revision;
        if (done.kind == check::OpKind::kGet && !done.found) last_revision[op.key] = 0;
        if (done.kind == check::OpKind::kDelete) last_revision[op.key] = 0;
        break;
      case check::Outcome::kFailed:
        ++failed_;
        break;
      case check::Outcome::kUnknown:
        ++unknown_;
        break;
    }
    // Failures can be instant (a member that is down refuses at once): do not spin on them.
    if (done.outcome != check::Outcome::kOk && wait_or_stop(20 + pick(30))) break;
  }
}

}  // namespace kvc::chaos
