#include "kvc/common/status.h"

#include <cerrno>
#include <cstring>

namespace kvc {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kAlreadyExists:
      return "already_exists";
    case Code::kCompareFailed:
      return "compare_failed";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kNotLeader:
      return "not_leader";
    case Code::kTimeout:
      return "timeout";
    case Code::kShuttingDown:
      return "shutting_down";
    case Code::kResourceExhausted:
      return "resource_exhausted";
    case Code::kCorruption:
      return "corruption";
    case Code::kIOError:
      return "io_error";
    case Code::kInternal:
      return "internal";
    case Code::kPermissionDenied:
      return "permission_denied";
    case Code::kUnauthenticated:
      return "unauthenticated";
  }
  return "unknown";
}

Status Status::from_errno(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return resource_exhausted(std::move(m));
  return io_error(std::move(m));
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string s(code_name(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  if (!message_.empty()) {
    m += ": ";
    m += message_;
  }
  return {code_, std::move(m)};
}

int exit_code(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kNotFound:
      return kExitNotFound;
    case Code::kCompareFailed:
      return kExitCompareFailed;
    case Code::kUnavailable:
    case Code::kNotLeader:
    case Code::kShuttingDown:
      return kExitUnavailable;
    case Code::kTimeout:
      return kExitTimeout;
    default:
      return kExitError;
  }
}

}  // namespace kvc
