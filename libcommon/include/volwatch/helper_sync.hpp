// Crash-consistent helper updates (DESIGN §5): the new set is written into
// the helper's non-live slot, fsynced, sealed with its manifest, and made live
// by one small pointer write last; then the bootstamp is written on the
// volume. After kill -9 or power loss at any instant a helper holds a
// complete old set or a complete new set, never a mix.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/helpers.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {

enum class HelperOutcome { updated, unchanged, would_update, failed };
[[nodiscard]] std::string_view to_string(HelperOutcome outcome);

struct HelperSyncResult {
    std::filesystem::path target;
    HelperOutcome outcome = HelperOutcome::unchanged;
    std::string message;            // why it failed, or what was done
    std::uint64_t generation = 0;   // the live generation afterwards
    std::uint64_t bytes = 0;        // bytes copied (or that would be)
    std::vector<std::string> files; // files copied (or that would be)
    std::chrono::milliseconds elapsed{0};
};

struct HelperSyncOptions {
    bool force = false;    // copy even when the helper is up to date
    bool dry_run = false;  // report what would be copied; change nothing
};

/// Brings helper `target` of the volume at `root_fd` up to date with the
/// config's helper files, recording in the bootstamp whether the target was
/// a mount point and its file system. Refuses (leaving the helper and the
/// directory under it untouched) when the target is missing, not mounted
/// (helper_mount_problem; --force allows only a new file system) or lacks
/// room for the new set beside the live one.
[[nodiscard]] HelperSyncResult sync_helper(int root_fd, const Volume& volume, const VolumeConfig& config,
                                           const HelperTarget& target, const HelperSyncOptions& options);

}  // namespace volwatch
