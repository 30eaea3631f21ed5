#include "kvc/common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>

namespace kvc {
namespace {

// `%*` in a pattern: the log message, escaped for a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string escaped =
        json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

void flush_default_logger() {
  if (auto logger = spdlog::default_logger(); logger) logger->flush();
}

}  // namespace

Status setup_logging(const LogOptions& options) {
  const spdlog::level::level_enum level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return Status::invalid_argument("unknown log level '" + options.level +
                                    "' (trace, debug, info, warn, error, critical, off)");
  }
  if (options.format != "text" && options.format != "json") {
    return Status::invalid_argument("unknown log format '" + options.format + "' (text, json)");
  }

  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    // spdlog would create missing directories; a typo in --log-file should fail instead.
    const std::filesystem::path parent = std::filesystem::path(options.file).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      return Status::io_error("cannot open log file " + options.file + ": directory " +
                              parent.string() + " does not exist");
    }
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
    } catch (const spdlog::spdlog_ex& e) {
      return Status::io_error("cannot open log file " + options.file + ": " + e.what());
    }
  }

  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (options.format == "json") {
    formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%*"})");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%fZ %L %v",
                                                            spdlog::pattern_time_type::utc);
  }
  sink->set_formatter(std::move(formatter));

  auto logger = std::make_shared<spdlog::logger>("kvc", std::move(sink));
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  set_check_failure_hook(&flush_default_logger);
  return Status();
}

}  // namespace kvc
