#include "volwatch/helpers.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/boot_entries.hpp"
#include "volwatch/digest.hpp"
#include "volwatch/fsutil.hpp"
#include "volwatch/lines.hpp"
#include "volwatch/mountinfo.hpp"
#include "volwatch/output.hpp"
#include "volwatch/safe_path.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t max_metadata_bytes = 4 * 1024 * 1024;

FileTime to_ns(const struct timespec& ts) { return static_cast<FileTime>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

std::optional<std::string> read_fd(int fd) { return read_regular_file(fd, max_metadata_bytes); }
std::optional<std::string> read_path(const fs::path& path) { return read_regular_file(path, max_metadata_bytes); }

nlohmann::json files_json(const std::map<std::string, StampedFile>& files, bool with_times) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [path, file] : files) {
        nlohmann::json entry = {{"size", file.size}, {"hash", file.hash}};
        if (with_times) {
            entry["mtime_ns"] = file.mtime;
            entry["ctime_ns"] = file.ctime;
        }
        out[path] = entry;
    }
    return out;
}

std::map<std::string, StampedFile> files_from_json(const nlohmann::json& json) {
    std::map<std::string, StampedFile> files;
    for (const auto& [path, entry] : json.items()) {
        StampedFile file;
        file.size = entry.at("size").get<std::uint64_t>();
        file.hash = entry.at("hash").get<std::string>();
        file.mtime = entry.value("mtime_ns", FileTime{0});
        file.ctime = entry.value("ctime_ns", FileTime{0});
        files.emplace(path, file);
    }
    return files;
}

}  // namespace

std::string format_pointer(const std::string& slot, std::uint64_t generation) {
    std::string body = fmt::format("generation={}\nslot={}\n", generation, slot);
    return fmt::format("{}check={:016x}\n", body, stable_hash(body));
}

std::optional<std::pair<std::string, std::uint64_t>> parse_pointer(std::string_view text) {
    std::size_t check = text.find("check=");
    if (check == std::string_view::npos) return std::nullopt;
    std::string_view body = text.substr(0, check);
    std::string_view rest = text.substr(check + 6);
    while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.remove_suffix(1);
    if (rest != fmt::format("{:016x}", stable_hash(body))) return std::nullopt;
    std::string slot;
    std::uint64_t generation = 0;
    bool has_generation = false;
    for (std::string_view lines = body, line; next_line(lines, line);) {
        if (line.rfind("slot=", 0) == 0) slot = std::string(line.substr(5));
        if (line.rfind("generation=", 0) == 0) {
            std::string digits(line.substr(11));
            char* stop = nullptr;
            generation = std::strtoull(digits.c_str(), &stop, 10);
            has_generation = !digits.empty() && stop == digits.c_str() + digits.size();
        }
    }
    if (!has_generation || (slot != "a" && slot != "b" && slot != "c")) return std::nullopt;
    return std::make_pair(slot, generation);
}

std::optional<LivePointer> read_live_pointer(const fs::path& target) {
    std::optional<LivePointer> best;
    for (const char* name : {"current", "current.new"}) {
        auto text = read_path(target / "volwatch" / name);
        if (!text) continue;
        auto pointer = parse_pointer(*text);
        if (!pointer || (best && best->generation >= pointer->second)) continue;
        auto manifest_text = read_path(target / "volwatch" / ("slot-" + pointer->first) / helper_manifest_name);
        if (!manifest_text) continue;
        auto manifest = parse_manifest(*manifest_text);
        if (!manifest || manifest->generation != pointer->second) continue;
        best = LivePointer{pointer->first, pointer->second, std::move(*manifest), name};
    }
    return best;
}

std::string bootstamp_relpath(const fs::path& target) {
    return fmt::format("{}/{:016x}.json", bootstamp_reldir, stable_hash(target.lexically_normal().string()));
}

std::string format_bootstamp(const Bootstamp& stamp) {
    nlohmann::json json = {{"version", 1}, {"target", stamp.target}, {"generation", stamp.generation},
                           {"files", files_json(stamp.files, true)}};
    if (stamp.mount_root) json["mount_root"] = *stamp.mount_root;
    if (!stamp.filesystem.empty()) json["filesystem"] = stamp.filesystem;
    return json_text(json, 2) + "\n";
}

std::optional<Bootstamp> read_bootstamp(int root_fd, const fs::path& target) {
    auto fd = open_beneath(root_fd, bootstamp_relpath(target), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!fd) return std::nullopt;
    auto text = read_fd(fd->get());
    if (!text) return std::nullopt;
    return parse_bootstamp(*text);
}

std::optional<HelperMount> probe_helper_mount(const fs::path& target) {
    HelperMount mount;
    struct statx stx {};
    // No AT_NO_AUTOMOUNT: an automounted ESP is mounted by this, as by a copy.
    if (::statx(AT_FDCWD, target.c_str(), 0, STATX_BASIC_STATS, &stx) != 0) return std::nullopt;
    if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) {
        mount.mount_root = (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    } else {
        // Before Linux 5.8: a mount of another device (a bind mount of the
        // same file system goes unseen, which only the attribute tells).
        struct stat self {}, parent {};
        if (::stat(target.c_str(), &self) != 0) return std::nullopt;
        if (::stat((target / "..").c_str(), &parent) != 0) return std::nullopt;
        mount.mount_root = self.st_dev != parent.st_dev || self.st_ino == parent.st_ino;
    }
    struct statfs fs_stat {};
    if (::statfs(target.c_str(), &fs_stat) != 0) return std::nullopt;
    unsigned first = 0, second = 0;
    std::memcpy(&first, &fs_stat.f_fsid, sizeof first);
    std::memcpy(&second, reinterpret_cast<const char*>(&fs_stat.f_fsid) + sizeof first, sizeof second);
    mount.filesystem = fmt::format("{:x}:{:08x}{:08x}", static_cast<unsigned long>(fs_stat.f_type), first, second);
    if (mount.mount_root) {
        if (auto entry = find_mount(target, ProcMountTable(thread_mountinfo))) mount.fs_root = entry->root;
    }
    return mount;
}

std::string helper_mount_problem(const HelperTarget& helper, const HelperMount& now, const std::optional<Bootstamp>& stamp,
                                 bool has_slot, bool allow_new_filesystem) {
    const fs::path& target = helper.path;
    if (!now.mount_root && helper.require_mount)
        return fmt::format("not mounted? {} is not a mount point (require_mount = true in the host config)", target.string());
    bool was_mounted = stamp && stamp->mount_root.value_or(false);
    if (!now.mount_root && was_mounted)
        return fmt::format("not mounted? {} was a mount point at the last sync (generation {}) and is not one now",
                           target.string(), stamp->generation);
    // An entry names /volwatch/slot-S/... from the root of the partition the
    // boot loader reads: on anything else it names nothing.
    if (helper.entry && (!now.mount_root || now.fs_root != "/")) {
        std::string why = !now.mount_root       ? fmt::format("{} is not a mount point", target.string())
                          : now.fs_root.empty() ? fmt::format("cannot find the mount at {} in {}", target.string(), thread_mountinfo)
                                                : fmt::format("{} is a bind mount of {} of its file system, not of its root",
                                                              target.string(), escape_for_terminal(now.fs_root));
        return fmt::format("boot entries need the root of the partition the boot loader reads: {} ([helpers.entry] in the host config)", why);
    }
    if (now.mount_root && was_mounted && !stamp->filesystem.empty() && stamp->filesystem != now.filesystem && !has_slot &&
        !allow_new_filesystem)
        return fmt::format("not mounted? {} is another file system than at the last sync (generation {}) and holds no "
                           "volwatch slot; if it replaces the old helper, run vrebuild --force",
                           target.string(), stamp->generation);
    return "";
}

std::optional<Bootstamp> parse_bootstamp(std::string_view text) {
    auto json = nlohmann::json::parse(text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return std::nullopt;
    try {
        if (json.at("version").get<int>() != 1) return std::nullopt;
        Bootstamp stamp;
        stamp.target = json.at("target").get<std::string>();
        stamp.generation = json.at("generation").get<std::uint64_t>();
        stamp.files = files_from_json(json.at("files"));
        if (json.contains("mount_root")) stamp.mount_root = json.at("mount_root").get<bool>();
        stamp.filesystem = json.value("filesystem", std::string());
        return stamp;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

std::string format_manifest(const HelperManifest& manifest) {
    nlohmann::json json = {{"version", 1}, {"volume", manifest.volume}, {"generation", manifest.generation},
                           {"files", files_json(manifest.files, false)}};
    return json_text(json, 2) + "\n";
}

std::optional<HelperManifest> parse_manifest(std::string_view text) {
    auto json = nlohmann::json::parse(text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return std::nullopt;
    try {
        if (json.at("version").get<int>() != 1) return std::nullopt;
        HelperManifest manifest;
        manifest.volume = json.at("volume").get<std::string>();
        manifest.generation = json.at("generation").get<std::uint64_t>();
        manifest.files = files_from_json(json.at("files"));
        return manifest;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

std::vector<HelperTarget> helper_targets_for(const Volume& volume, const HostConfig& host) {
    std::vector<HelperTarget> targets;
    for (const auto& mapping : host.helpers) {
        bool matches = false;
        if (mapping.volume.rfind("UUID=", 0) == 0) {
            matches = !volume.id.uuid().empty() && mapping.volume.substr(5) == volume.id.uuid();
        } else {
            std::error_code ec;
            fs::path canonical = fs::weakly_canonical(mapping.volume, ec);
            matches = !ec && canonical == volume.root;
        }
        if (matches)
            for (const auto& target : mapping.targets) targets.push_back(HelperTarget{target, mapping.require_mount, mapping.fstype, {}, mapping.entry});
    }
    return targets;
}

Result<std::string> format_helper_list(const HostConfig& host) {
    std::string text;
    auto unfit = [](const std::string& value) { return value.empty() || value.find_first_of("\t\n\r") != std::string::npos; };
    for (const auto& mapping : host.helpers) {
        for (const auto& target : mapping.targets) {
            for (const std::string* value : {&mapping.volume, &target.native()}) {
                if (unfit(*value))
                    return Problem{ExitCode::bad_host_config,
                                   fmt::format("{}:{}: helpers: \"{}\" cannot be listed one per line (empty, or holds a tab or newline)",
                                               host.source.empty() ? std::string("host config") : host.source.string(), mapping.line,
                                               escape_for_terminal(*value))};
            }
            text += fmt::format("{}\t{}\t{}\n", mapping.volume, target.string(), mapping.fstype.empty() ? "-" : mapping.fstype);
        }
    }
    return text;
}

HelperVerdict check_helper(int root_fd, const VolumeConfig& config, const HelperTarget& helper, bool verify_content) {
    const fs::path& target = helper.path;
    HelperVerdict verdict;
    verdict.target = target;
    auto stale = [&](std::string reason) {
        verdict.state = CacheState::stale;
        verdict.reason = std::move(reason);
        return verdict;
    };
    struct stat target_stat {};
    if (::stat(target.c_str(), &target_stat) != 0 || !S_ISDIR(target_stat.st_mode)) {
        verdict.state = CacheState::error;
        verdict.reason = fmt::format("helper target {} is missing or not a directory", target.string());
        return verdict;
    }
    std::optional<Bootstamp> stamp = read_bootstamp(root_fd, stamp_identity(helper));
    // Before anything else: an unmounted helper's bare directory may even
    // hold an old slot of ours, which must not pass for the helper.
    auto mount = probe_helper_mount(target);
    std::string unmounted = mount ? helper_mount_problem(helper, *mount, stamp, read_live_pointer(target).has_value(), false)
                                  : fmt::format("helper target {}: cannot examine it", target.string());
    if (!unmounted.empty()) {
        verdict.state = CacheState::error;
        verdict.reason = std::move(unmounted);
        return verdict;
    }
    // Entries that name a set that is not there, or a live generation that
    // failed to boot, are errors whatever else is stale.
    BootEntryVerdict entries;
    if (helper.entry) {
        entries = check_boot_entries(target, *helper.entry, config.helper_files, read_live_pointer(target));
        if (entries.error) {
            verdict.state = CacheState::error;
            verdict.reason = std::move(entries.reason);
            if (stamp) verdict.generation = stamp->generation;
            return verdict;
        }
    }
    if (!stamp) return stale("never synced (no bootstamp)");
    verdict.generation = stamp->generation;

    for (const auto& relpath : config.helper_files) {
        std::string key = fs::path(relpath).lexically_normal().string();
        int error = 0;
        auto fd = open_beneath(root_fd, relpath, O_RDONLY | O_NONBLOCK, &error);
        struct stat st {};
        if (!fd || ::fstat(fd->get(), &st) != 0) {
            verdict.state = CacheState::error;
            verdict.reason = fmt::format("helper file {} is missing on the volume", relpath);
            return verdict;
        }
        auto it = stamp->files.find(key);
        if (it == stamp->files.end()) return stale(fmt::format("{} was never copied to {}", relpath, target.string()));
        const StampedFile& copied = it->second;
        if (static_cast<std::uint64_t>(st.st_size) != copied.size || to_ns(st.st_mtim) != copied.mtime ||
            to_ns(st.st_ctim) != copied.ctime)
            return stale(fmt::format("{} changed since it was copied to {}", relpath, target.string()));
    }
    if (stamp->files.size() != config.helper_files.size())
        return stale(fmt::format("the helper file list changed since the last copy to {}", target.string()));

    auto live = read_live_pointer(target);
    if (!live) return stale(fmt::format("{} has no complete volwatch slot (never synced here, or replaced disk?)", target.string()));
    fs::path slot_dir = target / "volwatch" / ("slot-" + live->slot);
    const HelperManifest* manifest = &live->manifest;
    if (live->generation != stamp->generation)
        return stale(fmt::format("{} holds generation {} but the volume copied generation {}", target.string(),
                                 live->generation, stamp->generation));
    for (const auto& [relpath, copied] : stamp->files) {
        auto it = manifest->files.find(relpath);
        if (it == manifest->files.end() || it->second.hash != copied.hash || it->second.size != copied.size)
            return stale(fmt::format("{} on {} differs from what was copied", relpath, target.string()));
        fs::path copy = slot_dir / relpath;
        UniqueFd fd(::open(copy.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0)
            return stale(fmt::format("{} is missing on {}", relpath, target.string()));
        if (static_cast<std::uint64_t>(st.st_size) != copied.size)
            return stale(fmt::format("{} on {} has the wrong size", relpath, target.string()));
        if (verify_content) {
            auto hash = digest_file(fd.get());
            if (!hash || *hash != copied.hash)
                return stale(fmt::format("{} on {} was changed behind volwatch's back", relpath, target.string()));
        }
    }
    if (entries.stale) return stale(std::move(entries.reason));
    return verdict;
}

}  // namespace volwatch
