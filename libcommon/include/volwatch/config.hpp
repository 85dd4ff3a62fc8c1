// The host config (trusted, /etc/volwatch/volwatch.toml) and the volume config
// (untrusted, <root>/etc/volwatch/bootcaches.toml), loaded into typed structs.
// This module is the only user of toml++. Every error names file, line and key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "volwatch/duration.hpp"
#include "volwatch/error.hpp"

namespace volwatch {

inline constexpr const char* default_host_config_path = "/etc/volwatch/volwatch.toml";
inline constexpr const char* volume_config_relpath = "etc/volwatch/bootcaches.toml";
/// Config files larger than this are refused before parsing (hostile volumes).
inline constexpr std::uintmax_t max_config_bytes = 1024 * 1024;

enum class WatchBackend { automatic, fanotify, inotify };

/// A command volwatch may run, defined only in the host config.
struct Rebuilder {
    std::string name;
    std::vector<std::string> argv;  // never empty; placeholders {root} {volume} {cache} {product}
    Duration timeout{std::chrono::minutes(10)};
};

/// [helpers.entry]: a Boot Loader Specification Type #1 entry written on each
/// target of a [[helpers]] table at every switch (boot_entries.hpp).
struct BootEntryConfig {
    std::string id = "volwatch";       // names loader/entries/<id>-<generation>[+<tries>].conf; [A-Za-z0-9._-], no '+'
    std::string title = "volwatch";    // may hold {generation} and {slot}; " (generation N)" is appended
    std::string linux_file;            // one of the volume's helper files, lexically normal
    std::vector<std::string> initrd;   // helper files, lexically normal, in order
    std::string options;               // kernel command line; may hold {generation} and {slot}
    int tries = 0;                     // boot counting: 0 = off, 1..9 tries
    int line = 0;                      // where [helpers.entry] starts
};

/// Where a volume's helper files are copied to; defined only in the host config.
struct HelperMapping {
    std::string volume;  // a path inside the volume, or "UUID=..."
    std::vector<std::filesystem::path> targets;  // directories or device specs (helper_device.hpp), as parsed
    std::string fstype;          // the file-system type a device target must hold ("" = any)
    bool require_mount = false;  // a target that is not a mount point is an error, even before the first sync
    std::optional<BootEntryConfig> entry;  // [helpers.entry]: write boot loader entries on the targets
    int line = 0;
};

/// The file that seals a helper slot (docs/helpers.md). A helper file may not
/// be named like it, nor like its temporary (".MANIFEST.json.tmp.PID"), in
/// any letter case: vfat helpers fold case.
inline constexpr const char* helper_manifest_name = "MANIFEST.json";

struct HostConfig {
    std::filesystem::path source;  // the file it came from; empty for built-in defaults
    std::filesystem::path lock_dir{"/run/volwatch"};
    Duration settle{std::chrono::seconds(5)};
    Duration settle_max{std::chrono::seconds(60)};
    WatchBackend watch_backend = WatchBackend::automatic;
    Duration startup_delay{std::chrono::seconds(300)};
    int max_failures = 5;
    int max_attempts = 25;
    bool discover = true;
    std::vector<std::filesystem::path> volumes;
    bool hold_unmount = true;
    std::vector<std::filesystem::path> defer_while;
    std::map<std::string, Rebuilder> rebuilders;
    std::vector<HelperMapping> helpers;
};

enum class Depth { shallow, deep };

/// One cache of a volume: a product derived from sources by a host rebuilder.
struct CacheSpec {
    std::string name;                  // [A-Za-z0-9._-], unique within the volume
    std::vector<std::string> sources;  // relative to the volume root, never empty
    std::string product;               // relative to the volume root
    std::vector<std::string> outputs;  // paths or globs beneath a source that the rebuilder itself writes
    Depth depth = Depth::shallow;
    std::string rebuild;               // the name of a host-config rebuilder
    int line = 0;                      // where the [[cache]] table starts
};

struct VolumeConfig {
    std::filesystem::path source;  // the file it came from, as shown in messages
    int version = 1;
    std::vector<CacheSpec> caches;
    std::vector<std::string> helper_files;  // relative to the volume root
    /// [helpers] depends: helper file (lexically normal) -> the caches whose
    /// failure holds it back. A file that is (or lies beneath) a cache's
    /// product depends on that cache without being listed.
    std::map<std::string, std::vector<std::string>> helper_depends;
};

/// Where the host config comes from: `--config` if given, else
/// $VOLWATCH_CONFIG if set and non-empty, else the default path.
/// `explicit_choice` is true unless the default path was chosen.
struct HostConfigLocation {
    std::filesystem::path path;
    bool explicit_choice = false;
};
[[nodiscard]] HostConfigLocation locate_host_config(const std::optional<std::filesystem::path>& flag);

/// Loads the host config at `where`. A missing default file yields the
/// built-in defaults; a missing explicit file, unreadable or invalid content
/// fails with bad_host_config and "FILE:LINE: KEY: what is wrong".
[[nodiscard]] Result<HostConfig> load_host_config(const HostConfigLocation& where);

/// What every program's command line may override in the host config.
struct HostOverrides {
    std::optional<std::filesystem::path> config;    // --config
    std::optional<std::filesystem::path> lock_dir;  // --lock-dir
};

/// Locates and loads the host config (--config, $VOLWATCH_CONFIG, default),
/// then applies the command-line overrides on top.
[[nodiscard]] Result<HostConfig> load_host_config(const HostOverrides& overrides);

/// Parses host-config text; `name` is the file name used in messages.
[[nodiscard]] Result<HostConfig> parse_host_config(std::string_view text, const std::string& name);

/// Loads the volume config beneath the open volume root `root_fd` (opened
/// with safe resolution, so a symlinked config cannot point elsewhere).
/// `display_root` prefixes the file name in messages. Fails with
/// unknown_volume when the file does not exist and bad_volume_config for any
/// other problem, including rebuilders the host does not define and paths
/// that escape the volume.
[[nodiscard]] Result<VolumeConfig> load_volume_config(int root_fd, const std::filesystem::path& display_root,
                                                      const HostConfig& host);

/// Parses volume-config text against `host`; `name` is used in messages.
/// Checks paths lexically only (load_volume_config also resolves them).
[[nodiscard]] Result<VolumeConfig> parse_volume_config(std::string_view text, const std::string& name,
                                                       const HostConfig& host);

/// A stable digest of everything that decides how `cache` is built: its
/// volume-config entry and its resolved rebuilder from the host config.
[[nodiscard]] std::string config_digest(const CacheSpec& cache, const HostConfig& host);

/// Expands the placeholders of `argv` ({root} {volume} {cache} {product}),
/// each into exactly one argument; unknown placeholders are left as written
/// (a host config with one in a rebuilder's argv does not load).
[[nodiscard]] std::vector<std::string> expand_argv(const std::vector<std::string>& argv,
                                                   const std::map<std::string, std::string>& values);

}  // namespace volwatch
