#include "wait.h"

#include <string>
#include <thread>

namespace kvc::test {

Status wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                  std::string_view what, std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return Status();
    std::this_thread::sleep_for(every);
  }
  if (done()) return Status();
  return Status::timeout("timed out after " + std::to_string(timeout.count()) + " ms waiting for " +
                         std::string(what));
}

}  // namespace kvc::test
