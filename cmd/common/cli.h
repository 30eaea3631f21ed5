// Command-line plumbing shared by every kvc binary: the common flags (--log-level,
// --log-format, --log-file, --version), parsing with kvc's exit codes (CLI11's own codes are
// 100+; kvc promises 2 for usage errors), and logging setup. Used only by cmd/*/main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "kvc/common/log.h"
#include "kvc/common/status.h"

namespace kvc::cli {

// The exit-code table every binary's --help ends with (DESIGN.md); `extra` adds tool codes.
std::string exit_code_footer(const std::string& examples, const std::string& extra = "");

// Adds --version and the logging flags to `app`; values land in `log`.
void add_common_flags(CLI::App& app, LogOptions& log);

// Call once every subcommand is defined: prepends to the footer of every subcommand (at every
// depth) the list of `app`'s own options (the global flags, logging included), saying whether
// they may follow the command (CLI11 fallthrough) or must come before it, so that
// `TOOL CMD --help` shows every flag CMD accepts. Each subcommand should have its own footer
// (its examples) by then; one without keeps the footer it inherited from its parent.
void add_global_options_to_help(CLI::App& app);

// Parses argv. Returns an exit code when the program should stop now (help or --version: 0,
// usage error: 2, with the message on stderr), or nullopt to go on.
std::optional<int> parse(CLI::App& app, int argc, char** argv);

// Parses and then sets up logging. Returns an exit code to stop with, or nullopt to go on.
std::optional<int> parse_and_setup(CLI::App& app, int argc, char** argv, const LogOptions& log);

// Prints "<program>: <status message>" on stderr and returns exit_code(status).
int fail(const std::string& program, const Status& status);

}  // namespace kvc::cli
