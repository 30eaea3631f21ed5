#include "test_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>

#include "kvc/common/check.h"
#include "temp_dir.h"

namespace kvc::test {
namespace {

std::mutex mu;
std::unique_ptr<ScopedTempDir> current;  // guarded by mu; the running test's, or null

// Ends the running test's directory: removed if the test passed, kept if it failed.
class TestDirListener : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::lock_guard<std::mutex> lock(mu);
    if (current == nullptr) return;
    if (info.result()->Failed()) {
      current->keep();
      std::cerr << "files of the failed test kept in " << current->path() << "\n";
    }
    current.reset();
  }
};

}  // namespace

std::string test_dir() {
  std::lock_guard<std::mutex> lock(mu);
  if (current == nullptr) {
    static const bool installed = [] {
      // gtest owns the listeners it is given (hence the bare new).
      ::testing::UnitTest::GetInstance()->listeners().Append(new TestDirListener);
      return true;
    }();
    (void)installed;
    const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "kvc-test";
    if (t != nullptr) name += std::string("-") + t->test_suite_name() + "." + t->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    current = std::make_unique<ScopedTempDir>(name);
  }
  return current->path();
}

std::string fresh_dir(std::string_view name) {
  const std::string dir = test_dir() + "/" + std::string(name);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  KVC_CHECK(!ec, "cannot create " + dir + ": " + ec.message());
  return dir;
}

}  // namespace kvc::test
