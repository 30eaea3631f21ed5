#include "temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "kvc/common/check.h"

namespace kvc::test {

ScopedTempDir::ScopedTempDir(std::string_view prefix, std::string_view parent) {
  std::string under(parent);
  if (under.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    under = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  }
  const std::string pattern = under + "/" + std::string(prefix) + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  const char* made = ::mkdtemp(buf.data());
  KVC_CHECK(made != nullptr, "mkdtemp " + pattern + ": " + std::strerror(errno));
  path_ = made;
}

ScopedTempDir::~ScopedTempDir() {
  if (keep_ || std::getenv("KVC_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ScopedTempDir::file(std::string_view name) const {
  return path_ + "/" + std::string(name);
}

}  // namespace kvc::test
