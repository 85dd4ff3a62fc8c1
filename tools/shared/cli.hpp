// The command-line layer every program shares: the same help layout,
// --version, host-config options, and usage errors mapped to exit code 64
// (CLI11's own codes are never used).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "guarded.hpp"
#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch::cli {

/// A CLI11 app named `name` with our help layout and --version.
[[nodiscard]] std::unique_ptr<CLI::App> make_app(const std::string& name, const std::string& description);

/// Adds --config FILE and --lock-dir DIR, filling `overrides`.
void add_host_options(CLI::App& app, HostOverrides& overrides);

/// Accepts exactly one of `choices`; the help text stays uncluttered.
[[nodiscard]] CLI::Validator one_of(std::vector<std::string> choices);

/// Checks a DURATION argument ("5s", "10m").
[[nodiscard]] CLI::Validator duration_validator();

/// Checks a PID argument (a positive number) without cluttering the help.
[[nodiscard]] CLI::Validator positive_pid();

/// Checks a --wait value: empty (no bound), "forever", "infinity" or a DURATION.
[[nodiscard]] CLI::Validator wait_validator();
/// The bound a --wait value means; Duration::max() for no bound.
[[nodiscard]] Result<Duration> parse_wait_value(const std::string& text);

/// Parses argv, then runs `body`. Help and version exit 0; parse errors print
/// "name: message" and "Try 'name --help'." and return 64; a Failure thrown by
/// `body` prints "name: message" and returns its code; anything else is 70.
[[nodiscard]] int run(CLI::App& app, int argc, char** argv, const std::function<ExitCode()>& body);

}  // namespace volwatch::cli
