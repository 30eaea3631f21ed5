// A directory for the running GoogleTest test, for unit tests that write files: made with
// mkdtemp (a ScopedTempDir named after the test) on first use, removed when the test ends if it
// passed, and kept (its path printed to stderr) when it failed. No test then writes to a fixed
// name in /tmp, where a parallel run or an earlier crash could hold it. Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace kvc::test {

// The running test's directory (the same one for every call during the test).
std::string test_dir();
// test_dir() + "/" + name, created empty (emptied first if an earlier call made it).
std::string fresh_dir(std::string_view name);

}  // namespace kvc::test
