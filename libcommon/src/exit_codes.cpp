#include "volwatch/exit_codes.hpp"

namespace volwatch {

std::string_view exit_code_name(ExitCode code) noexcept {
    switch (code) {
    case ExitCode::ok: return "ok";
    case ExitCode::stale: return "stale";
    case ExitCode::not_locked: return "not-locked";
    case ExitCode::not_owner: return "not-owner";
    case ExitCode::reboot_in_progress: return "reboot-in-progress";
    case ExitCode::reboot_already: return "reboot-already-granted";
    case ExitCode::usage: return "usage";
    case ExitCode::bad_volume_config: return "bad-volume-config";
    case ExitCode::unknown_volume: return "unknown-volume";
    case ExitCode::internal: return "internal-error";
    case ExitCode::busy: return "busy";
    case ExitCode::permission: return "permission-denied";
    case ExitCode::bad_host_config: return "bad-host-config";
    }
    return "unknown";
}

std::string_view exit_code_meaning(ExitCode code) noexcept {
    switch (code) {
    case ExitCode::ok: return "success; for vcheck, every volume is clean";
    case ExitCode::stale: return "stale: vcheck found a stale cache or helper; vrebuild could not bring one up to date";
    case ExitCode::not_locked: return "vunlock: the volume is not locked";
    case ExitCode::not_owner: return "vunlock: the lock belongs to another process";
    case ExitCode::reboot_in_progress: return "the reboot lock is held; no new volume lock is granted";
    case ExitCode::reboot_already: return "vrebootgate: the reboot lock was already granted; proceed";
    case ExitCode::usage: return "usage error: bad option or argument";
    case ExitCode::bad_volume_config: return "a volume config (bootcaches.toml) is invalid";
    case ExitCode::unknown_volume: return "a named volume does not exist or has no volume config";
    case ExitCode::internal: return "internal error";
    case ExitCode::busy: return "busy, a wait timed out, or an update was deferred (try again later)";
    case ExitCode::permission: return "permission denied";
    case ExitCode::bad_host_config: return "the host config is invalid";
    }
    return "unknown";
}

}  // namespace volwatch
