// The mount table: parsing /proc/self/mountinfo and deciding which mounts are
// eligible volumes (DESIGN §6: local, writable, not a pseudo file system).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace volwatch {

struct MountEntry {
    int mount_id = 0;
    int parent_id = 0;
    dev_t device = 0;          // st_dev of files on this mount
    std::string root;          // the path within the file system that is mounted (bind mounts: not "/")
    std::string mount_point;   // octal escapes (\040 ...) decoded
    std::string options;       // per-mount options, e.g. "rw,relatime"
    std::string fs_type;       // "ext4", "fuse.sshfs", ...
    std::string source;        // "/dev/sda1", "tmpfs", ...
    std::string super_options; // per-superblock options
    [[nodiscard]] bool read_only() const;
};

/// Parses mountinfo text; malformed lines are skipped (the kernel writes it,
/// so they would mean a format we do not know, not an attack).
[[nodiscard]] std::vector<MountEntry> parse_mountinfo(std::string_view text);

/// Decodes the kernel's octal escapes ("\040" is a space).
[[nodiscard]] std::string unescape_mount_field(std::string_view field);

/// True for pseudo and virtual file systems (proc, sysfs, tmpfs, overlay, ...).
[[nodiscard]] bool is_pseudo_fs(std::string_view fs_type);
/// True for network and remote file systems (nfs, cifs, fuse.sshfs, ...).
[[nodiscard]] bool is_network_fs(std::string_view fs_type);

/// Why `entry` cannot be a volume ("read-only", "pseudo file system tmpfs",
/// ...), or "" when it is eligible (its volume config is checked later).
[[nodiscard]] std::string mount_ineligibility(const MountEntry& entry);

/// Small interface over the mount table so tests can supply their own.
class MountTable {
public:
    virtual ~MountTable() = default;
    /// The current mounts, in mountinfo order.
    [[nodiscard]] virtual std::vector<MountEntry> read() const = 0;
};

/// Reads /proc/self/mountinfo (or another file, for tests).
class ProcMountTable final : public MountTable {
public:
    explicit ProcMountTable(std::string path = "/proc/self/mountinfo") : path_(std::move(path)) {}
    [[nodiscard]] std::vector<MountEntry> read() const override;

private:
    std::string path_;
};

/// The mount table of the calling thread's mount namespace, which differs
/// from the process's in a thread that unshared its own (helper_device.cpp).
inline constexpr const char* thread_mountinfo = "/proc/thread-self/mountinfo";

/// The mount `path` is on, in `mounts`: found by its mount id (statx
/// STATX_MNT_ID), else (before Linux 5.8) as the last mount on `path`
/// itself, resolved, which finds mount points only; nullopt when not found.
[[nodiscard]] std::optional<MountEntry> find_mount(const std::filesystem::path& path, const MountTable& mounts);

}  // namespace volwatch
