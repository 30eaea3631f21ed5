#include "kvc/common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <string>

#include "kvc/common/check.h"
#include "kvc/common/text.h"

namespace kvc::metrics {
namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

// `a="x",b="y"` (no braces), escaped; the series' identity within its family.
std::string render_labels(const Labels& labels) {
  std::string out;
  for (const Label& l : labels) {
    if (!out.empty()) out += ',';
    out += l.name;
    out += "=\"";
    out += escape_label_value(l.value);
    out += '"';
  }
  return out;
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   std::string_view labels, std::string_view extra_label, std::string_view value) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra_label.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra_label.empty()) out += ',';
    out += extra_label;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  return backslash_escape(v, {.tab_cr = false, .hex_controls = false});
}

std::string escape_help(std::string_view v) {
  return backslash_escape(v, {.quote = false, .tab_cr = false, .hex_controls = false});
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  KVC_CHECK(r.ec == std::errc(), "formatting a double cannot overflow 64 bytes");
  return std::string(buf, r.ptr);
}

// ---------------------------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    KVC_CHECK(std::isfinite(bounds_[i]), "histogram bounds must be finite");
    KVC_CHECK(i == 0 || bounds_[i - 1] < bounds_[i], "histogram bounds must increase strictly");
  }
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  const std::size_t i = static_cast<std::size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Registry

struct Registry::Series {
  Labels labels;
  std::string rendered;  // render_labels(labels)
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
};

struct Registry::Family {
  std::string name;
  std::string help;
  Type type = Type::kCounter;
  std::vector<double> bounds;  // histograms
  // Invariant: every series has the family's type (exactly its pointer of that type is set)
  // and a distinct `rendered` label set.
  std::vector<std::unique_ptr<Series>> series;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Series& Registry::series(std::string_view name, std::string_view help, Type type,
                                   std::span<const double> bounds, const Labels& labels) {
  KVC_CHECK(valid_metric_name(name), "bad metric name: " + std::string(name));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    KVC_CHECK(valid_label_name(labels[i].name),
              "bad label name '" + labels[i].name + "' on " + std::string(name));
    KVC_CHECK(type != Type::kHistogram || labels[i].name != "le",
              "'le' is reserved on histogram " + std::string(name));
    for (std::size_t j = 0; j < i; ++j) {
      KVC_CHECK(labels[j].name != labels[i].name,
                "label '" + labels[i].name + "' repeated on " + std::string(name));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Family* f = nullptr;
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    f = it->second;
    KVC_CHECK(f->type == type, "metric " + std::string(name) + " registered with two types");
    KVC_CHECK(std::equal(f->bounds.begin(), f->bounds.end(), bounds.begin(), bounds.end()),
              "histogram " + std::string(name) + " registered with two bucket layouts");
  } else {
    auto fam = std::make_unique<Family>();
    fam->name = std::string(name);
    fam->help = std::string(help);
    fam->type = type;
    fam->bounds.assign(bounds.begin(), bounds.end());
    f = fam.get();
    families_.push_back(std::move(fam));
    by_name_.emplace(f->name, f);
  }
  const std::string rendered = render_labels(labels);
  for (const auto& s : f->series) {
    if (s->rendered == rendered) return *s;
  }
  auto s = std::make_unique<Series>();
  s->labels = labels;
  s->rendered = rendered;
  switch (type) {
    case Type::kCounter:
      s->counter = std::make_unique<Counter>();
      break;
    case Type::kGauge:
      s->gauge = std::make_unique<Gauge>();
      break;
    case Type::kHistogram:
      s->histogram = std::make_unique<Histogram>(bounds);
      break;
  }
  f->series.push_back(std::move(s));
  return *f->series.back();
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, Type::kCounter, {}, labels).counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, Type::kGauge, {}, labels).gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::span<const double> bounds, const Labels& labels) {
  return *series(name, help, Type::kHistogram, bounds, labels).histogram;
}

void Registry::add_collector(std::function<void()> collect) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::expose() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c();

  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& f : families_) {
    out += "# HELP ";
    out += f->name;
    out += ' ';
    out += escape_help(f->help);
    out += "\n# TYPE ";
    out += f->name;
    switch (f->type) {
      case Type::kCounter:
        out += " counter\n";
        break;
      case Type::kGauge:
        out += " gauge\n";
        break;
      case Type::kHistogram:
        out += " histogram\n";
        break;
    }
    for (const auto& s : f->series) {
      switch (f->type) {
        case Type::kCounter:
          append_sample(out, f->name, "", s->rendered, "", std::to_string(s->counter->value()));
          break;
        case Type::kGauge:
          append_sample(out, f->name, "", s->rendered, "", format_value(s->gauge->value()));
          break;
        case Type::kHistogram: {
          const Histogram::Snapshot snap = s->histogram->snapshot();
          for (std::size_t i = 0; i < snap.cumulative.size(); ++i) {
            const std::string le =
                i < f->bounds.size() ? format_value(f->bounds[i]) : std::string("+Inf");
            append_sample(out, f->name, "_bucket", s->rendered, "le=\"" + le + "\"",
                          std::to_string(snap.cumulative[i]));
          }
          append_sample(out, f->name, "_sum", s->rendered, "", format_value(snap.sum));
          append_sample(out, f->name, "_count", s->rendered, "", std::to_string(snap.count));
          break;
        }
      }
    }
  }
  return out;
}

std::optional<std::uint64_t> storage_bytes_written(bool thread) {
  std::ifstream in(thread ? "/proc/thread-self/io" : "/proc/self/io");
  std::string name;
  std::uint64_t value = 0;
  while (in >> name >> value) {
    if (name == "write_bytes:") return value;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> anonymous_memory_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8)) * 1024;  // "... kB"
  }
  return std::nullopt;
}

}  // namespace kvc::metrics
