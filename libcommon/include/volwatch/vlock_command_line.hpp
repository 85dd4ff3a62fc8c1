// vlock's command line: a small parser of its own instead of CLI11, whose
// set-up of a dozen options cost more instructions and page faults than the
// lock itself (docs/benchmarks.md, issue 13). Same options, help text and
// exit codes as every other program (STYLE habit 3).
#pragma once

#include <string_view>

#include "volwatch/error.hpp"
#include "volwatch/vlock.hpp"

namespace volwatch {

/// What vlock's command line asks for: print the help, print the version,
/// or run with `options`.
struct VlockCommandLine {
    enum class Action { run, help, version };
    Action action = Action::run;
    VlockOptions options;
};

/// Parses vlock's arguments (argv[0] first). A usage error is a Problem
/// with ExitCode::usage naming the argument, one line, without the
/// "Try 'vlock --help'." hint that the caller prints after it.
[[nodiscard]] Result<VlockCommandLine> parse_vlock_command_line(int argc, const char* const* argv);

/// The text of `vlock --help`, laid out as the CLI11 programs lay out theirs.
[[nodiscard]] std::string_view vlock_help();

/// The first line of `vlock --version`.
[[nodiscard]] std::string_view vlock_version();

}  // namespace volwatch
