// Process identity and liveness: a PID plus its start time and the boot id,
// so that a recycled PID or a record from an earlier boot never counts as alive.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>

#include "volwatch/fd.hpp"

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

/// The identity of the calling process (never fails: /proc/self always exists).
[[nodiscard]] ProcessIdentity self_identity();

/// "pid 4242 (update-initramfs -u)", or "pid 4242" when the command is unknown.
[[nodiscard]] std::string describe_process(pid_t pid, const std::string& command);

/// A pidfd (pidfd_open(2)) for `who`, readable once that process exits.
/// Checked against the start time after opening, so a recycled PID never
/// yields a handle. Invalid when the process is gone or another boot's;
/// also invalid with errno ENOSYS when the kernel has no pidfd_open.
[[nodiscard]] UniqueFd open_process_handle(const ProcessIdentity& who);

}  // namespace volwatch
