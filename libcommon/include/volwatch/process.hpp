// Process identity and liveness: a PID plus its start time and the boot id,
// so that a recycled PID or a record from an earlier boot never counts as alive.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>

namespace volwatch {

struct ProcessIdentity {
    pid_t pid = 0;
    std::uint64_t start_time = 0;  // clock ticks since boot (/proc/PID/stat field 22)
    std::string boot_id;           // /proc/sys/kernel/random/boot_id
    [[nodiscard]] bool operator==(const ProcessIdentity&) const = default;
};

/// This boot's id; cached after the first read.
[[nodiscard]] const std::string& current_boot_id();

/// The identity of the running process `pid`, or nullopt if it does not exist
/// (or is a zombie: it has exited and can hold nothing).
[[nodiscard]] std::optional<ProcessIdentity> identify_process(pid_t pid);

/// True if the process that `who` names still runs: same boot, same PID, same
/// start time, not a zombie.
[[nodiscard]] bool is_alive(const ProcessIdentity& who);

/// The command line of `pid` with arguments joined by spaces ("" if unknown).
[[nodiscard]] std::string process_command(pid_t pid);

/// The parent of `pid`, or 0 if unknown.
[[nodiscard]] pid_t parent_of(pid_t pid);

}  // namespace volwatch
