// Volume identity and discovery (DESIGN §2): a volume is a mounted file system
// or an explicit root from the host config that carries a volume config. It is
// keyed by file-system UUID, else device number, else a hash of its canonical
// root path; never by device name or mount point.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/error.hpp"
#include "volwatch/mountinfo.hpp"

namespace volwatch {

struct VolumeId {
    std::string value;  // "uuid-<UUID>", "dev-<major>:<minor>" or "path-<16 hex>"; safe as a file name
    [[nodiscard]] bool operator==(const VolumeId&) const = default;
    [[nodiscard]] std::string uuid() const;  // the UUID, or "" when the id is not UUID-based
};

/// A candidate volume: where it is and who it is; its config is loaded separately.
struct Volume {
    std::filesystem::path root;  // canonical path of the root directory
    VolumeId id;
    dev_t device = 0;
    bool explicit_root = false;  // named in the host config's `volumes`
    bool mounted = true;         // false for an explicit root that does not exist now
};

/// Looks up the UUID of the block device `device` in `by_uuid_dir`
/// (normally /dev/disk/by-uuid); "" if none.
[[nodiscard]] std::string uuid_for_device(dev_t device, const std::filesystem::path& by_uuid_dir = "/dev/disk/by-uuid");

/// The identity of the volume rooted at `root`. Mount roots use their UUID,
/// else "dev-MAJ:MIN"; explicit roots that are not mount points use the path
/// hash (several explicit roots may share one file system).
/// `source` is the mount's source ("/dev/sda1"), tried when `device` itself
/// has no by-uuid link (btrfs and others report anonymous device numbers).
[[nodiscard]] VolumeId identify_volume(const std::filesystem::path& root, dev_t device, bool is_mount_root,
                                       const std::string& source = "");

/// A stable 64-bit FNV-1a hash, used for path-hash identities and digests.
[[nodiscard]] std::uint64_t stable_hash(std::string_view data, std::uint64_t seed = 0xcbf29ce484222325ULL);

/// Every candidate volume: eligible mounts when `host.discover`, plus the
/// explicit roots. Mounts without a volume config are dropped here; the
/// explicit roots are kept even when missing, so reports can name them.
[[nodiscard]] std::vector<Volume> discover_volumes(const HostConfig& host, const MountTable& mounts);

/// Resolves a VOLUME argument: a path inside a volume, or "UUID=...".
/// Fails with unknown_volume naming the argument when it is not a volume.
[[nodiscard]] Result<Volume> resolve_volume(std::string_view argument, const HostConfig& host,
                                            const MountTable& mounts);

}  // namespace volwatch
