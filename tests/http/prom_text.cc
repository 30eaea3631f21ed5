#include "prom_text.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>

namespace kvc::http::testing {
namespace {

bool is_name_start(char c, bool colon_ok) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
}
bool is_name_char(char c, bool colon_ok) {
  return is_name_start(c, colon_ok) || (c >= '0' && c <= '9');
}

// Reads a name at `pos`; empty when there is none.
std::string_view read_name(std::string_view line, std::size_t* pos, bool colon_ok) {
  const std::size_t start = *pos;
  if (*pos >= line.size() || !is_name_start(line[*pos], colon_ok)) return {};
  while (*pos < line.size() && is_name_char(line[*pos], colon_ok)) ++*pos;
  return line.substr(start, *pos - start);
}

// Go's strconv.ParseFloat as Prometheus uses it, restricted to what exporters write: decimal
// and exponent forms, "+Inf", "-Inf", "Inf", "NaN".
bool parse_float(std::string_view s, double* out) {
  if (s == "+Inf" || s == "Inf") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (s == "-Inf") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (s == "NaN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (s.empty()) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return false;
    }
  }
  const std::string copy(s);
  char* end = nullptr;
  *out = std::strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size();
}

Status bad(std::size_t line_no, std::string_view what) {
  return Status::invalid_argument("prometheus text line " + std::to_string(line_no) + ": " +
                                  std::string(what));
}

// The family a sample belongs to, given the families typed so far.
std::string family_of(const std::string& sample, const std::map<std::string, PromFamily>& fams) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string_view sv(suffix);
    if (sample.size() > sv.size() && sample.ends_with(sv)) {
      const std::string base = sample.substr(0, sample.size() - sv.size());
      auto it = fams.find(base);
      if (it != fams.end() &&
          (it->second.type == "histogram" || (it->second.type == "summary" && sv != "_bucket"))) {
        return base;
      }
    }
  }
  return sample;
}

Status check_histogram(const PromFamily& f) {
  // Group by the labels other than `le`.
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // le, count, in order of appearance
    bool has_sum = false;
    bool has_count = false;
    double count = 0;
  };
  std::map<std::map<std::string, std::string>, Series> series;
  for (const PromSample& s : f.samples) {
    std::map<std::string, std::string> key = s.labels;
    if (s.name == f.name + "_bucket") {
      auto le = key.find("le");
      if (le == key.end()) return Status::invalid_argument(f.name + ": bucket without le");
      double bound = 0;
      if (!parse_float(le->second, &bound) || std::isnan(bound)) {
        return Status::invalid_argument(f.name + ": le '" + le->second + "' is not a number");
      }
      key.erase(le);
      series[key].buckets.emplace_back(bound, s.value);
    } else if (s.name == f.name + "_sum") {
      series[key].has_sum = true;
    } else if (s.name == f.name + "_count") {
      series[key].has_count = true;
      series[key].count = s.value;
    } else {
      return Status::invalid_argument(f.name + ": unexpected sample " + s.name);
    }
  }
  for (const auto& [labels, s] : series) {
    if (s.buckets.empty()) return Status::invalid_argument(f.name + ": no buckets");
    for (std::size_t i = 1; i < s.buckets.size(); ++i) {
      if (!(s.buckets[i - 1].first < s.buckets[i].first)) {
        return Status::invalid_argument(f.name + ": bucket bounds not increasing");
      }
      if (s.buckets[i].second < s.buckets[i - 1].second) {
        return Status::invalid_argument(f.name + ": bucket counts not cumulative");
      }
    }
    if (!std::isinf(s.buckets.back().first) || s.buckets.back().first < 0) {
      return Status::invalid_argument(f.name + ": no +Inf bucket");
    }
    if (!s.has_sum || !s.has_count) {
      return Status::invalid_argument(f.name + ": missing _sum or _count");
    }
    if (s.count != s.buckets.back().second) {
      return Status::invalid_argument(f.name + ": _count differs from the +Inf bucket");
    }
  }
  return Status();
}

}  // namespace

double PromFamily::value(std::string_view sample_name,
                         const std::map<std::string, std::string>& labels) const {
  for (const PromSample& s : samples) {
    if (s.name == sample_name && s.labels == labels) return s.value;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

Result<std::map<std::string, PromFamily>> parse_prometheus_text(std::string_view text) {
  std::map<std::string, PromFamily> fams;
  std::set<std::string> closed;  // families whose samples ended (another family came after)
  std::set<std::string> typed, helped;
  std::set<std::string> series_seen;
  std::string current;  // family of the last sample
  if (!text.empty() && !text.ends_with('\n')) {
    return Status::invalid_argument("prometheus text does not end with a newline");
  }
  std::size_t line_no = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t nl = text.find('\n', start);
    const std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    ++line_no;
    if (line.empty()) continue;
    if (line.starts_with('#')) {
      std::size_t pos = 1;
      while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
      const bool help = line.substr(pos).starts_with("HELP ");
      const bool type = line.substr(pos).starts_with("TYPE ");
      if (!help && !type) continue;  // a plain comment
      pos += 5;
      while (pos < line.size() && line[pos] == ' ') ++pos;
      const std::string name(read_name(line, &pos, true));
      if (name.empty()) return bad(line_no, "HELP/TYPE without a metric name");
      if (help) {
        if (!helped.insert(name).second) return bad(line_no, "second HELP for " + name);
        std::string doc;
        if (pos < line.size()) {
          if (line[pos] != ' ') return bad(line_no, "junk after the metric name");
          ++pos;
        }
        for (; pos < line.size(); ++pos) {
          if (line[pos] != '\\') {
            doc += line[pos];
            continue;
          }
          if (++pos >= line.size()) return bad(line_no, "HELP ends in a backslash");
          if (line[pos] == '\\') {
            doc += '\\';
          } else if (line[pos] == 'n') {
            doc += '\n';
          } else {
            return bad(line_no, "bad escape in HELP");
          }
        }
        fams[name].name = name;
        fams[name].help = doc;
      } else {
        if (!typed.insert(name).second) return bad(line_no, "second TYPE for " + name);
        if (fams.count(name) != 0 && !fams[name].samples.empty()) {
          return bad(line_no, "TYPE for " + name + " after its samples");
        }
        if (pos >= line.size() || line[pos] != ' ') return bad(line_no, "TYPE without a type");
        const std::string_view t = line.substr(pos + 1);
        if (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" &&
            t != "untyped") {
          return bad(line_no, "unknown type '" + std::string(t) + "'");
        }
        fams[name].name = name;
        fams[name].type = std::string(t);
      }
      continue;
    }
    // A sample.
    std::size_t pos = 0;
    PromSample s;
    s.name = std::string(read_name(line, &pos, true));
    if (s.name.empty()) return bad(line_no, "a sample must start with a metric name");
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      for (;;) {
        if (pos < line.size() && line[pos] == '}') {
          ++pos;
          break;
        }
        const std::string label(read_name(line, &pos, false));
        if (label.empty()) return bad(line_no, "bad label name");
        if (pos + 1 >= line.size() || line[pos] != '=' || line[pos + 1] != '"') {
          return bad(line_no, "expected =\" after label " + label);
        }
        pos += 2;
        std::string v;
        for (;;) {
          if (pos >= line.size()) return bad(line_no, "unterminated label value");
          const char c = line[pos++];
          if (c == '"') break;
          if (c != '\\') {
            v += c;
            continue;
          }
          if (pos >= line.size()) return bad(line_no, "unterminated escape");
          const char e = line[pos++];
          if (e == '\\') {
            v += '\\';
          } else if (e == '"') {
            v += '"';
          } else if (e == 'n') {
            v += '\n';
          } else {
            return bad(line_no, "bad escape in a label value");
          }
        }
        if (!s.labels.emplace(label, v).second) return bad(line_no, "label repeated: " + label);
        if (pos < line.size() && line[pos] == ',') {
          ++pos;
          continue;
        }
        if (pos < line.size() && line[pos] == '}') continue;
        return bad(line_no, "expected , or } in labels");
      }
    }
    if (pos >= line.size() || (line[pos] != ' ' && line[pos] != '\t')) {
      return bad(line_no, "expected a space before the value");
    }
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    const std::size_t vend = line.find_first_of(" \t", pos);
    if (!parse_float(line.substr(pos, vend - pos), &s.value)) {
      return bad(line_no, "bad value '" + std::string(line.substr(pos, vend - pos)) + "'");
    }
    if (vend != std::string_view::npos) {
      std::string_view ts = line.substr(vend);
      while (!ts.empty() && (ts.front() == ' ' || ts.front() == '\t')) ts.remove_prefix(1);
      if (!ts.empty()) {
        const std::size_t digits_from = ts.front() == '-' ? 1 : 0;
        if (ts.size() == digits_from) return bad(line_no, "bad timestamp");
        for (std::size_t i = digits_from; i < ts.size(); ++i) {
          if (ts[i] < '0' || ts[i] > '9') return bad(line_no, "bad timestamp");
        }
      }
    }
    const std::string fam = family_of(s.name, fams);
    if (fam != current) {
      if (closed.count(fam) != 0) return bad(line_no, "samples of " + fam + " are not grouped");
      if (!current.empty()) closed.insert(current);
      current = fam;
    }
    std::string series_key = s.name + "{";
    for (const auto& [k, v] : s.labels) series_key += k + "=\"" + v + "\",";
    if (!series_seen.insert(series_key).second) return bad(line_no, "duplicate series " + s.name);
    PromFamily& f = fams[fam];
    f.name = fam;
    if (f.type == "counter" && !(s.value >= 0)) return bad(line_no, "negative counter");
    f.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : fams) {
    if (f.type == "histogram") KVC_RETURN_IF_ERROR(check_histogram(f));
  }
  return fams;
}

}  // namespace kvc::http::testing
