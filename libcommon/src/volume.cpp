#include "volwatch/volume.hpp"

#include <algorithm>
#include <cerrno>
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

// The visible mounts: when several share a mount point, the last one hides the others.
std::vector<MountEntry> visible_mounts(const MountTable& mounts) {
    std::vector<MountEntry> all = mounts.read();
    std::vector<MountEntry> visible;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
        bool hidden = std::any_of(visible.begin(), visible.end(),
                                  [&](const MountEntry& e) { return e.mount_point == it->mount_point; });
        if (!hidden) visible.push_back(*it);
    }
    std::reverse(visible.begin(), visible.end());
    return visible;
}

Volume volume_for_mount(const MountEntry& entry) {
    Volume volume;
    volume.root = entry.mount_point;
    volume.device = entry.device;
    volume.id = identify_volume(volume.root, entry.device, true, entry.source);
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
    volume.root = root;
    volume.device = st.st_dev;
    auto mount = std::find_if(mounts.begin(), mounts.end(), [&](const MountEntry& e) { return e.mount_point == root.string(); });
    volume.id = identify_volume(root, st.st_dev, mount != mounts.end(), mount != mounts.end() ? mount->source : "");
    return volume;
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
    std::error_code ec;
    for (fs::directory_iterator it(by_uuid_dir, ec), end; !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (::stat(it->path().c_str(), &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == device)
            return it->path().filename().string();
    }
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
