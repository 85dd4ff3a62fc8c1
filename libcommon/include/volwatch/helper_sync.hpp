// Crash-consistent helper updates (DESIGN §5): the new set is written into
// the helper's non-live slot, fsynced, sealed with its manifest, and made live
// by one small pointer write last; then the bootstamp is written on the
// volume. After kill -9 or power loss at any instant a helper holds a
// complete old set or a complete new set, never a mix.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/helpers.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {

/// held_back: nothing was written because a held-back file cannot be kept
/// (no live set yet to keep it from) or because only held-back files changed.
enum class HelperOutcome { updated, unchanged, would_update, failed, held_back };
[[nodiscard]] std::string_view to_string(HelperOutcome outcome);

/// A helper file that keeps its previous copy because a cache it depends on
/// failed: no helper may get a new kernel with an old initramfs.
struct HeldBackFile {
    std::string file;                 // lexically normal, as in the manifest
    std::vector<std::string> caches;  // the failed caches it depends on
    std::string reason;               // "the product of cache initramfs, which failed: ..."
};

/// Why a cache was not brought up to date in this run, by cache name.
using FailedCaches = std::map<std::string, std::string>;

/// The helper files of `config` that depend on a cache in `failed`: a file
/// that is a failed cache's product (or lies beneath it), or that
/// [helpers] depends ties to one. In helper-file order.
[[nodiscard]] std::vector<HeldBackFile> held_back_files(const VolumeConfig& config, const FailedCaches& failed);

struct HelperSyncResult {
    std::filesystem::path target;
    HelperOutcome outcome = HelperOutcome::unchanged;
    std::string message;            // why it failed, or what was done
    std::uint64_t generation = 0;   // the live generation afterwards
    std::uint64_t bytes = 0;        // bytes copied (or that would be)
    std::vector<std::string> files; // files copied from the volume (or that would be)
    std::vector<HeldBackFile> held_back;  // files that kept (or would keep) their previous copy
    std::chrono::milliseconds elapsed{0};
};

struct HelperSyncOptions {
    bool force = false;    // copy even when the helper is up to date
    bool dry_run = false;  // report what would be copied; change nothing
    /// Files that keep the live slot's copy (hash checked against its
    /// manifest) instead of the volume's; their bootstamp entries keep the
    /// target stale for them. On a target without a live set that has them,
    /// nothing is written (held_back).
    std::vector<HeldBackFile> held_back;
};

/// Brings helper `target` of the volume at `root_fd` up to date with the
/// config's helper files, recording in the bootstamp whether the target was
/// a mount point and its file system. Refuses (leaving the helper and the
/// directory under it untouched) when the target is missing, not mounted
/// or, with boot entries, not the root of its file system
/// (helper_mount_problem; --force allows only a new file system) or lacks
/// room for the new set beside the live one.
[[nodiscard]] HelperSyncResult sync_helper(int root_fd, const Volume& volume, const VolumeConfig& config,
                                           const HelperTarget& target, const HelperSyncOptions& options);

}  // namespace volwatch
