#include "child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "temp_dir.h"
#include "wait.h"

extern char** environ;

namespace kvc::test {

RunResult run_command(const std::vector<std::string>& args, std::uint64_t timeout_ms,
                      const std::string& input) {
  RunResult r;
  const ScopedTempDir dir("kvc-run");
  const std::string in_path = dir.file("in"), out_path = dir.file("out"),
                    err_path = dir.file("err");
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
  if (std::optional<int> st = reap_within(pid, std::chrono::milliseconds(timeout_ms))) {
    status = *st;
  } else {
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
  return r;
}

std::vector<std::string> environment_with(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& kv : overrides) {
    const std::string name = kv.substr(0, kv.find('=') + 1);  // "NAME="
    std::erase_if(env, [&](const std::string& have) { return have.rfind(name, 0) == 0; });
    env.push_back(kv);
  }
  return env;
}

Result<pid_t> spawn(const SpawnOptions& o) {
  if (o.args.empty()) return Status::invalid_argument("spawn: no program");
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  for (const std::string& a : o.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return Status::from_errno("fork", errno);
  if (pid == 0) {
    if (o.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    ::signal(SIGPIPE, SIG_DFL);  // a harness may ignore it; the child gets the default back
    const int fd = ::open(o.output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      if (!o.banner.empty()) (void)!::write(fd, o.banner.data(), o.banner.size());
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      if (fd > STDERR_FILENO) ::close(fd);
    }
    if (o.close_other_fds && ::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
      for (int f = 3; f < 4096; ++f) ::close(f);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

std::optional<int> reap_within(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  const Status done = wait_until(
      [&] {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        return r == pid || (r < 0 && errno == ECHILD);
      },
      timeout, "the exit of pid " + std::to_string(pid), std::chrono::milliseconds(5));
  if (!done.ok()) return std::nullopt;
  return status;
}

Result<int> signal_and_reap(pid_t pid, int sig, std::chrono::milliseconds timeout,
                            const std::string& name) {
  ::kill(pid, SIGCONT);
  if (sig != SIGCONT && ::kill(pid, sig) != 0) {
    return Status::from_errno("signal " + std::to_string(sig) + " to " + name, errno);
  }
  if (std::optional<int> status = reap_within(pid, timeout)) return *status;
  return Status::timeout(name + " (pid " + std::to_string(pid) + ") did not exit within " +
                         std::to_string(timeout.count()) + " ms of signal " + std::to_string(sig));
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGCONT);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

}  // namespace kvc::test
