// Telling when the mount table changed in a way that matters to vwatch
// (DESIGN §6). Two backends behind one interface: fanotify mount
// notifications (FAN_MNT_ATTACH / FAN_MNT_DETACH on the mount namespace,
// Linux 6.14+, CAP_SYS_ADMIN), which name each mount so that unrelated ones
// are filtered out with statmount(2) without re-reading the table; else
// /proc/self/mountinfo, which the kernel flags with POLLPRI on any change.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace volwatch {

/// What the daemon currently depends on in the mount table.
struct MountInterest {
    std::set<std::uint64_t> mount_ids;  // unique ids of the mounts under current volumes
    std::set<std::string> roots;        // current volume roots (a mount over one hides it)
};

class MountMonitor {
public:
    virtual ~MountMonitor() = default;
    /// "fanotify" or "mountinfo".
    [[nodiscard]] virtual std::string_view name() const = 0;
    [[nodiscard]] virtual int fd() const = 0;
    /// The epoll events to wait for on fd().
    [[nodiscard]] virtual std::uint32_t poll_events() const = 0;
    /// Consumes what is pending; true when the mount table must be re-read.
    /// The mountinfo backend cannot tell, so it always says true.
    [[nodiscard]] virtual bool drain(const MountInterest& interest) = 0;
    /// True when events wait in a queue until drained (fanotify), so the
    /// daemon may stop listening for a while and find them all afterwards.
    /// Not mountinfo: each poll of it consumes the change it reports, and
    /// epoll polls twice when a descriptor is added, so a change made while
    /// nobody listened would be lost.
    [[nodiscard]] virtual bool queues_events() const = 0;
};

/// The fanotify monitor when `try_fanotify` and the kernel allows it, else
/// the mountinfo one. Throws Failure when neither can be set up.
[[nodiscard]] std::unique_ptr<MountMonitor> make_mount_monitor(bool try_fanotify, std::string* why_not = nullptr);

/// The unique (never reused) id of the mount `path` is on (statx
/// STATX_MNT_ID_UNIQUE, Linux 6.8+); 0 when unknown.
[[nodiscard]] std::uint64_t unique_mount_id(const std::filesystem::path& path);

/// A mount as statmount(2) describes it.
struct MountFacts {
    std::string mount_point;
    std::string root;     // within its file system: "/" unless a bind mount of a subtree
    std::string fs_type;
    bool read_only = false;
};
/// statmount(2) of the mount with unique id `id`; nullopt when it is gone or
/// the kernel has no statmount.
[[nodiscard]] std::optional<MountFacts> stat_mount(std::uint64_t id);

}  // namespace volwatch
