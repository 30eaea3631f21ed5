// Formats a kvc-bench result for people (aligned text) or machines (one JSON object, snake_case
// keys; fields are added, never renamed). Pure functions; thread-compatible.
#pragma once

#include <string>

#include "runner.h"

namespace kvc::bench {

std::string format_text(const BenchOptions& options, const BenchResult& result);
std::string format_json(const BenchOptions& options, const BenchResult& result);

// "[=====     ]  45%  4500/10000  8123 ops/s" (or elapsed/duration with --duration), for a
// terminal's progress line.
std::string progress_line(const BenchOptions& options, std::uint64_t done, double elapsed_s);

}  // namespace kvc::bench
