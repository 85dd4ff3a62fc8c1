// vrebootgate: the shutdown gate (DESIGN §4). It waits until every volume is
// consistent (launching vrebuild for stale ones), then takes the reboot lock,
// which refuses new volume locks until its owner dies.
#pragma once

#include <iosfwd>
#include <optional>
#include <sys/types.h>

#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch {

struct GateOptions {
    std::optional<Duration> wait;   // --wait; Duration::max() = no bound; nullopt = answer at once
    std::optional<pid_t> owner;     // --owner; default: the caller's parent
    bool json = false;
    bool quiet = false;
    bool status = false;            // --status: report only
    bool release = false;           // --release: drop the reboot lock (root)
    HostOverrides host;
    std::string vrebuild;           // the program to launch; "" = locate it like vwatch does
};

/// Runs the gate. Returns 0 when the reboot lock was granted (or, with
/// --status, when it is held or nothing blocks), 6 when it was already held
/// (proceed), 75 when something still blocks at the end of the wait,
/// 3 for --release of a lock nobody holds, and the table's other codes.
[[nodiscard]] ExitCode run_vrebootgate(const GateOptions& options, std::ostream& out, std::ostream& err);

}  // namespace volwatch
