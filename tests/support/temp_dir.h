// A fresh directory for one test, made with mkdtemp under $TMPDIR (or /tmp, or a parent the
// caller names) and removed with
// everything in it when the ScopedTempDir goes away, so no test uses a fixed name in /tmp that a
// parallel run or an earlier crash could hold. KVC_KEEP_TEST_DIRS=1 in the environment keeps it
// for a post-mortem. Not thread-safe (one owner).
#pragma once

#include <string>
#include <string_view>

namespace kvc::test {

class ScopedTempDir {
 public:
  // Creates PARENT/<prefix>-XXXXXX, PARENT being `parent` or, when that is empty, $TMPDIR or
  // /tmp; aborts the test binary (KVC_CHECK) when it cannot.
  explicit ScopedTempDir(std::string_view prefix = "kvc-test", std::string_view parent = "");
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name (nothing is created).
  std::string file(std::string_view name) const;
  // Leaves the directory in place on destruction (a failed test keeps its files to look at).
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

}  // namespace kvc::test
