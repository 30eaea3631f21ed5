// curl for the process tests of the HTTP port (http_test.cc, permissions_test.cc): runs curl
// with a bounded time and splits its answer into the status code and the body. Header-only.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace kvc::test {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command line that ends in curl's -w '\n@@%{http_code}' and splits its output.
inline HttpAnswer run_curl_line(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  HttpAnswer a;
  if (p == nullptr) return a;
  char buf[4096];
  std::string out;
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  const std::size_t at = out.rfind("\n@@");
  if (at == std::string::npos) return a;
  a.status = std::atoi(out.c_str() + at + 3);
  a.body = out.substr(0, at);
  return a;
}

// curl with a bounded time; the status code is appended by -w after a marker line.
inline HttpAnswer curl(const std::vector<std::string>& args) {
  std::string cmd = "curl -s --max-time 10 -w '\\n@@%{http_code}'";
  for (const std::string& a : args) cmd += " " + shell_quote(a);
  return run_curl_line(cmd);
}

inline std::string url(const std::string& http_addr, const std::string& path) {
  return "http://" + http_addr + path;
}

}  // namespace kvc::test
