#include "volwatch/volume.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>

namespace volwatch {
namespace {

namespace fs = std::filesystem;

bool has_volume_config(const fs::path& root) {
    struct stat st {};
    return ::lstat((root / volume_config_relpath).c_str(), &st) == 0;
}

// True if `inner` is `outer` or lies beneath it (both canonical).
bool is_within(const fs::path& inner, const fs::path& outer) {
    auto mismatch = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return mismatch.first == outer.end() || (std::next(mismatch.first) == outer.end() && mismatch.first->empty());
}

// True if mount point `inner` is `outer` or lies beneath it (string form, cheap).
bool mount_point_within(std::string_view inner, std::string_view outer) {
    if (inner.rfind(outer, 0) != 0) return false;
    return inner.size() == outer.size() || outer == "/" || inner[outer.size()] == '/';
}

// True if `ancestor` is `entry`'s parent mount, or its parent's, and so on.
bool is_ancestor(const MountEntry& ancestor, const MountEntry& entry, const std::vector<MountEntry>& all) {
    int id = entry.parent_id;
    for (std::size_t steps = 0; steps < all.size(); ++steps) {  // bounded: a table with a cycle must not hang us
        if (id == ancestor.mount_id) return true;
        auto parent = std::find_if(all.begin(), all.end(), [&](const MountEntry& e) { return e.mount_id == id; });
        if (parent == all.end()) return false;
        id = parent->parent_id;
    }
    return false;
}

// The visible mounts. A later mount on the same mount point hides the earlier
// one; so does a later mount on a directory above it, unless the earlier one
// lives inside that later mount (it was moved there).
std::vector<MountEntry> visible_mounts(const MountTable& mounts) {
    std::vector<MountEntry> all = mounts.read();
    std::vector<MountEntry> visible;
    for (std::size_t i = 0; i < all.size(); ++i) {
        const MountEntry& entry = all[i];
        bool hidden = std::any_of(all.begin() + static_cast<std::ptrdiff_t>(i) + 1, all.end(), [&](const MountEntry& later) {
            if (later.mount_point == entry.mount_point) return true;
            return mount_point_within(entry.mount_point, later.mount_point) && !is_ancestor(later, entry, all);
        });
        if (!hidden) visible.push_back(entry);
    }
    return visible;
}

Volume volume_for_mount(const MountEntry& entry) {
    Volume volume;
    volume.root = entry.mount_point;
    volume.device = entry.device;
    // A bind mount of a subtree is not the root of its file system: key it by
    // path, or it would share the whole file system's identity (and lock).
    volume.id = identify_volume(volume.root, entry.device, entry.root == "/", entry.source);
    return volume;
}

Volume volume_for_explicit(const fs::path& configured, const std::vector<MountEntry>& mounts) {
    Volume volume;
    volume.explicit_root = true;
    std::error_code ec;
    fs::path root = fs::canonical(configured, ec);
    struct stat st {};
    if (ec || ::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        volume.root = configured.lexically_normal();
        volume.mounted = false;
        volume.id = identify_volume(volume.root, 0, false);
        return volume;
    }
    auto mount = std::find_if(mounts.begin(), mounts.end(), [&](const MountEntry& e) { return e.mount_point == root.string(); });
    if (mount != mounts.end()) {
        // Keyed exactly as discovery keys it (btrfs: st_dev is not the mount's device).
        volume = volume_for_mount(*mount);
        volume.explicit_root = true;
        return volume;
    }
    volume.root = root;
    volume.device = st.st_dev;
    volume.id = identify_volume(root, st.st_dev, false);
    return volume;
}

// The kernel's name of block device `device` ("sda1", "dm-0"): the last
// component of /sys/dev/block/MAJ:MIN's target. "" when not known (no block
// device with that number, or no /sys).
std::string kernel_device_name(dev_t device) {
    std::string sys = fmt::format("/sys/dev/block/{}:{}", major(device), minor(device));
    char target[PATH_MAX];
    ssize_t n = ::readlink(sys.c_str(), target, sizeof target);
    if (n <= 0) return "";
    std::string_view text(target, static_cast<std::size_t>(n));
    std::size_t slash = text.rfind('/');
    return std::string(slash == std::string_view::npos ? text : text.substr(slash + 1));
}

}  // namespace

std::string VolumeId::uuid() const { return value.rfind("uuid-", 0) == 0 ? value.substr(5) : ""; }

std::uint64_t stable_hash(std::string_view data, std::uint64_t seed) {
    std::uint64_t hash = seed;
    for (unsigned char c : data) {
        hash ^= c;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

std::string uuid_for_device(dev_t device, const fs::path& by_uuid_dir) {
    auto names_device = [&](const fs::path& link) {
        struct stat st {};
        return ::stat(link.c_str(), &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == device;
    };
    std::vector<fs::path> links;
    std::error_code ec;
    for (fs::directory_iterator it(by_uuid_dir, ec), end; !ec && it != end; it.increment(ec)) links.push_back(it->path());
    // udev points each link at the device node by the kernel's name
    // ("../../sda1"): check the links with that target first, so that one
    // stat (through the link, to the node) does instead of one per disk.
    std::string name = kernel_device_name(device);
    if (!name.empty()) {
        for (const auto& link : links) {
            char target[PATH_MAX];
            ssize_t n = ::readlink(link.c_str(), target, sizeof target);
            if (n <= 0) continue;
            std::string_view text(target, static_cast<std::size_t>(n));
            bool same_name = text == name || (text.size() > name.size() && text.ends_with(name) &&
                                              text[text.size() - name.size() - 1] == '/');
            if (same_name && names_device(link)) return link.filename().string();
        }
    }
    // Anything else (no /sys, a device node made by hand): every link.
    for (const auto& link : links)
        if (names_device(link)) return link.filename().string();
    return "";
}

VolumeId identify_volume(const fs::path& root, dev_t device, bool is_mount_root, const std::string& source) {
    if (is_mount_root && device != 0) {
        std::string uuid = uuid_for_device(device);
        if (uuid.empty() && source.rfind("/dev/", 0) == 0) {
            struct stat st {};
            if (::stat(source.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) uuid = uuid_for_device(st.st_rdev);
        }
        bool safe = !uuid.empty() && std::all_of(uuid.begin(), uuid.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
        });
        if (safe) return {"uuid-" + uuid};
        return {fmt::format("dev-{}:{}", major(device), minor(device))};
    }
    return {fmt::format("path-{:016x}", stable_hash(root.string()))};
}

std::vector<Volume> discover_volumes(const HostConfig& host, const MountTable& mounts) {
    std::vector<MountEntry> visible = visible_mounts(mounts);
    std::vector<Volume> volumes;
    auto known = [&](const Volume& v) {
        return std::any_of(volumes.begin(), volumes.end(), [&](const Volume& other) { return other.id == v.id; });
    };
    if (host.discover) {
        for (const MountEntry& entry : visible) {
            // A bind mount of a subtree is a view into another volume, not a volume of its own.
            if (entry.root != "/" || !mount_ineligibility(entry).empty()) continue;
            if (!has_volume_config(entry.mount_point)) continue;
            Volume volume = volume_for_mount(entry);
            if (!known(volume)) volumes.push_back(std::move(volume));
        }
    }
    for (const auto& configured : host.volumes) {
        Volume volume = volume_for_explicit(configured, visible);
        if (!known(volume)) volumes.push_back(std::move(volume));
    }
    return volumes;
}

Result<Volume> resolve_volume(std::string_view argument, const HostConfig& host, const MountTable& mounts) {
    if (argument.rfind("UUID=", 0) == 0) {
        std::string uuid(argument.substr(5));
        for (Volume& volume : discover_volumes(host, mounts))
            if (!uuid.empty() && volume.id.uuid() == uuid) return volume;
        // Not discovered (discovery off, or ineligible): look at every mount.
        for (const MountEntry& entry : visible_mounts(mounts)) {
            if (entry.root != "/") continue;
            Volume volume = volume_for_mount(entry);
            if (!uuid.empty() && volume.id.uuid() == uuid && has_volume_config(volume.root)) return volume;
        }
        return Problem{ExitCode::unknown_volume, fmt::format("{}: no mounted volume with this UUID carries a volume config", argument)};
    }
    if (argument.empty()) return Problem{ExitCode::unknown_volume, "empty volume argument"};
    std::error_code ec;
    fs::path path = fs::canonical(fs::path(argument), ec);
    if (ec) return Problem{ExitCode::unknown_volume, fmt::format("{}: {}", argument, ec.message())};

    std::vector<MountEntry> visible = visible_mounts(mounts);
    std::optional<Volume> best;
    std::size_t best_depth = 0;
    auto consider = [&](Volume candidate) {
        std::size_t depth = static_cast<std::size_t>(std::distance(candidate.root.begin(), candidate.root.end()));
        if (!best || depth > best_depth) {
            best_depth = depth;
            best = std::move(candidate);
        }
    };
    for (const auto& configured : host.volumes) {
        Volume volume = volume_for_explicit(configured, visible);
        if (volume.mounted && is_within(path, volume.root)) consider(std::move(volume));
    }
    for (const MountEntry& entry : visible)
        if (is_within(path, entry.mount_point)) consider(volume_for_mount(entry));
    if (!best) return Problem{ExitCode::unknown_volume, fmt::format("{}: not on any mounted volume", argument)};
    if (!has_volume_config(best->root))
        return Problem{ExitCode::unknown_volume, fmt::format("{}: not a volwatch volume ({} has no {})", argument,
                                                             best->root.string(), volume_config_relpath)};
    return *best;
}

}  // namespace volwatch
