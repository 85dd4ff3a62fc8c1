// Watching a volume's paths for changes (DESIGN §6), behind a small
// interface with two Linux backends: inotify (one watch per directory) and
// fanotify (one file-system mark per volume). The daemon registers a plan per
// volume under an opaque key and reads batches of events back.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/error.hpp"

namespace volwatch {

/// Why a path is watched; events carry it so the daemon can tell a source
/// change from its own rebuild writing a product.
enum class WatchRole : std::uint8_t { source, product, helper, config };
[[nodiscard]] std::string_view to_string(WatchRole role);

struct WatchTarget {
    std::string relpath;  // beneath the plan's root, lexically checked
    WatchRole role = WatchRole::source;
    // How many directory levels below the path are watched: 0 the path
    // only, 1 its entries too (shallow sources), unlimited_depth for deep.
    unsigned depth = 0;
};
inline constexpr unsigned unlimited_depth = ~0U;

struct WatchPlan {
    std::filesystem::path root;  // absolute; need not exist yet
    std::vector<WatchTarget> targets;
};

/// The plan for a volume with a valid config: its sources (deep ones
/// recursively, shallow ones with their entries), products, helper files and
/// its volume config.
[[nodiscard]] WatchPlan watch_plan(const std::filesystem::path& root, const VolumeConfig& config);
/// The plan for a volume without a usable config: only the config file, so
/// that its creation or repair is noticed.
[[nodiscard]] WatchPlan config_only_plan(const std::filesystem::path& root);

using WatchKey = std::uint64_t;  // chosen by the daemon; 0 is never a key

enum class WatchEventKind : std::uint8_t {
    changed,    // a watched path (or the way to it) changed
    overflow,   // events were lost: re-check (key 0: every volume)
    unmounted,  // the file system under the watches went away
    limit_reached,  // a new directory could not be watched (path: why)
};

struct WatchEvent {
    WatchKey key = 0;
    WatchEventKind kind = WatchEventKind::changed;
    WatchRole role = WatchRole::source;
    std::string path;  // relative to the plan's root where known, for debug logs
};

struct WatchSetup {
    std::size_t watches = 0;   // inotify: directories watched; fanotify: marks
    bool complete = true;      // false: a limit was reached, some paths are unwatched
    std::string problem;       // why not complete ("inotify watch limit (max_user_watches=8192) reached")
};

class Watcher {
public:
    virtual ~Watcher() = default;
    /// "inotify" or "fanotify".
    [[nodiscard]] virtual std::string_view name() const = 0;
    /// Readable when events are waiting; poll it with EPOLLIN.
    [[nodiscard]] virtual int fd() const = 0;
    /// Starts watching `plan` under `key`. Paths that do not exist yet are
    /// watched through their nearest existing parent. Fails only when nothing
    /// could be watched at all.
    [[nodiscard]] virtual Result<WatchSetup> add(WatchKey key, const WatchPlan& plan) = 0;
    /// Stops watching everything registered under `key`; later events never name it.
    virtual void remove(WatchKey key) = 0;
    /// Reads every waiting event and appends at most one per (key, kind, role).
    virtual void read_events(std::vector<WatchEvent>& out) = 0;
};

/// The inotify backend; throws Failure when inotify is unavailable.
[[nodiscard]] std::unique_ptr<Watcher> make_inotify_watcher();
/// The fanotify backend, or a Problem saying why it cannot be used here
/// (not privileged, kernel without FAN_REPORT_DFID_NAME).
[[nodiscard]] Result<std::unique_ptr<Watcher>> make_fanotify_watcher();

}  // namespace volwatch
