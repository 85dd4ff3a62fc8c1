// vrebuild: rebuild a volume's stale caches under its lock, then bring its
// helpers up to date (DESIGN §5).
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch {

struct VrebuildOptions {
    std::vector<std::string> volumes;   // paths inside volumes or UUID=...
    bool all = false;                   // every volume (discovered and explicit)
    bool force = false;                 // rebuild every cache, copy every helper
    std::string cache;                  // only this cache ("" = all stale ones)
    bool helpers_only = false;          // skip the rebuild step
    bool dry_run = false;               // print the plan, change nothing
    std::optional<Duration> wait;       // wait for the lock; Duration::max() = no bound
    bool low_priority = false;          // nice and idle I/O for the rebuilders (vwatch)
    bool json = false;
    HostOverrides host;
};

/// Runs vrebuild and returns its exit code: 0 all done; 1 a rebuild or helper
/// update failed (the volume stays stale); 75 busy or a rebuilder asked to be
/// retried later; 5 reboot in progress; 64/65/66/77/78 as in the table.
[[nodiscard]] ExitCode run_vrebuild(const VrebuildOptions& options, std::ostream& out, std::ostream& err);

}  // namespace volwatch
