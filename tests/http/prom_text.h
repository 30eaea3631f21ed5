// A validating parser of the Prometheus text exposition format (version 0.0.4), written for the
// tests from the format's specification, independently of metrics::Registry, so that the
// registry's output (and GET /metrics) is checked against the format rather than against itself.
// Beyond syntax it checks what a Prometheus server relies on: HELP/TYPE at most once per family
// and TYPE before the family's samples, a family's samples contiguous, no duplicate series, no
// duplicate label names, counters non-negative, and for histograms a numeric `le` on every
// bucket, bounds increasing, counts cumulative, a +Inf bucket equal to _count, and a _sum.
// Test-only; pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::http::testing {

struct PromSample {
  std::string name;  // as written: "x_bucket"
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromFamily {
  std::string name;
  std::string type = "untyped";
  std::string help;
  std::vector<PromSample> samples;

  // The value of the sample with this name and exactly these labels; NaN when absent.
  double value(std::string_view sample_name,
               const std::map<std::string, std::string>& labels = {}) const;
};

Result<std::map<std::string, PromFamily>> parse_prometheus_text(std::string_view text);

}  // namespace kvc::http::testing
