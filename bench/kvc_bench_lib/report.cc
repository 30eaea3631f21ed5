#include "report.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>

#include "kvc/common/json.h"

namespace kvc::bench {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string ms(std::uint64_t micros) { return fmt("%.3f", static_cast<double>(micros) / 1000.0); }

std::string latency_json(const Histogram& h) {
  std::string o = "{\"count\":" + std::to_string(h.count());
  o += ",\"min\":" + ms(h.min());
  o += ",\"mean\":" + fmt("%.3f", h.mean() / 1000.0);
  o += ",\"p50\":" + ms(h.percentile(0.50));
  o += ",\"p90\":" + ms(h.percentile(0.90));
  o += ",\"p99\":" + ms(h.percentile(0.99));
  o += ",\"p999\":" + ms(h.percentile(0.999));
  o += ",\"max\":" + ms(h.max()) + "}";
  return o;
}

std::string latency_text(const Histogram& h) {
  return "min " + ms(h.min()) + "  p50 " + ms(h.percentile(0.50)) + "  p90 " +
         ms(h.percentile(0.90)) + "  p99 " + ms(h.percentile(0.99)) + "  p99.9 " +
         ms(h.percentile(0.999)) + "  max " + ms(h.max());
}

std::string idle_json(const IdleSummary& i) {
  std::string o = "{\"requested\":" + std::to_string(i.requested);
  o += ",\"opened\":" + std::to_string(i.opened);
  o += ",\"refused\":" + std::to_string(i.refused);
  o += ",\"failed\":" + std::to_string(i.failed);
  o += ",\"not_tried\":" + std::to_string(i.not_tried);
  o += ",\"open_at_end\":" + std::to_string(i.open_at_end);
  o += ",\"open_s\":" + fmt("%.3f", i.open_s);
  o += ",\"per_endpoint\":[";
  for (std::size_t k = 0; k < i.per_endpoint.size(); ++k) {
    if (k > 0) o += ",";
    o += std::to_string(i.per_endpoint[k]);
  }
  o += "],\"first_error\":" + json_quote(i.first_error) + "}";
  return o;
}

std::string mode(const BenchOptions& o) {
  if (o.rate > 0) return "open loop at " + fmt("%.0f", o.rate) + "/s";
  return "closed loop";
}

}  // namespace

std::string format_text(const BenchOptions& o, const BenchResult& r) {
  std::string s;
  s += "workload:    " + r.workload + " (" + mode(o) + ", " + std::to_string(o.clients) +
       " clients, " + std::to_string(o.conns) + " conns per member";
  if (!r.leader.empty()) s += ", leader " + r.leader;
  s += ")\n";
  if (o.workload == Workload::kWatch) {
    s += "puts:        " + std::to_string(r.put_latency.count()) + " ok\n";
    s += "events:      " + std::to_string(r.ok) + " delivered to " + std::to_string(o.watchers) +
         " watchers, " + std::to_string(r.error_count()) + " errors, " + fmt("%.3f", r.elapsed_s) +
         " s\n";
    s += "throughput:  " + fmt("%.1f", r.throughput()) + " events/s\n";
    s += "delivery ms: " + latency_text(r.latency) + "\n";
    s += "put ms:      " + latency_text(r.put_latency) + "\n";
  } else if (o.workload == Workload::kLeaseExpiry) {
    s += "leases:      " + std::to_string(r.issued) + " granted with a " +
         std::to_string(o.lease_ttl_s) + " s ttl, " + std::to_string(r.ok) + " expired, " +
         std::to_string(r.error_count()) + " errors, " + fmt("%.3f", r.elapsed_s) + " s\n";
    s += "expiry ms:   " + latency_text(r.latency) + " (ttl end to the key's delete event)\n";
  } else {
    s += "operations:  " + std::to_string(r.ok) + " ok, " + std::to_string(r.error_count()) +
         " errors, " + fmt("%.3f", r.elapsed_s) + " s\n";
    if (o.workload == Workload::kMixed) {
      s += "mix:         " + std::to_string(r.reads) + " gets, " + std::to_string(r.writes) +
           " puts\n";
    }
    s += "throughput:  " + fmt("%.1f", r.throughput()) + " ops/s\n";
    s += "latency ms:  " + latency_text(r.latency) + "\n";
  }
  if (o.idle_conns > 0) {
    const IdleSummary& i = r.idle;
    s += "idle conns:  " + std::to_string(i.opened) + " of " + std::to_string(i.requested) +
         " open (" + std::to_string(i.refused) + " refused, " + std::to_string(i.failed) +
         " failed, " + std::to_string(i.not_tried) + " not tried) in " + fmt("%.3f", i.open_s) +
         " s; " + std::to_string(i.open_at_end) + " still open at the end\n";
    if (!i.first_error.empty()) s += "idle error:  " + i.first_error + "\n";
  }
  if (!r.errors.empty()) {
    s += "errors:     ";
    for (const auto& [kind, n] : r.errors) s += " " + kind + " " + std::to_string(n);
    s += "\n";
    if (!r.first_error.empty()) s += "first error: " + r.first_error + "\n";
  }
  return s;
}

std::string format_json(const BenchOptions& o, const BenchResult& r) {
  std::string s = "{\"workload\":";
  s += json_quote(r.workload);
  s += ",\"mode\":";
  s += json_quote(o.rate > 0 ? "open" : "closed");
  s += ",\"clients\":" + std::to_string(o.clients);
  s += ",\"conns\":" + std::to_string(o.conns);
  s += ",\"rate\":" + fmt("%.3f", o.rate);
  s += ",\"key_size\":" + std::to_string(o.key_size);
  s += ",\"val_size\":" + std::to_string(o.val_size);
  s += ",\"key_space_size\":" + std::to_string(o.key_space_size);
  s += ",\"serializable\":" + std::string(o.serializable ? "true" : "false");
  s += ",\"leader\":";
  s += json_quote(r.leader);
  s += ",\"issued\":" + std::to_string(r.issued);
  s += ",\"ok\":" + std::to_string(r.ok);
  s += ",\"error_count\":" + std::to_string(r.error_count());
  s += ",\"errors\":{";
  bool first = true;
  for (const auto& [kind, n] : r.errors) {
    if (!first) s += ",";
    first = false;
    s += json_quote(kind);
    s += ":" + std::to_string(n);
  }
  s += "},\"first_error\":";
  s += json_quote(r.first_error);
  s += ",\"elapsed_s\":" + fmt("%.6f", r.elapsed_s);
  s += ",\"throughput\":" + fmt("%.1f", r.throughput());
  s += ",\"latency_ms\":" + latency_json(r.latency);
  if (o.workload == Workload::kLeaseExpiry)
    s += ",\"lease_ttl_s\":" + std::to_string(o.lease_ttl_s);
  if (o.workload == Workload::kWatch) {
    s += ",\"watchers\":" + std::to_string(o.watchers);
    s += ",\"put_latency_ms\":" + latency_json(r.put_latency);
  }
  if (o.idle_conns > 0) s += ",\"idle_conns\":" + idle_json(r.idle);
  if (o.workload == Workload::kMixed) {
    s += ",\"read_ratio\":" + fmt("%.4f", o.read_ratio);
    s += ",\"reads\":" + std::to_string(r.reads) + ",\"writes\":" + std::to_string(r.writes);
  }
  s += "}";
  return s;
}

std::string progress_line(const BenchOptions& o, std::uint64_t done, double elapsed_s) {
  constexpr int kWidth = 30;
  double frac = 0;
  std::string count;
  if (o.duration_ms != 0) {
    const double d = static_cast<double>(o.duration_ms) / 1000.0;
    frac = elapsed_s / d;
    count = fmt("%.0f", std::min(elapsed_s, d)) + "/" + fmt("%.0f", d) + " s";
  } else {
    frac = static_cast<double>(done) / static_cast<double>(o.total);
    count = std::to_string(done) + "/" + std::to_string(o.total);
  }
  frac = std::fmin(std::fmax(frac, 0.0), 1.0);
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '=') +
                    std::string(static_cast<std::size_t>(kWidth - filled), ' ') + "]";
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
  return bar + " " + fmt("%3.0f", frac * 100) + "%  " + count + "  " + fmt("%.0f", rate) + " ops/s";
}

}  // namespace kvc::bench
