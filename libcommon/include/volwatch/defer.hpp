// defer_while (DESIGN §6): rebuilds wait while a package manager holds its
// lock file. A file counts as held while a live process holds a lock on it
// (POSIX, OFD or flock; read from /proc/locks, so probing never takes the
// lock itself) or, for lock files that carry no lock (pacman's db.lck), while
// a process has it open (found through /proc/PID/fd). A missing file is free.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace volwatch {

struct DeferHolder {
    std::filesystem::path path;
    std::vector<pid_t> pids;  // the processes holding it, where known
    std::string how;          // "lock" or "open"
};

/// The first of `paths` that is held, with who holds it; nullopt when none is.
/// `self` is ignored as a holder (vwatch never holds these files).
[[nodiscard]] std::optional<DeferHolder> find_defer_holder(const std::vector<std::filesystem::path>& paths,
                                                           pid_t self = 0);

/// The processes holding a lock on the file with `device` and `inode`, as
/// listed in `proc_locks` (the text of /proc/locks); pid 0 when the kernel
/// shows none (an OFD lock). Blocked waiters ("->") are not holders.
[[nodiscard]] std::vector<pid_t> lock_holders(std::string_view proc_locks, dev_t device, ino_t inode, bool& found);

}  // namespace volwatch
