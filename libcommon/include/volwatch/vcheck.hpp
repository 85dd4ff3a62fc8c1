// vcheck: the read-only staleness and lock report (DESIGN §5, §7).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/exit_codes.hpp"
#include "volwatch/output.hpp"

namespace volwatch {

struct VcheckOptions {
    std::vector<std::string> volumes;  // paths inside volumes or UUID=...; none means every volume
    bool all = false;
    bool deep = false;
    OutputFormat format = OutputFormat::human;
    bool quiet = false;
    bool list_helpers = false;  // print the host config's helper targets (format_helper_list) and check nothing
    HostOverrides host;
    unsigned threads = 0;
};

/// Runs vcheck: reports on stdout (`out`), diagnostics on `err`, and returns
/// the exit code. Precedence when several apply: 78 (host config) > 66
/// (unknown volume) > 65 (bad volume config, or a cache that cannot be
/// checked) > 77 (a source that cannot be read: permission denied) > 1
/// (stale) > 0. With list_helpers: 0 after printing the list, or 78.
[[nodiscard]] ExitCode run_vcheck(const VcheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace volwatch
