// The one exit-code table of volwatch (DESIGN §7). These numbers are part of
// the programs' interface: scripts, init systems and cron test them.
#pragma once

#include <string_view>

namespace volwatch {

enum class ExitCode : int {
    ok = 0,                  // success, or every volume clean
    stale = 1,               // vcheck: something needs a rebuild
    not_locked = 3,          // vunlock: the volume is not locked
    not_owner = 4,           // vunlock: the lock belongs to another process
    reboot_in_progress = 5,  // vlock/vrebuild: refused, the reboot lock is held
    reboot_already = 6,      // vrebootgate: the reboot lock was already granted; proceed
    usage = 64,              // EX_USAGE: bad option or argument
    bad_volume_config = 65,  // EX_DATAERR: a volume's bootcaches.toml is invalid
    unknown_volume = 66,     // EX_NOINPUT: a named volume does not exist or has no config
    internal = 70,           // EX_SOFTWARE: a bug or an unexpected system failure
    busy = 75,               // EX_TEMPFAIL: busy, or a wait timed out
    permission = 77,         // EX_NOPERM: permission denied
    bad_host_config = 78,    // EX_CONFIG: the host config is invalid
};

/// The number a process exits with for `code`.
[[nodiscard]] constexpr int to_int(ExitCode code) noexcept { return static_cast<int>(code); }

/// A short stable name for `code` ("busy", "bad-volume-config"), used in JSON output.
[[nodiscard]] std::string_view exit_code_name(ExitCode code) noexcept;

/// One line of prose for `code`, as the man pages' EXIT STATUS section says it.
[[nodiscard]] std::string_view exit_code_meaning(ExitCode code) noexcept;

}  // namespace volwatch
