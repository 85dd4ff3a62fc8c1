// The top of every program, without CLI11 (vlock parses its own command
// line, see volwatch/vlock_command_line.hpp): usage errors and the one place
// where Failure is caught (STYLE habits 3 and 4).
#pragma once

#include <functional>
#include <string_view>

#include "volwatch/error.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch::cli {

/// Prints "name: message" and "Try 'name --help'." on stderr; returns 64.
[[nodiscard]] int usage_error(std::string_view name, std::string_view message);

/// Runs `body`. A Failure it throws prints "name: message" and returns its
/// code; any other exception is "name: internal error: ..." and 70.
[[nodiscard]] int run_guarded(std::string_view name, const std::function<ExitCode()>& body);

}  // namespace volwatch::cli
