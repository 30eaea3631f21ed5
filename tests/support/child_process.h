// Child processes for tests: run a command to completion with a bound (run_command), or start a
// long-lived one (a kvc-node member) and later signal and reap it by PID, bounded in time. The
// process and chaos cluster harnesses and the tests that run the tools share these, so there is
// one fork/exec, one reap loop and one reading of a wait status. Nothing here kills by name.
// Functions are thread-safe apart from what fork() demands (see spawn()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::test {

// What a command run by run_command() did.
struct RunResult {
  int status = -1;         // exit status; -1 when killed by a signal (or on timeout)
  bool timed_out = false;  // still running after the timeout: killed
  std::string out, err;    // stdout and stderr, apart
};
// Runs `args` (args[0] is the program's path) with `input` on stdin, and waits for it at most
// `timeout_ms`: a program that is still running then is killed (SIGKILL), so a test of a
// command that should stop by itself never hangs.
RunResult run_command(const std::vector<std::string>& args, std::uint64_t timeout_ms,
                      const std::string& input = "");

// This process's environment with `overrides` ("NAME=VALUE") replacing or adding variables.
std::vector<std::string> environment_with(const std::vector<std::string>& overrides);

struct SpawnOptions {
  std::vector<std::string> args;  // args[0] is the program's path
  std::vector<std::string> env;   // the child's whole environment ("NAME=VALUE")
  std::string output_path;        // stdout and stderr are appended here
  std::string banner;             // written to output_path first (when not empty)
  // The child gets SIGKILL when the thread that forked it ends (PR_SET_PDEATHSIG).
  bool die_with_parent = false;
  // Descriptors above stderr are closed in the child (no harness socket lives on in it).
  bool close_other_fds = false;
};
// Starts a child (fork and exec; the child does only async-signal-safe work before exec) and
// returns its PID; the caller reaps it (reap_within, kill_and_reap).
Result<pid_t> spawn(const SpawnOptions& options);

// Waits at most `timeout` for child `pid` to end; its wait status when it did (0 when it was
// already reaped elsewhere), nullopt when it still runs.
std::optional<int> reap_within(pid_t pid, std::chrono::milliseconds timeout);
// Resumes (SIGCONT), sends `sig` and waits at most `timeout`: the wait status, or kTimeout
// ("<name> did not exit within N ms of signal S"); the process may then still run.
Result<int> signal_and_reap(pid_t pid, int sig, std::chrono::milliseconds timeout,
                            const std::string& name);
// SIGCONT, SIGKILL and a blocking reap: for destructors and clean-up after a timeout.
void kill_and_reap(pid_t pid);

// A wait status as one number: the exit code, 128 + signal when a signal ended it, else -1.
int exit_code_of(int wait_status);
// "exited with status 1", "was killed by signal 9".
std::string describe_wait_status(int wait_status);

}  // namespace kvc::test
