#include "chaos_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/child_process.h"

extern char** environ;

namespace kvc::chaos {
namespace {

constexpr std::chrono::milliseconds kKillTimeout{15000}, kTerminateTimeout{20000};

}  // namespace

MemberProcess ChaosCluster::make_member(int i) const {
  MemberProcess m;
  static_cast<test::NodeSlot&>(m) = test::make_node_slot(config_.dir, "m" + std::to_string(i + 1));
  m.disk_control = config_.dir + "/" + m.name + ".disk-delay-ms";
  return m;
}

ChaosCluster::ChaosCluster(ClusterConfig config)
    : config_(std::move(config)),
      proxy_(std::make_unique<FaultProxy>(config_.seed, !config_.secret_file.empty())) {
  // The harness's clients write to members that are killed under them: a write to a closed
  // connection must fail with EPIPE, not kill the harness with SIGPIPE (kvc-chaos died so once,
  // seed 2, a second and a half into the run). The members are started with the default back.
  ::signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < config_.members; ++i) members_.push_back(make_member(i));
}

ChaosCluster::~ChaosCluster() {
  std::lock_guard<std::mutex> lock(mu_);
  for (MemberProcess& m : members_) {
    test::kill_and_reap(m.pid);
    m.pid = 0;
  }
  admin_.reset();
}

Status ChaosCluster::start_all() {
  std::error_code ec;
  std::filesystem::create_directories(config_.dir, ec);
  if (ec) return Status::io_error("cannot create " + config_.dir + ": " + ec.message());
  KVC_RETURN_IF_ERROR(proxy_->start());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < static_cast<int>(members_.size()); ++i) {
      MemberProcess& m = members_[static_cast<std::size_t>(i)];
      Result<std::uint16_t> port = proxy_->add_member(i, m.name, m.peer_port);
      if (!port.ok()) return port.status();
      m.proxy_port = *port;
    }
    client::ClientOptions o;
    for (const MemberProcess& m : members_) {
      o.endpoints.push_back({"127.0.0.1", m.client_port});
    }
    o.timeout_ms = 2000;
    o.connect_timeout_ms = 500;
    o.name = "kvc-chaos-admin";
    secure(o);
    Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
    if (!c.ok()) return c.status();
    admin_ = std::move(*c);
  }
  for (int i = 0; i < size(); ++i) KVC_RETURN_IF_ERROR(start(i));
  return Status();
}

std::string ChaosCluster::initial_cluster_locked() const {
  std::string s;
  for (const MemberProcess& m : members_) {
    if (m.retired) continue;
    if (!s.empty()) s += ",";
    s += m.name + "=127.0.0.1:" + std::to_string(m.proxy_port);
  }
  return s;
}

std::vector<std::string> ChaosCluster::command_line(int i) const {
  std::lock_guard<std::mutex> lock(mu_);
  const MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  std::vector<std::string> extra = config_.extra_flags;
  if (!config_.test_mutation.empty()) {
    extra.push_back("--test-mutation");
    extra.push_back(config_.test_mutation);
  }
  if (!config_.secret_file.empty()) {
    extra.push_back("--secret-file");
    extra.push_back(config_.secret_file);
  }
  return test::node_command_line({.binary = config_.node_binary,
                                  .name = m.name,
                                  .data_dir = m.data_dir,
                                  .listen_peer = "127.0.0.1:" + std::to_string(m.peer_port),
                                  .listen_client = "127.0.0.1:" + std::to_string(m.client_port),
                                  .initial_cluster = initial_cluster_locked(),
                                  .initial_cluster_state = m.initial_state,
                                  .token = config_.token},
                                 extra);
}

Status ChaosCluster::start(int i) {
  const std::vector<std::string> args = command_line(i);
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid > 0) return Status::failed_precondition(m.name + " is already running");
  if (m.retired) return Status::failed_precondition(m.name + " was removed from the cluster");

  // The members' environment: the harness's, with the slow-disk shim in place of any preload.
  std::vector<std::string> env;
  bool asan_seen = false;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (kv.rfind("LD_PRELOAD=", 0) == 0 || kv.rfind("KVC_SLOWFS_CONTROL=", 0) == 0) continue;
    if (kv.rfind("ASAN_OPTIONS=", 0) == 0 && !config_.slowfs_library.empty()) {
      env.push_back(kv + ":verify_asan_link_order=0");
      asan_seen = true;
      continue;
    }
    env.push_back(kv);
  }
  if (!config_.slowfs_library.empty()) {
    env.push_back("LD_PRELOAD=" + config_.slowfs_library);
    env.push_back("KVC_SLOWFS_CONTROL=" + m.disk_control);
    if (!asan_seen) env.push_back("ASAN_OPTIONS=verify_asan_link_order=0");
  }
  Result<pid_t> pid = test::spawn(
      {.args = args,
       .env = env,
       .output_path = m.log_path,
       .banner =
           "=== kvc-chaos: start " + std::to_string(m.starts + 1) + " of " + m.name + " ===\n",
       .die_with_parent = true,
       .close_other_fds = true});  // no descriptor of the harness (proxy sockets) lives on
  if (!pid.ok()) return pid.status();
  m.pid = *pid;
  m.paused = false;
  ++m.starts;
  return Status();
}

bool ChaosCluster::running(int i) {
  (void)take_unexpected_exits();  // keeps them for the next caller
  std::lock_guard<std::mutex> lock(mu_);
  return members_.at(static_cast<std::size_t>(i)).pid > 0;
}

bool ChaosCluster::paused(int i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_.at(static_cast<std::size_t>(i)).paused;
}

std::vector<std::string> ChaosCluster::take_unexpected_exits() {
  std::lock_guard<std::mutex> lock(mu_);
  for (MemberProcess& m : members_) {
    if (m.pid <= 0) continue;
    int status = 0;
    const pid_t r = ::waitpid(m.pid, &status, WNOHANG);
    if (r == m.pid) {
      const std::string what = m.name + " (pid " + std::to_string(m.pid) + ") " +
                               test::describe_wait_status(status) + " without being stopped; log " +
                               m.log_path;
      if (m.may_exit) {
        m.exit_while_leaving = what;
      } else {
        unexpected_.push_back(what);
      }
      m.pid = 0;
      m.paused = false;
    }
  }
  return unexpected_;
}

Status ChaosCluster::kill(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return Status::failed_precondition(m.name + " is not running");
  Result<int> status = test::signal_and_reap(m.pid, SIGKILL, kKillTimeout, m.name);
  if (!status.ok()) return status.status();
  m.pid = 0;
  m.paused = false;
  return Status();
}

Result<int> ChaosCluster::terminate(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return Status::failed_precondition(m.name + " is not running");
  Result<int> status = test::signal_and_reap(m.pid, SIGTERM, kTerminateTimeout, m.name);
  if (!status.ok()) {
    ::kill(m.pid, SIGKILL);
    (void)test::reap_within(m.pid, kKillTimeout);
  }
  m.pid = 0;
  m.paused = false;
  if (!status.ok()) return Status::timeout(m.name + " did not stop within 20 s of SIGTERM");
  return test::exit_code_of(*status);
}

Status ChaosCluster::pause(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return Status::failed_precondition(m.name + " is not running");
  if (::kill(m.pid, SIGSTOP) != 0) return Status::from_errno("SIGSTOP " + m.name, errno);
  m.paused = true;
  return Status();
}

Status ChaosCluster::resume(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return Status::failed_precondition(m.name + " is not running");
  if (::kill(m.pid, SIGCONT) != 0) return Status::from_errno("SIGCONT " + m.name, errno);
  m.paused = false;
  return Status();
}

Result<int> ChaosCluster::add_member_slot() {
  std::lock_guard<std::mutex> lock(mu_);
  const int i = static_cast<int>(members_.size());
  MemberProcess m = make_member(i);
  m.initial_state = "existing";
  Result<std::uint16_t> port = proxy_->add_member(i, m.name, m.peer_port);
  if (!port.ok()) return port.status();
  m.proxy_port = *port;
  members_.push_back(m);
  return i;
}

void ChaosCluster::retire(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  members_.at(static_cast<std::size_t>(i)).retired = true;
}

void ChaosCluster::expect_exit(int i, bool may_exit) {
  (void)take_unexpected_exits();  // an exit that happened while it was leaving is seen as such
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  m.may_exit = may_exit;
  if (!may_exit && !m.exit_while_leaving.empty()) {
    unexpected_.push_back(m.exit_while_leaving + " (it was not removed)");
    m.exit_while_leaving.clear();
  }
}

Status ChaosCluster::set_disk_delay(int i, std::uint32_t ms) {
  const std::string path = member(i).disk_control;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << ms << "\n";
    if (!f) return Status::io_error("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::from_errno("rename " + tmp, errno);
  return Status();
}

int ChaosCluster::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(members_.size());
}

MemberProcess ChaosCluster::member(int i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_.at(static_cast<std::size_t>(i));
}

std::string ChaosCluster::client_addr(int i) const {
  return "127.0.0.1:" + std::to_string(member(i).client_port);
}

std::string ChaosCluster::proxy_addr(int i) const {
  return "127.0.0.1:" + std::to_string(member(i).proxy_port);
}

std::vector<int> ChaosCluster::active_members() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(members_.size()); ++i) {
    if (!members_[static_cast<std::size_t>(i)].retired) out.push_back(i);
  }
  return out;
}

wire::Response ChaosCluster::call(int i, wire::Request req, std::uint64_t timeout_ms) const {
  const MemberProcess m = member(i);
  return admin_->call_sync(std::move(req), {.timeout_ms = timeout_ms,
                                            .target = net::Address{"127.0.0.1", m.client_port}});
}

wire::Response ChaosCluster::status(int i, std::uint64_t timeout_ms) const {
  wire::Response r = call(i, {.op = wire::Op::kStatus}, timeout_ms);
  if (r.code == Code::kOk && r.member_id != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    members_.at(static_cast<std::size_t>(i)).id = r.member_id;
  }
  return r;
}

int ChaosCluster::find_leader(std::uint64_t timeout_ms) const {
  int best = -1;
  std::uint64_t best_term = 0;
  for (int i : active_members()) {
    const MemberProcess m = member(i);
    if (m.pid <= 0 || m.paused) continue;
    wire::Response r = status(i, timeout_ms);
    if (r.code != Code::kOk || r.status.role != "leader") continue;
    if (best < 0 || r.status.term > best_term) {
      best = i;
      best_term = r.status.term;
    }
  }
  return best;
}

int ChaosCluster::index_of_id(std::uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < static_cast<int>(members_.size()); ++i) {
    if (members_[static_cast<std::size_t>(i)].id == id && id != 0) return i;
  }
  return -1;
}

}  // namespace kvc::chaos
