// Helper partitions (DESIGN §5): targets named by the host config that must
// hold copies of a volume's helper files.
//
// On a helper target T (layout shared with vrebuild's crash-consistent sync,
// see docs/helpers.md):
//   T/volwatch/slot-a/, T/volwatch/slot-b/   two slots; one is live
//   T/volwatch/slot-<s>/<relpath>            the copied files of that generation
//   T/volwatch/slot-<s>/MANIFEST.json        written last into a slot: the slot is complete
//       {"version":1,"volume":ID,"generation":N,"files":{REL:{"size":S,"hash":H}}}
//   T/volwatch/current, T/volwatch/current.new
//       "generation=N\nslot=a\ncheck=<16 hex>\n" (also valid GRUB script);
//       the live slot is the valid pointer with the highest generation whose
//       slot has a complete manifest of the same generation. FAT cannot rename
//       over a file atomically, so a crash may leave either pointer or both.
// On the volume, one bootstamp per target, written after the switch:
//   <root>/var/lib/volwatch/bootstamps/<16 hex of the target path>.json
//       {"version":1,"target":T,"generation":N,
//        "files":{REL:{"size":S,"mtime_ns":M,"ctime_ns":C,"hash":H}}}
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/staleness.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {

inline constexpr const char* bootstamp_reldir = "var/lib/volwatch/bootstamps";

struct StampedFile {
    std::uint64_t size = 0;
    FileTime mtime = 0;
    FileTime ctime = 0;
    std::string hash;
};

struct Bootstamp {
    std::string target;
    std::uint64_t generation = 0;
    std::map<std::string, StampedFile> files;
    std::optional<bool> mount_root;  // whether the target was a mount point at this sync (absent in old stamps)
    std::string filesystem;          // its file system at this sync, as HelperMount::filesystem
};

/// What a helper target is at the moment: its own mount or a directory of
/// its parent's file system (an unmounted ESP is a bare /boot/efi on /).
struct HelperMount {
    bool mount_root = false;
    std::string filesystem;  // "<f_type>:<f_fsid>" in hex, from statfs(2)
    /// Of a mount root: the directory of its file system mounted there, as
    /// mountinfo's root field ("/" the whole file system, "/sub" a bind
    /// mount of a subdirectory); "" when not a mount root or not found.
    std::string fs_root;
};
/// Probes `target` (triggering an automount, as a copy would). Mount roots
/// come from statx STATX_ATTR_MOUNT_ROOT, else from st_dev differing from
/// the parent's; fs_root from this thread's mountinfo (find_mount). nullopt
/// when the target cannot be examined.
[[nodiscard]] std::optional<HelperMount> probe_helper_mount(const std::filesystem::path& target);

struct HelperManifest {
    std::string volume;
    std::uint64_t generation = 0;
    std::map<std::string, StampedFile> files;  // only size and hash are meaningful
};

/// The live slot of a helper target, if it has one.
struct LivePointer {
    std::string slot;  // "a" or "b"
    std::uint64_t generation = 0;
    HelperManifest manifest;
    std::string pointer_file;  // "current" or "current.new": which file named it
};
[[nodiscard]] std::optional<LivePointer> read_live_pointer(const std::filesystem::path& target);

/// The text of a pointer file for `slot` at `generation`, with its check line.
[[nodiscard]] std::string format_pointer(const std::string& slot, std::uint64_t generation);
/// Parses a pointer file; nullopt when damaged (torn write, bad check line).
[[nodiscard]] std::optional<std::pair<std::string, std::uint64_t>> parse_pointer(std::string_view text);

/// The bootstamp's path relative to the volume root for helper `target`.
[[nodiscard]] std::string bootstamp_relpath(const std::filesystem::path& target);
[[nodiscard]] std::string format_bootstamp(const Bootstamp& stamp);
[[nodiscard]] std::optional<Bootstamp> parse_bootstamp(std::string_view text);
[[nodiscard]] std::string format_manifest(const HelperManifest& manifest);
[[nodiscard]] std::optional<HelperManifest> parse_manifest(std::string_view text);

/// A helper target as the host config names it.
struct HelperTarget {
    std::filesystem::path path;  // a directory, or a device spec ("UUID=...", "/dev/vdb2"; helper_device.hpp)
    bool require_mount = false;  // [[helpers]] require_mount
    std::string fstype;          // [[helpers]] fstype: the type a device target must hold ("" = any)
    std::string stamp_key;       // keys the bootstamp instead of `path` (a device target's spec while it is mounted)
    std::optional<BootEntryConfig> entry;  // [helpers.entry]: boot loader entries written at each switch
};

/// Why `helper` (at its path) must not be used now, or "" when it may. It is
/// not a mount point although require_mount is set or it was one at the last
/// sync (`stamp`), or it is another file system than at the last sync and
/// holds no volwatch slot (`has_slot`) unless `allow_new_filesystem`
/// (vrebuild --force: a replaced disk): "not mounted? ...". With boot entries
/// (helper.entry), it is not the root of its file system, which no option
/// overrides: "boot entries need the root of the partition ...".
[[nodiscard]] std::string helper_mount_problem(const HelperTarget& helper, const HelperMount& now, const std::optional<Bootstamp>& stamp,
                                               bool has_slot, bool allow_new_filesystem);

/// What keys the bootstamp of `target`: its stamp_key, else its path.
[[nodiscard]] inline std::filesystem::path stamp_identity(const HelperTarget& target) {
    return target.stamp_key.empty() ? target.path : std::filesystem::path(target.stamp_key);
}

/// The helper targets the host config assigns to `volume` (matched by
/// "UUID=..." or by a path that resolves inside the volume's root).
[[nodiscard]] std::vector<HelperTarget> helper_targets_for(const Volume& volume, const HostConfig& host);

/// The host config's helper targets for boot-loader scripts (contrib/grub):
/// one line per target, in config order, "VOLUME<TAB>TARGET<TAB>FSTYPE\n" with
/// VOLUME and TARGET as written in the config and FSTYPE its [[helpers]]
/// fstype or "-". Fails with bad_host_config ("FILE:LINE: helpers: ...") when
/// a volume or target holds a tab, a newline or is empty, which a line cannot carry.
[[nodiscard]] Result<std::string> format_helper_list(const HostConfig& host);

/// The bootstamp of helper `target` on the volume at `root_fd`, if readable.
[[nodiscard]] std::optional<Bootstamp> read_bootstamp(int root_fd, const std::filesystem::path& target);

struct HelperVerdict {
    std::filesystem::path target;
    CacheState state = CacheState::clean;
    std::string reason;
    std::uint64_t generation = 0;
};

/// Checks helper `target` of the volume at `root_fd` against its bootstamp
/// and its own manifest. `verify_content` also hashes the copies on the
/// helper. A target that is missing, or not mounted (helper_mount_problem),
/// is an error, never clean.
[[nodiscard]] HelperVerdict check_helper(int root_fd, const VolumeConfig& config, const HelperTarget& target,
                                         bool verify_content);

}  // namespace volwatch
