#include "kvc/storage/checked_fields.h"

#include "kvc/common/crc32c.h"
#include "kvc/common/lines.h"
#include "kvc/common/text.h"

namespace kvc::storage {

namespace {
constexpr std::string_view kCrcKey = "crc32c=";
}  // namespace

std::string seal_fields(std::string body) {
  const std::string crc = u32_hex(crc32c::value(body));
  body += kCrcKey;
  body += crc;
  body += '\n';
  return body;
}

Result<std::vector<CheckedField>> parse_checked_fields(std::string_view text) {
  const std::size_t crc_at = text.rfind(kCrcKey);
  if (crc_at == std::string_view::npos || (crc_at != 0 && text[crc_at - 1] != '\n')) {
    return Status::corruption("no crc32c line");
  }
  const std::string_view body = text.substr(0, crc_at);
  std::string_view crc = text.substr(crc_at + kCrcKey.size());
  while (!crc.empty() && (crc.back() == '\n' || crc.back() == '\r')) crc.remove_suffix(1);
  const std::optional<std::uint64_t> want = parse_hex_u64(crc);
  if (!want) return Status::corruption("bad crc32c '" + std::string(crc) + "'");
  if (*want != crc32c::value(body)) return Status::corruption("checksum mismatch");
  std::vector<CheckedField> fields;
  for (const std::string_view line : split_lines(body)) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::corruption("malformed line '" + std::string(line) + "'");
    }
    fields.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  return fields;
}

}  // namespace kvc::storage
