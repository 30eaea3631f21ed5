#include "process_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "support/wait.h"

#ifndef KVC_BINARY_DIR
#error "KVC_BINARY_DIR must be defined by the build"
#endif

namespace kvc::test {
namespace {

constexpr std::chrono::milliseconds kStopTimeout{15000};

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

ProcessCluster::ProcessCluster(const std::string& test_name, ClusterOptions options)
    : options_(std::move(options)), dir_("kvc-test-" + test_name) {
  for (int i = 0; i < options_.members; ++i) (void)add_spec("m" + std::to_string(i + 1));
}

ProcessCluster::~ProcessCluster() {
  for (std::size_t i = 0; i < pids_.size(); ++i) {
    kill_and_reap(pids_[i]);
    pids_[i] = 0;
  }
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
  static_cast<NodeSlot&>(s) = make_node_slot(dir(), name);
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
std::string ProcessCluster::log_path(int i) const { return spec(i).log_path; }

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
  std::vector<std::string> extra = options_.extra_flags;
  extra.insert(extra.end(), m.extra_flags.begin(), m.extra_flags.end());
  return node_command_line(
      {.binary = m.binary.empty() ? binary_path("kvc-node")
                                  : std::string(KVC_BINARY_DIR) + "/cmd/kvc-node/" + m.binary,
       .name = m.name,
       .data_dir = m.data_dir,
       .listen_peer = peer_addr(i),
       .listen_client = client_addr(i),
       .initial_cluster =
           m.join_initial_cluster.empty() ? initial_cluster() : m.join_initial_cluster,
       .initial_cluster_state = m.join_initial_cluster.empty() ? "" : "existing",
       .token = options_.token,
       .log_level = options_.log_level,
       .secret_file = m.secret_file.empty() ? options_.secret_file : m.secret_file},
      extra);
}

Status ProcessCluster::start_all() {
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) KVC_RETURN_IF_ERROR(start(i));
  }
  return Status();
}

Status ProcessCluster::start(int i) {
  if (running(i)) return Status::failed_precondition(spec(i).name + " is already running");
  std::vector<std::string> env;
  if (!options_.env_preload.empty()) env.push_back("LD_PRELOAD=" + options_.env_preload);
  env.insert(env.end(), spec(i).env.begin(), spec(i).env.end());
  Result<pid_t> pid =
      spawn({.args = command_line(i), .env = environment_with(env), .output_path = log_path(i)});
  if (!pid.ok()) return pid.status();
  pids_[static_cast<std::size_t>(i)] = *pid;
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
    exit_status_[static_cast<std::size_t>(i)] = exit_code_of(status);
    return false;
  }
  return true;
}

Result<int> ProcessCluster::wait_exit(int i, std::uint64_t timeout_ms) const {
  if (!wait_until([&] { return !running(i); }, std::chrono::milliseconds(timeout_ms),
                  "the exit of " + spec(i).name)
           .ok()) {
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
  if (sig != SIGKILL && sig != SIGTERM) {
    if (::kill(pid, sig) != 0) return Status::from_errno("kill", errno);
    return Status();
  }
  return stop_with(i, sig).status();
}

Result<int> ProcessCluster::stop(int i) {
  if (pids_[static_cast<std::size_t>(i)] <= 0) {
    return Status::failed_precondition(spec(i).name + " is not running");
  }
  return stop_with(i, SIGTERM);
}

Result<int> ProcessCluster::stop_with(int i, int sig) {
  const auto at = static_cast<std::size_t>(i);
  const pid_t pid = pids_[at];
  Result<int> status = signal_and_reap(pid, sig, kStopTimeout, spec(i).name);
  pids_[at] = 0;
  if (!status.ok()) {
    int last = 0;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &last, 0);
    exit_status_[at] = exit_code_of(last);
    return status.status();
  }
  exit_status_[at] = exit_code_of(*status);
  return exit_status_[at];
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
  o.tls = options_.client_tls;
  return std::move(*client::Client::open(std::move(o)));
}

std::unique_ptr<client::Client> ProcessCluster::client(std::uint64_t timeout_ms) const {
  client::ClientOptions o;
  o.endpoints = *net::parse_address_list(endpoints());
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 1000;
  o.secret_file = options_.secret_file;
  o.tls = options_.client_tls;
  return std::move(*client::Client::open(std::move(o)));
}

wire::Response ProcessCluster::status(int i, std::uint64_t timeout_ms) const {
  auto c = client_for(i, timeout_ms);
  return c->call_sync({.op = wire::Op::kStatus},
                      {.timeout_ms = timeout_ms, .target = *net::parse_address(client_addr(i))});
}

int ProcessCluster::index_of_id(std::uint64_t id) const {
  for (int i = 0; i < size(); ++i) {
    if (ids_[static_cast<std::size_t>(i)] == 0) {
      const wire::Response r = status(i, 500);
      if (r.code == Code::kOk) ids_[static_cast<std::size_t>(i)] = r.member_id;
    }
    if (ids_[static_cast<std::size_t>(i)] == id) return i;
  }
  return -1;
}

Result<int> ProcessCluster::wait_for_leader(std::uint64_t timeout_ms) const {
  int leader = -1;
  const Status agreed_leader = wait_until(
      [&] {
        std::uint64_t agreed = 0;
        for (int i = 0; i < size(); ++i) {
          if (!running(i)) continue;
          const wire::Response r = status(i, 300);
          if (r.code != Code::kOk || r.status.leader_id == 0) return false;
          ids_[static_cast<std::size_t>(i)] = r.member_id;
          if (agreed != 0 && agreed != r.status.leader_id) return false;
          agreed = r.status.leader_id;
        }
        leader = index_of_id(agreed);
        return leader >= 0 && running(leader);
      },
      std::chrono::milliseconds(timeout_ms), "an agreed leader");
  if (!agreed_leader.ok())
    return Status::timeout("no agreed leader within " + std::to_string(timeout_ms) + " ms");
  return leader;
}

Status ProcessCluster::wait_applied(int i, std::uint64_t index, std::uint64_t timeout_ms) const {
  std::uint64_t last = 0;
  const Status reached = wait_until(
      [&] {
        const wire::Response r = status(i, 300);
        if (r.code != Code::kOk) return false;
        last = r.status.applied_index;
        return last >= index;
      },
      std::chrono::milliseconds(timeout_ms), spec(i).name + "'s applied index");
  if (!reached.ok()) {
    return Status::timeout(spec(i).name + " applied only " + std::to_string(last) + " of " +
                           std::to_string(index));
  }
  return Status();
}

}  // namespace kvc::test
