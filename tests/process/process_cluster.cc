#include "process_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include "../test_ports.h"

#ifndef KVC_BINARY_DIR
#error "KVC_BINARY_DIR must be defined by the build"
#endif

namespace kvc::test {
namespace {

using Clock = std::chrono::steady_clock;

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Polls `done` every few milliseconds until it holds or `timeout_ms` passes.
template <typename F>
bool poll_until(std::uint64_t timeout_ms, F done) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string printed_initial_cluster(const std::string& out) {
  // (No <regex>: GCC 12 warns inside it in the sanitizer build.)
  const std::string flag = "--initial-cluster ";
  const std::size_t at = out.find(flag);
  if (at == std::string::npos) return "";
  const std::size_t from = at + flag.size();
  return out.substr(from, out.find_first_of(" \n", from) - from);
}

std::string binary_path(const std::string& name) {
  return std::string(KVC_BINARY_DIR) + "/cmd/" + name + "/" + name;
}

int raw_connect(const std::string& addr) {
  const auto colon = addr.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  ::inet_pton(AF_INET, addr.substr(0, colon).c_str(), &a.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::uint16_t free_port() { return kvc::testing::free_test_port(); }

RunResult run_command(const std::vector<std::string>& args, std::uint64_t timeout_ms,
                      const std::string& input) {
  RunResult r;
  char dir_template[] = "/tmp/kvc-run-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  if (dir == nullptr) return r;
  const std::string in_path = std::string(dir) + "/in", out_path = std::string(dir) + "/out",
                    err_path = std::string(dir) + "/err";
  {
    std::ofstream in(in_path, std::ios::binary);
    in << input;
  }
  const pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {
    const int in = ::open(in_path.c_str(), O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  if (!poll_until(timeout_ms, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; })) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    r.timed_out = true;
  }
  r.status = !r.timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  std::filesystem::remove_all(dir);
  return r;
}

ProcessCluster::ProcessCluster(const std::string& test_name, ClusterOptions options)
    : options_(std::move(options)) {
  const char* tmp = std::getenv("TMPDIR");
  dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/kvc-test-" + test_name + "-" +
         std::to_string(::getpid());
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  for (int i = 0; i < options_.members; ++i) {
    MemberSpec s;
    s.name = "m" + std::to_string(i + 1);
    s.peer_port = free_port();
    s.client_port = free_port();
    s.data_dir = dir_ + "/" + s.name;
    specs_.push_back(s);
  }
  pids_.assign(specs_.size(), 0);
  ids_.assign(specs_.size(), 0);
  exit_status_.assign(specs_.size(), -1);
}

ProcessCluster::~ProcessCluster() {
  for (std::size_t i = 0; i < pids_.size(); ++i) {
    if (pids_[i] > 0) {
      ::kill(pids_[i], SIGCONT);
      ::kill(pids_[i], SIGKILL);
      ::waitpid(pids_[i], nullptr, 0);
      pids_[i] = 0;
    }
  }
  if (std::getenv("KVC_KEEP_TEST_DIRS") == nullptr) std::filesystem::remove_all(dir_);
}

Status write_secret_file(const std::string& path, const std::string& secret) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::from_errno(path, errno);
  const bool ok = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  ::close(fd);
  if (!ok) return Status::io_error("writing " + path + " failed");
  return Status();
}

int ProcessCluster::add_spec(const std::string& name) {
  MemberSpec s;
  s.name = name;
  s.peer_port = free_port();
  s.client_port = free_port();
  s.data_dir = dir_ + "/" + s.name;
  specs_.push_back(s);
  pids_.push_back(0);
  ids_.push_back(0);
  exit_status_.push_back(-1);
  return size() - 1;
}

ProcessCluster::CtlResult ProcessCluster::ctl(const std::vector<std::string>& args) const {
  std::string eps;
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    if (!eps.empty()) eps += ",";
    eps += client_addr(i);
  }
  return ctl_with(eps, args);
}

ProcessCluster::CtlResult ProcessCluster::ctl_with(const std::string& eps,
                                                   const std::vector<std::string>& args,
                                                   const std::string& stdin_path) const {
  std::string cmd = "'" + binary_path("kvc-ctl") + "' --endpoints '" + eps + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  if (!stdin_path.empty()) cmd += " < '" + stdin_path + "'";
  cmd += " 2>&1";
  CtlResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string ProcessCluster::initial_cluster() const {
  std::string s;
  for (const MemberSpec& m : specs_) {
    if (!m.join_initial_cluster.empty()) continue;  // added later, not a bootstrap member
    if (!s.empty()) s += ",";
    s += m.name + "=" + m.host + ":" + std::to_string(m.peer_port);
  }
  return s;
}

std::string ProcessCluster::client_addr(int i) const {
  return spec(i).host + ":" + std::to_string(spec(i).client_port);
}
std::string ProcessCluster::peer_addr(int i) const {
  return spec(i).host + ":" + std::to_string(spec(i).peer_port);
}
std::string ProcessCluster::log_path(int i) const { return dir_ + "/" + spec(i).name + ".log"; }

std::string ProcessCluster::endpoints() const {
  std::string s;
  for (int i = 0; i < size(); ++i) {
    if (!s.empty()) s += ",";
    s += client_addr(i);
  }
  return s;
}

std::vector<std::string> ProcessCluster::command_line(int i) const {
  const MemberSpec& m = spec(i);
  std::vector<std::string> args = {
      m.binary.empty() ? binary_path("kvc-node")
                       : std::string(KVC_BINARY_DIR) + "/cmd/kvc-node/" + m.binary,
      "--name",
      m.name,
      "--data-dir",
      m.data_dir,
      "--listen-peer",
      peer_addr(i),
      "--listen-client",
      client_addr(i),
      "--initial-cluster",
      m.join_initial_cluster.empty() ? initial_cluster() : m.join_initial_cluster,
      "--cluster-token",
      options_.token,
      "--log-level",
      options_.log_level};
  if (!m.join_initial_cluster.empty()) {
    args.push_back("--initial-cluster-state");
    args.push_back("existing");
  }
  const std::string& secret = m.secret_file.empty() ? options_.secret_file : m.secret_file;
  if (!secret.empty()) {
    args.push_back("--secret-file");
    args.push_back(secret);
  }
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  args.insert(args.end(), m.extra_flags.begin(), m.extra_flags.end());
  return args;
}

Status ProcessCluster::start_all() {
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) KVC_RETURN_IF_ERROR(start(i));
  }
  return Status();
}

Status ProcessCluster::start(int i) {
  if (running(i)) return Status::failed_precondition(spec(i).name + " is already running");
  const std::vector<std::string> args = command_line(i);
  const std::string log = log_path(i);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::from_errno("fork", errno);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    if (!options_.env_preload.empty()) ::setenv("LD_PRELOAD", options_.env_preload.c_str(), 1);
    for (const std::string& kv : spec(i).env) {
      const std::size_t eq = kv.find('=');
      if (eq != std::string::npos) ::setenv(kv.substr(0, eq).c_str(), kv.c_str() + eq + 1, 1);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  pids_[static_cast<std::size_t>(i)] = pid;
  exit_status_[static_cast<std::size_t>(i)] = -1;
  return Status();
}

bool ProcessCluster::running(int i) const {
  const pid_t pid = pids_[static_cast<std::size_t>(i)];
  if (pid <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) {
    const_cast<ProcessCluster*>(this)->pids_[static_cast<std::size_t>(i)] = 0;
    exit_status_[static_cast<std::size_t>(i)] = decode_wait_status(status);
    return false;
  }
  return true;
}

Result<int> ProcessCluster::wait_exit(int i, std::uint64_t timeout_ms) const {
  if (!poll_until(timeout_ms, [&] { return !running(i); })) {
    return Status::timeout(spec(i).name + " still runs " + std::to_string(timeout_ms) + " ms on");
  }
  return exit_status_[static_cast<std::size_t>(i)];
}

RunResult ProcessCluster::ctl_run(const std::vector<std::string>& args, std::uint64_t timeout_ms,
                                  const std::string& input) const {
  std::string eps;
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    if (!eps.empty()) eps += ",";
    eps += client_addr(i);
  }
  std::vector<std::string> full = {binary_path("kvc-ctl"), "--endpoints", eps};
  full.insert(full.end(), args.begin(), args.end());
  return run_command(full, timeout_ms, input);
}

Status ProcessCluster::kill(int i, int sig) {
  const pid_t pid = pids_[static_cast<std::size_t>(i)];
  if (pid <= 0) return Status::failed_precondition(spec(i).name + " is not running");
  if (sig == SIGKILL || sig == SIGTERM) ::kill(pid, SIGCONT);
  if (::kill(pid, sig) != 0) return Status::from_errno("kill", errno);
  if (sig == SIGKILL || sig == SIGTERM) {
    int status = 0;
    const bool exited = poll_until(15000, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
    if (!exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      pids_[static_cast<std::size_t>(i)] = 0;
      exit_status_[static_cast<std::size_t>(i)] = decode_wait_status(status);
      return Status::timeout(spec(i).name + " did not exit within 15 s of signal " +
                             std::to_string(sig));
    }
    pids_[static_cast<std::size_t>(i)] = 0;
    exit_status_[static_cast<std::size_t>(i)] = decode_wait_status(status);
  }
  return Status();
}

Result<int> ProcessCluster::stop(int i) {
  const pid_t pid = pids_[static_cast<std::size_t>(i)];
  if (pid <= 0) return Status::failed_precondition(spec(i).name + " is not running");
  ::kill(pid, SIGCONT);
  ::kill(pid, SIGTERM);
  int status = 0;
  const bool exited = poll_until(15000, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
  pids_[static_cast<std::size_t>(i)] = 0;
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    exit_status_[static_cast<std::size_t>(i)] = decode_wait_status(status);
    return Status::timeout(spec(i).name + " did not stop within 15 s of SIGTERM");
  }
  exit_status_[static_cast<std::size_t>(i)] = decode_wait_status(status);
  return exit_status_[static_cast<std::size_t>(i)];
}

void ProcessCluster::stop_all() {
  for (int i = 0; i < size(); ++i) {
    if (running(i)) (void)stop(i);
  }
}

Status ProcessCluster::pause(int i) { return kill(i, SIGSTOP); }
Status ProcessCluster::resume(int i) { return kill(i, SIGCONT); }

std::unique_ptr<client::Client> ProcessCluster::client_for(int i, std::uint64_t timeout_ms) const {
  client::ClientOptions o;
  o.endpoints.push_back(*net::parse_address(client_addr(i)));
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 1000;
  o.secret_file = options_.secret_file;
  return std::move(*client::Client::open(std::move(o)));
}

std::unique_ptr<client::Client> ProcessCluster::client(std::uint64_t timeout_ms) const {
  client::ClientOptions o;
  o.endpoints = *net::parse_address_list(endpoints());
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 1000;
  o.secret_file = options_.secret_file;
  return std::move(*client::Client::open(std::move(o)));
}

int ProcessCluster::index_of_id(std::uint64_t id) const {
  for (int i = 0; i < size(); ++i) {
    if (ids_[static_cast<std::size_t>(i)] == 0) {
      auto c = client_for(i, 500);
      wire::Response r =
          c->call_sync({.op = wire::Op::kStatus}, {.target = *net::parse_address(client_addr(i))});
      if (r.code == Code::kOk) ids_[static_cast<std::size_t>(i)] = r.member_id;
    }
    if (ids_[static_cast<std::size_t>(i)] == id) return i;
  }
  return -1;
}

Result<int> ProcessCluster::wait_for_leader(std::uint64_t timeout_ms) const {
  int leader = -1;
  const bool ok = poll_until(timeout_ms, [&] {
    std::uint64_t agreed = 0;
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) continue;
      auto c = client_for(i, 300);
      wire::Response r =
          c->call_sync({.op = wire::Op::kStatus},
                       {.timeout_ms = 300, .target = *net::parse_address(client_addr(i))});
      if (r.code != Code::kOk || r.status.leader_id == 0) return false;
      ids_[static_cast<std::size_t>(i)] = r.member_id;
      if (agreed != 0 && agreed != r.status.leader_id) return false;
      agreed = r.status.leader_id;
    }
    leader = index_of_id(agreed);
    return leader >= 0 && running(leader);
  });
  if (!ok) return Status::timeout("no agreed leader within " + std::to_string(timeout_ms) + " ms");
  return leader;
}

Status ProcessCluster::wait_applied(int i, std::uint64_t index, std::uint64_t timeout_ms) const {
  std::uint64_t last = 0;
  const bool ok = poll_until(timeout_ms, [&] {
    auto c = client_for(i, 300);
    wire::Response r =
        c->call_sync({.op = wire::Op::kStatus},
                     {.timeout_ms = 300, .target = *net::parse_address(client_addr(i))});
    if (r.code != Code::kOk) return false;
    last = r.status.applied_index;
    return last >= index;
  });
  if (!ok) {
    return Status::timeout(spec(i).name + " applied only " + std::to_string(last) + " of " +
                           std::to_string(index));
  }
  return Status();
}

}  // namespace kvc::test
