// vlock and vunlock: take and release a volume lock from a shell script,
// run a command under it, list the lock directory (DESIGN §4, man vlock).
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/error.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch {

struct VlockOptions {
    std::string volume;                  // a path inside a volume or UUID=...; with --list, a filter
    std::optional<Duration> wait;        // --wait; Duration::max() waits without bound
    std::optional<pid_t> owner;          // --owner PID; default: the caller's parent
    std::string purpose = "vlock";
    bool json = false;
    bool list = false;
    int conflict_exit_code = 75;         // -E: the exit code for busy and timed out
    std::vector<std::string> command;    // after "--": run under the lock
    HostOverrides host;
};

/// Runs vlock: takes the lock (then runs the command, if any, and releases
/// it with the command's status) or lists the locks. Returns the exit code,
/// which is the command's own status when one ran. Diagnostics go to `err`
/// as "vlock: VOLUME: message"; --list and --json output to `out`.
[[nodiscard]] ExitCode run_vlock(const VlockOptions& options, std::FILE* out, std::FILE* err);

struct VunlockOptions {
    std::string volume;
    int status = 0;                      // the update's exit status, for the accounting
    bool force = false;
    HostOverrides host;
};

/// Runs vunlock: releases the volume lock if the caller or an ancestor (not pid 1) owns
/// it (any owner with force). 0, not_locked, not_owner or a setup failure.
[[nodiscard]] ExitCode run_vunlock(const VunlockOptions& options, std::FILE* err);

/// A command line split at the first "--": what the option parser sees, and
/// the command that follows verbatim. A bare "--wait" becomes
/// "--wait=forever", so that "--wait VOLUME" never takes VOLUME as a duration.
struct SplitCommandLine {
    std::vector<std::string> options;    // argv[0] first
    std::vector<std::string> command;
    bool has_separator = false;
};
[[nodiscard]] SplitCommandLine split_command_line(int argc, const char* const* argv);

/// Parses a --wait value: a duration, or "forever"/"infinity" (Duration::max()).
[[nodiscard]] Result<Duration> parse_wait(std::string_view text);

}  // namespace volwatch
