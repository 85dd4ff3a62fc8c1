// vwatch: the watcher daemon (DESIGN §6). It follows volumes as they are
// mounted and unmounted, watches their sources, settles, checks, launches
// vrebuild, notices lock owners that die and refuses unmount while busy.
#pragma once

#include <optional>
#include <string>

#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/exit_codes.hpp"
#include "volwatch/log.hpp"

namespace volwatch {

struct VwatchOptions {
    HostOverrides host;
    std::optional<Duration> settle;          // --settle
    std::optional<Duration> startup_delay;   // --startup-delay
    bool no_discover = false;                // --no-discover
    std::optional<WatchBackend> backend;     // --backend
    LogLevel log_level = LogLevel::info;     // --log-level
    LogTarget log_target = LogTarget::automatic;      // --log
    // The rebuilder program: $VOLWATCH_VREBUILD if set, else the vrebuild
    // beside vwatch's own executable (or in the install prefix's sbin or bin),
    // else "vrebuild" from PATH.
    std::string vrebuild;
};

/// Runs the daemon in the foreground until SIGTERM or SIGINT; returns ok
/// then. Fails (Failure) with bad_host_config when the host config is
/// invalid at start, permission when the lock directory cannot be used.
[[nodiscard]] ExitCode run_vwatch(const VwatchOptions& options);

/// The program vwatch launches for rebuilds, as the options above describe.
[[nodiscard]] std::string locate_vrebuild(const std::string& configured);

}  // namespace volwatch
