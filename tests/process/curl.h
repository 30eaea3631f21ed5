// curl for the process tests of the HTTP port (http_test.cc, permissions_test.cc, tls_test.cc):
// runs curl with a bounded time and splits its answer into the status code and the body. A
// missing curl is a failure, not a skip: scripts/install-deps installs it. Header-only.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.h"

namespace kvc::test {

struct HttpAnswer {
  int exit_status = -1;  // curl's (0: it got an answer; 60: the server's certificate untrusted)
  int status = 0;        // the HTTP status; 0 when curl got none
  std::string body;
  std::string err;  // curl's diagnostics (-sS)
};

// curl's path (run_command takes one), or empty when it is not on the PATH.
inline std::string curl_path() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    const std::string candidate = d + "/curl";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// Splits curl's output, which ends in -w '\n@@%{http_code}', into the status and the body.
inline void split_curl_output(const std::string& out, HttpAnswer& a) {
  const std::size_t at = out.rfind("\n@@");
  if (at == std::string::npos) return;
  a.status = std::atoi(out.c_str() + at + 3);
  a.body = out.substr(0, at);
}

// Runs a shell command line that ends in curl's -w '\n@@%{http_code}' (the documentation's
// examples, as a user would paste them) and splits its output.
inline HttpAnswer run_curl_line(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  HttpAnswer a;
  if (p == nullptr) return a;
  char buf[4096];
  std::string out;
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  a.exit_status = ::pclose(p);
  split_curl_output(out, a);
  return a;
}

// curl with `args` (no shell), bounded in time, never through a proxy.
inline HttpAnswer curl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {curl_path(),  "-sS", "--noproxy", "*",
                                   "--max-time", "10",  "-w",        "\n@@%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r = run_command(argv, 20'000);
  HttpAnswer a;
  a.exit_status = r.status;
  a.err = r.err;
  split_curl_output(r.out, a);
  return a;
}

inline std::string url(const std::string& http_addr, const std::string& path) {
  return "http://" + http_addr + path;
}

}  // namespace kvc::test
