#include "chaos_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include "../test_ports.h"

extern char** environ;

namespace kvc::chaos {
namespace {

using Clock = std::chrono::steady_clock;

// Waits (bounded) for `pid` to exit; true with its status when it did.
bool reap(pid_t pid, int* status, std::uint64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno == ECHILD) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

}  // namespace

std::uint16_t free_port() { return kvc::testing::free_test_port(); }

ChaosCluster::ChaosCluster(ClusterConfig config)
    : config_(std::move(config)), proxy_(std::make_unique<FaultProxy>(config_.seed)) {
  // The harness's clients write to members that are killed under them: a write to a closed
  // connection must fail with EPIPE, not kill the harness with SIGPIPE (kvc-chaos died so once,
  // seed 2, a second and a half into the run). The members are started with the default back.
  ::signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < config_.members; ++i) {
    MemberProcess m;
    m.name = "m" + std::to_string(i + 1);
    m.client_port = free_port();
    m.peer_port = free_port();
    m.data_dir = config_.dir + "/" + m.name;
    m.log_path = config_.dir + "/" + m.name + ".log";
    m.disk_control = config_.dir + "/" + m.name + ".disk-delay-ms";
    members_.push_back(m);
  }
}

ChaosCluster::~ChaosCluster() {
  std::lock_guard<std::mutex> lock(mu_);
  for (MemberProcess& m : members_) {
    if (m.pid <= 0) continue;
    ::kill(m.pid, SIGCONT);
    ::kill(m.pid, SIGKILL);
    int status = 0;
    ::waitpid(m.pid, &status, 0);
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
  std::vector<std::string> args = {config_.node_binary,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir,
                                   "--listen-peer",
                                   "127.0.0.1:" + std::to_string(m.peer_port),
                                   "--listen-client",
                                   "127.0.0.1:" + std::to_string(m.client_port),
                                   "--initial-cluster",
                                   initial_cluster_locked(),
                                   "--initial-cluster-state",
                                   m.initial_state,
                                   "--cluster-token",
                                   config_.token};
  args.insert(args.end(), config_.extra_flags.begin(), config_.extra_flags.end());
  if (!config_.test_mutation.empty()) {
    args.push_back("--test-mutation");
    args.push_back(config_.test_mutation);
  }
  return args;
}

Status ChaosCluster::start(int i) {
  const std::vector<std::string> args = command_line(i);
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid > 0) return Status::failed_precondition(m.name + " is already running");
  if (m.retired) return Status::failed_precondition(m.name + " was removed from the cluster");

  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
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
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string log = m.log_path;
  const std::string banner =
      "=== kvc-chaos: start " + std::to_string(m.starts + 1) + " of " + m.name + " ===\n";
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return Status::from_errno("fork", errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::signal(SIGPIPE, SIG_DFL);  // ignored by the harness (see the constructor), not inherited
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      (void)!::write(fd, banner.data(), banner.size());
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      if (fd > STDERR_FILENO) ::close(fd);
    }
    // No descriptor of the harness (proxy sockets above all) may live on in the member.
    if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
      for (int f = 3; f < 4096; ++f) ::close(f);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  m.pid = pid;
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
                               describe_status(status) + " without being stopped; log " +
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
  ::kill(m.pid, SIGKILL);
  ::kill(m.pid, SIGCONT);
  int status = 0;
  if (!reap(m.pid, &status, 15000)) {
    return Status::timeout(m.name + " (pid " + std::to_string(m.pid) +
                           ") did not die within 15 s of SIGKILL");
  }
  m.pid = 0;
  m.paused = false;
  return Status();
}

Result<int> ChaosCluster::terminate(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberProcess& m = members_.at(static_cast<std::size_t>(i));
  if (m.pid <= 0) return Status::failed_precondition(m.name + " is not running");
  ::kill(m.pid, SIGCONT);
  ::kill(m.pid, SIGTERM);
  int status = 0;
  if (!reap(m.pid, &status, 20000)) {
    ::kill(m.pid, SIGKILL);
    reap(m.pid, &status, 15000);
    m.pid = 0;
    m.paused = false;
    return Status::timeout(m.name + " did not stop within 20 s of SIGTERM");
  }
  m.pid = 0;
  m.paused = false;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
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
  MemberProcess m;
  m.name = "m" + std::to_string(i + 1);
  m.client_port = free_port();
  m.peer_port = free_port();
  m.data_dir = config_.dir + "/" + m.name;
  m.log_path = config_.dir + "/" + m.name + ".log";
  m.disk_control = config_.dir + "/" + m.name + ".disk-delay-ms";
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
