// Status and Result<T>: how every fallible libkvc function reports failure. The library throws
// no exceptions; a Status carries a code (which the binaries map to an exit code, see
// exit_code()) and a lowercase message that says what failed and where. Values, not shared
// state: thread-compatible like any value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "kvc/common/check.h"

namespace kvc {

enum class Code : std::uint8_t {
  kOk = 0,
  kInvalidArgument,     // the request or input is malformed; nothing was applied
  kNotFound,            // the key, file or member does not exist
  kAlreadyExists,       // it exists and must not
  kCompareFailed,       // a compare-and-set saw another revision; nothing was applied
  kFailedPrecondition,  // the system is not in a state that allows this (e.g. change in progress)
  kUnavailable,         // no quorum, no leader, connection refused; nothing was applied
  kNotLeader,           // this member is not the leader; the message may name the leader
  kTimeout,             // deadline passed after the request was sent: outcome unknown
  kShuttingDown,        // the member is stopping
  kResourceExhausted,   // a limit was hit: frame size, queue depth, disk full
  kCorruption,          // bytes on disk or on the wire failed a check
  kIOError,             // the operating system reported an I/O error
  kInternal,            // a bug in kvc
  kPermissionDenied,    // the identity may not do this (kvc-permissions(5)); nothing was applied
  kUnauthenticated,     // no identity, or credentials (a token) the member does not know
};

// The name of a code as used in logs and JSON ("not_found").
std::string_view code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status already_exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status compare_failed(std::string m) { return {Code::kCompareFailed, std::move(m)}; }
  static Status failed_precondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status not_leader(std::string m) { return {Code::kNotLeader, std::move(m)}; }
  static Status timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status shutting_down(std::string m) { return {Code::kShuttingDown, std::move(m)}; }
  static Status resource_exhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIOError, std::move(m)}; }
  // An I/O error from errno: "<what>: <strerror(err)>".
  static Status from_errno(std::string_view what, int err);
  static Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status permission_denied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok", or "<code name>: <message>".
  std::string to_string() const;
  // The same code with "<context>: " put before the message; ok stays ok.
  Status with_context(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status ok_status() { return Status(); }

// A T or the non-ok Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    KVC_CHECK(!std::get<Status>(v_).ok(), "a Result was made from an ok Status without a value");
  }

  bool ok() const { return v_.index() == 0; }
  // The error; an ok Status when there is a value.
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

  T& value() & {
    check_has_value();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check_has_value();
    return std::get<0>(v_);
  }
  T&& value() && {
    check_has_value();
    return std::get<0>(std::move(v_));
  }
  T value_or(T fallback) const& { return ok() ? std::get<0>(v_) : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check_has_value() const {
    if (!ok()) {
      ::kvc::check_failed(__FILE__, __LINE__, "result.ok()",
                          "value() of a failed Result: " + std::get<1>(v_).to_string());
    }
  }
  std::variant<T, Status> v_;
};

// Exit codes shared by every kvc binary (DESIGN.md). Offline tools add their own above 6.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;          // error, nothing applied
inline constexpr int kExitUsage = 2;          // bad command line
inline constexpr int kExitNotFound = 3;       // key, file or member not found
inline constexpr int kExitCompareFailed = 4;  // compare-and-set failed
inline constexpr int kExitUnavailable = 5;    // cluster unavailable, nothing applied
inline constexpr int kExitTimeout = 6;        // timed out, outcome unknown

// The one mapping from a Status to a process exit code.
int exit_code(const Status& status);

}  // namespace kvc

// Return early with the Status of `expr` when it is not ok.
#define KVC_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::kvc::Status kvc_status_ = (expr);        \
    if (!kvc_status_.ok()) return kvc_status_; \
  } while (0)
