// Always-on invariant checks. KVC_CHECK stays on in every build type: a broken invariant in a
// store that others trust with their state must stop the process, not corrupt data quietly.
// A failure prints "kvc: check failed at <file>:<line>: <cond>: <msg>" to stderr, runs the
// registered hook (logging flushes its sinks there) and aborts. Thread-safe.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace kvc {

[[noreturn]] void check_failed(const char* file, int line, std::string_view cond,
                               std::string_view msg);

// Called once, before abort, by a failing check. Set by logging setup to flush its sinks.
using CheckFailureHook = void (*)();
void set_check_failure_hook(CheckFailureHook hook);

namespace detail {
template <typename A, typename B>
[[noreturn]] void check_op_failed(const char* file, int line, const char* expr, const A& a,
                                  const B& b) {
  std::ostringstream os;
  os << "(" << a << " vs " << b << ")";
  check_failed(file, line, expr, os.str());
}
}  // namespace detail

}  // namespace kvc

#define KVC_CHECK(cond, msg)                                 \
  do {                                                       \
    if (!(cond)) [[unlikely]] {                              \
      ::kvc::check_failed(__FILE__, __LINE__, #cond, (msg)); \
    }                                                        \
  } while (0)

#define KVC_CHECK_OP_(a, op, b)                                                              \
  do {                                                                                       \
    const auto& kvc_a_ = (a);                                                                \
    const auto& kvc_b_ = (b);                                                                \
    if (!(kvc_a_ op kvc_b_)) [[unlikely]] {                                                  \
      ::kvc::detail::check_op_failed(__FILE__, __LINE__, #a " " #op " " #b, kvc_a_, kvc_b_); \
    }                                                                                        \
  } while (0)

#define KVC_CHECK_EQ(a, b) KVC_CHECK_OP_(a, ==, b)
#define KVC_CHECK_NE(a, b) KVC_CHECK_OP_(a, !=, b)
#define KVC_CHECK_LE(a, b) KVC_CHECK_OP_(a, <=, b)
#define KVC_CHECK_LT(a, b) KVC_CHECK_OP_(a, <, b)
#define KVC_CHECK_GE(a, b) KVC_CHECK_OP_(a, >=, b)
#define KVC_CHECK_GT(a, b) KVC_CHECK_OP_(a, >, b)
