// Helper targets named by device (DESIGN §5, docs/helpers.md): an ESP kept
// unmounted is named UUID=, PARTUUID=, LABEL= or /dev/...; volwatch finds it
// (libblkid), mounts it in a private mount namespace only while it reads or
// writes it, and holds flock(LOCK_EX) on the whole-disk block device while
// it writes any block-device-backed helper ("Locking Block Device Access",
// the convention udev and systemd-repart honour).
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "volwatch/config.hpp"
#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/helper_sync.hpp"
#include "volwatch/helpers.hpp"

namespace volwatch {

enum class TargetKind { directory, uuid, partuuid, label, device_path };

/// A [[helpers]] target as written in the host config.
struct TargetSpec {
    TargetKind kind = TargetKind::directory;
    std::string value;  // the tag's value, or the (normalized) path
    std::string text;   // as it is keyed and shown: "UUID=1234-ABCD", "/dev/vdb2", "/boot/efi"
};

/// Parses a target strictly: an absolute directory, UUID=HEX, PARTUUID=HEX,
/// LABEL=TEXT or a /dev/ path. Lexical only (no file-system access), so it is
/// fuzzed. Fails with bad_host_config and one message per kind of bad spec.
[[nodiscard]] Result<TargetSpec> parse_target_spec(std::string_view text);

/// Checks a parsed spec against the file system for what can be known when
/// the config is loaded: a /dev/ path that exists must be a block device
/// (a missing one is a per-target error at sync time). "" when fine.
[[nodiscard]] std::string target_spec_problem_now(const TargetSpec& spec);

/// Checks an [[helpers]] fstype value ("vfat", "ext4", ...): "" when fine.
[[nodiscard]] std::string fstype_problem(std::string_view fstype);

/// True when the target (as stored in HelperTarget::path) names a device.
[[nodiscard]] bool names_device(const HelperTarget& target);

/// A block device holding a helper's file system.
struct HelperDevice {
    std::string node;    // /dev/... as found
    dev_t rdev = 0;      // its device number
    std::string fstype;  // as libblkid probed it
};

/// Finds the device a spec names and probes its file system. Fails (a
/// per-target problem) when no device matches, it holds no file system, or
/// another type than `expected_fstype` (when not empty).
[[nodiscard]] Result<HelperDevice> find_helper_device(const TargetSpec& spec, const std::string& expected_fstype);

/// "pid 812 (systemd-repart)" for the holder of a flock on the inode of
/// `node` (from /proc/locks), or "" when none is found.
[[nodiscard]] std::string flock_holder(const std::filesystem::path& node);

/// flock(LOCK_EX) held on a whole-disk block device; released on destruction.
struct DiskLock {
    UniqueFd fd;
    std::string disk;  // /dev/... of the whole disk; "" when the target is not on a block device
};

/// The whole-disk device node of block device `dev` (itself if not a
/// partition), from /sys/dev/block; nullopt when `dev` is no block device.
[[nodiscard]] std::optional<std::string> whole_disk_node(dev_t dev);

/// Takes the whole-disk lock for a helper on block device `dev`, waiting
/// with a short back-off until `deadline`; then fails with busy naming the
/// holder. A `dev` that is not a block device (tmpfs, a btrfs subvolume's
/// anonymous device) needs no lock: an empty DiskLock.
[[nodiscard]] Result<DiskLock> lock_whole_disk(dev_t dev, std::chrono::steady_clock::time_point deadline);

/// How long a target waits for a foreign whole-disk lock when the run gives
/// no bound (vrebuild without --wait): udev holds it only while it probes.
inline constexpr std::chrono::seconds default_device_lock_wait{10};

/// sync_helper for any target: a directory target is synced in place under
/// the whole-disk lock of its file system's device; a device target is found,
/// locked, mounted in a private mount namespace, synced there, synced to disk
/// and unmounted (dry runs mount it read-only and take no lock). Its bootstamp
/// is keyed by the spec, never by the temporary mount point.
[[nodiscard]] HelperSyncResult sync_helper_target(int root_fd, const Volume& volume, const VolumeConfig& config,
                                                  const HelperTarget& target, const HelperSyncOptions& options,
                                                  std::chrono::steady_clock::time_point lock_deadline);

/// check_helper for any target: a device target is mounted read-only in a
/// private mount namespace (never modified: no journal replay, no vfat dirty
/// bit). A device that cannot be found or mounted is an error verdict.
[[nodiscard]] HelperVerdict check_helper_target(int root_fd, const VolumeConfig& config, const HelperTarget& target,
                                                bool verify_content);

}  // namespace volwatch
