#include "kvc/common/check.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kvc {
namespace {

std::atomic<CheckFailureHook> g_hook{nullptr};

// __FILE__ is an absolute path in most builds; print it from the project's top folder on.
const char* project_relative(const char* file) {
  const char* best = nullptr;
  for (const char* top : {"/lib/kvc/", "/cmd/", "/tests/", "/bench/", "/examples/"}) {
    if (const char* p = std::strstr(file, top); p != nullptr && (best == nullptr || p < best)) {
      best = p;
    }
  }
  return best != nullptr ? best + 1 : file;
}

}  // namespace

void set_check_failure_hook(CheckFailureHook hook) { g_hook.store(hook); }

void check_failed(const char* file, int line, std::string_view cond, std::string_view msg) {
  std::fprintf(stderr, "kvc: check failed at %s:%d: %.*s: %.*s\n", project_relative(file), line,
               static_cast<int>(cond.size()), cond.data(), static_cast<int>(msg.size()),
               msg.data());
  std::fflush(stderr);
  // Only the first failing thread runs the hook; a second failure while flushing just aborts.
  if (CheckFailureHook hook = g_hook.exchange(nullptr); hook != nullptr) hook();
  std::abort();
}

}  // namespace kvc
