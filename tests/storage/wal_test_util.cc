#include "wal_test_util.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "kvc/storage/wal_reader.h"
#include "support/test_dir.h"

extern char** environ;

namespace kvc::storage::wal_test {

std::string fresh_dir(const std::string& name) { return test::fresh_dir(name); }

std::string fresh_tmpfs_dir(const std::string& name) {
  std::error_code ec;
  if (!std::filesystem::is_directory("/dev/shm", ec)) return fresh_dir(name);
  const std::string dir = "/dev/shm/kvc_wal_test_" + std::to_string(::getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void copy_dir(const std::string& from, const std::string& to) {
  std::filesystem::remove_all(to);
  std::filesystem::create_directories(to);
  for (const auto& e : std::filesystem::directory_iterator(from)) {
    if (e.is_regular_file()) std::filesystem::copy_file(e.path(), to / e.path().filename());
  }
}

std::vector<std::string> segment_paths(const std::string& wal_dir) {
  Result<WalListing> l = list_wal_dir(wal_dir);
  std::vector<std::string> out;
  if (!l.ok()) return out;
  for (const SegmentFile& f : l->segments) out.push_back(f.path);
  return out;
}

void write_log(const std::string& dir, std::uint64_t first, std::uint64_t last, std::size_t batch,
               std::uint64_t segment_bytes) {
  Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = segment_bytes});
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  for (std::uint64_t i = first; i <= last; i += batch) {
    const std::uint64_t to = std::min<std::uint64_t>(last, i + batch - 1);
    const std::vector<raft::Entry> es = expected_entries(i, to);
    ASSERT_TRUE(w->wal.append(std::nullopt, es).ok());
    ASSERT_TRUE(w->wal.sync().ok());
  }
}

ProcessResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          const std::string& input) {
  ProcessResult r;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe(in_pipe) != 0 || ::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) return r;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      ::close(fd);
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    for (const std::string& kv : env) {
      const std::string key = kv.substr(0, kv.find('=') + 1);
      std::erase_if(env_strings, [&](const std::string& s) { return s.rfind(key, 0) == 0; });
      env_strings.push_back(kv);
    }
    std::vector<char*> envp, args;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    for (std::string& s : argv_copy) args.push_back(s.data());
    args.push_back(nullptr);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (!input.empty()) {
    [[maybe_unused]] ssize_t n = ::write(in_pipe[1], input.data(), input.size());
  }
  ::close(in_pipe[1]);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (::poll(fds, 2, 60000) <= 0) {  // bounded: a hung child is killed and fails the test
      ::kill(pid, SIGKILL);
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

std::string asan_options_for_preload() {
  const char* existing = std::getenv("ASAN_OPTIONS");
  std::string v = "ASAN_OPTIONS=verify_asan_link_order=0";
  if (existing != nullptr && *existing != '\0') v += std::string(":") + existing;
  return v;
}

}  // namespace kvc::storage::wal_test
