#include "cli.h"

#include <cstdio>
#include <iostream>

#include "kvc/common/version.h"

namespace kvc::cli {

std::string exit_code_footer(const std::string& examples, const std::string& extra) {
  std::string s = "Examples:\n" + examples +
                  "\n\nExit codes:\n"
                  "  0  success\n"
                  "  1  error, nothing applied\n"
                  "  2  usage error (bad flags or arguments)\n";
  s += extra;
  return s;
}

void add_common_flags(CLI::App& app, LogOptions& log) {
  app.set_version_flag("--version", std::string(kvc::version()), "Print the version and exit");
  app.set_help_flag("-h,--help", "Print this help and exit");
  auto* g = app.add_option_group("Logging");
  g->add_option("--log-level", log.level, "Log level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  g->add_option("--log-format", log.format, "Log line format on stderr: text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  g->add_option("--log-file", log.file, "Write logs to this file instead of stderr");
}

namespace {

void prepend_footer(CLI::App& sub, const std::string& text) {
  for (CLI::App* child : sub.get_subcommands([](CLI::App* s) { return !s->get_name().empty(); })) {
    prepend_footer(*child, text);
  }
  const std::string own = sub.get_footer();
  sub.footer(own.empty() ? text : text + "\n" + own);
}

}  // namespace

void add_global_options_to_help(CLI::App& app) {
  std::vector<const CLI::Option*> options;
  auto take = [&](const CLI::App& from) {
    for (const CLI::Option* o : from.get_options()) {
      // Each command shows its own -h,--help (option groups carry a copy of it too).
      if (o != from.get_help_ptr() && o->nonpositional()) options.push_back(o);
    }
  };
  take(app);
  for (const CLI::App* group :
       app.get_subcommands([](const CLI::App* s) { return s->get_name().empty(); })) {
    take(*group);
  }
  std::string text = app.get_fallthrough() ? "Global options (before or after the command):\n"
                                           : "Global options (before the command):\n";
  const CLI::Formatter formatter;  // the layout CLI11 gives every option list
  for (const CLI::Option* o : options) text += formatter.make_option(o, false);
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return !s->get_name().empty(); })) {
    prepend_footer(*sub, text);
  }
}

std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // help and version print to stdout; errors to stderr
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return std::nullopt;
}

std::optional<int> parse_and_setup(CLI::App& app, int argc, char** argv, const LogOptions& log) {
  if (auto rc = parse(app, argc, argv)) return rc;
  if (Status s = setup_logging(log); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", app.get_name().c_str(), s.message().c_str());
    return kExitUsage;
  }
  return std::nullopt;
}

int fail(const std::string& program, const Status& status) {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), status.message().c_str());
  return exit_code(status);
}

}  // namespace kvc::cli
