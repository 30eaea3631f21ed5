// Fuzz target: the JSON Lines history reader must answer any bytes with a history or a Status;
// a history it accepts must survive a write and re-read unchanged, and the checker must give a
// verdict on it without crashing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/check/history_io.h"
#include "kvc/check/linearizability.h"
#include "kvc/common/check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const kvc::Result<kvc::check::History> history = kvc::check::history_from_jsonl(text);
  if (!history.ok()) return 0;
  const std::string written = kvc::check::history_to_jsonl(*history);
  const kvc::Result<kvc::check::History> again = kvc::check::history_from_jsonl(written);
  KVC_CHECK(again.ok(), "a written history must read back: " + again.status().to_string());
  KVC_CHECK(kvc::check::history_to_jsonl(*again) == written, "history round trip changed it");
  kvc::check::CheckOptions options;
  options.max_states_per_key = 20'000;
  const kvc::check::CheckResult result = kvc::check::check_history(*history, options);
  KVC_CHECK(result.verdict == kvc::check::Verdict::kLinearizable || !result.explanation.empty(),
            "a failed check must explain itself");
  return 0;
}
