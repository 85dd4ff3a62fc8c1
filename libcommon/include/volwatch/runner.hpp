// Running a rebuilder (DESIGN §5): argv without a shell, cwd at the volume
// root, stdin from /dev/null, a clean environment, its own process group,
// killed (TERM, then KILL) at its timeout, output prefixed line by line.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <sys/types.h>
#include <string>
#include <vector>

#include "volwatch/duration.hpp"
#include "volwatch/error.hpp"

namespace volwatch {

/// The environment every rebuilder gets, and nothing else.
[[nodiscard]] const std::vector<std::string>& rebuilder_environment();

struct RunSpec {
    std::vector<std::string> argv;       // argv[0] is looked up in the clean PATH unless it has a '/'
    std::filesystem::path cwd;
    Duration timeout{std::chrono::minutes(10)};
    Duration kill_grace{std::chrono::seconds(5)};  // between SIGTERM and SIGKILL
    bool low_priority = false;           // nice 10 and the idle I/O class
    std::string prefix;                  // put before every output line, e.g. "initramfs: "
    int output_fd = 2;                   // where prefixed output goes
    int interrupt_fd = -1;               // readable (a signalfd): stop the command as at a timeout
    // Called with the child's pid after the fork, before the command runs:
    // the child waits for it to return, and never runs if this process
    // dies first (vrebuild makes the rebuilder an owner of its lock here).
    std::function<void(pid_t)> on_start;
};

struct RunResult {
    int status = 0;          // exit status; 128+N when killed by signal N
    bool timed_out = false;
    bool interrupted = false;  // interrupt_fd became readable; the command was stopped
    bool started = true;     // false when argv[0] could not be executed (status 127 or 126)
    std::chrono::milliseconds elapsed{0};
};

/// Runs `spec` to completion (or its timeout) and reports how it ended.
/// Fails only when the process cannot be set up at all (pipe, fork).
[[nodiscard]] Result<RunResult> run_command(const RunSpec& spec);

}  // namespace volwatch
