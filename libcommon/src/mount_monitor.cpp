#include "volwatch/mount_monitor.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/mountinfo.hpp"

namespace volwatch {
namespace {

// Debian 12's headers predate these (Linux 6.8 statx, 6.8 statmount, 6.14
// mount notifications); the values are the kernel's ABI.
constexpr unsigned statx_mnt_id_unique = 0x4000;
constexpr long sys_statmount = 457;
constexpr unsigned fan_report_mnt = 0x00004000;
constexpr unsigned fan_mark_mntns = 0x00000110;
constexpr std::uint64_t fan_mnt_attach = 0x01000000;
constexpr std::uint64_t fan_mnt_detach = 0x02000000;
constexpr std::uint8_t fan_event_info_type_mnt = 7;
constexpr std::uint8_t fan_event_info_type_mnt_early = 6;  // the number in the series before it was merged
constexpr std::uint64_t statmount_sb_basic = 0x1;
constexpr std::uint64_t statmount_mnt_basic = 0x2;
constexpr std::uint64_t statmount_mnt_root = 0x8;
constexpr std::uint64_t statmount_mnt_point = 0x10;
constexpr std::uint64_t statmount_fs_type = 0x20;
constexpr std::uint32_t sb_rdonly = 1;
constexpr std::uint64_t mount_attr_rdonly = 1;

struct MntIdReq {
    std::uint32_t size;
    std::uint32_t spare;
    std::uint64_t mnt_id;
    std::uint64_t param;
};

// The fixed head of struct statmount (include/uapi/linux/mount.h); string
// fields are offsets into the buffer after the 512-byte fixed part.
struct StatmountHead {
    std::uint32_t size;
    std::uint32_t mnt_opts;
    std::uint64_t mask;
    std::uint32_t sb_dev_major;
    std::uint32_t sb_dev_minor;
    std::uint64_t sb_magic;
    std::uint32_t sb_flags;
    std::uint32_t fs_type;
    std::uint64_t mnt_id;
    std::uint64_t mnt_parent_id;
    std::uint32_t mnt_id_old;
    std::uint32_t mnt_parent_id_old;
    std::uint64_t mnt_attr;
    std::uint64_t mnt_propagation;
    std::uint64_t mnt_peer_group;
    std::uint64_t mnt_master;
    std::uint64_t propagate_from;
    std::uint32_t mnt_root;
    std::uint32_t mnt_point;
};
constexpr std::size_t statmount_fixed_size = 512;

struct MntInfo {
    fanotify_event_info_header hdr;
    std::uint64_t mnt_id;
};

class MountinfoMonitor final : public MountMonitor {
public:
    MountinfoMonitor() : fd_(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)) {
        if (!fd_) throw Failure(ExitCode::internal, fmt::format("/proc/self/mountinfo: {}", std::strerror(errno)));
    }
    [[nodiscard]] std::string_view name() const override { return "mountinfo"; }
    [[nodiscard]] int fd() const override { return fd_.get(); }
    // EPOLLIN is always set on mountinfo and must not be asked for; the
    // kernel raises EPOLLPRI once per change, reset by the poll itself.
    [[nodiscard]] std::uint32_t poll_events() const override { return EPOLLPRI; }
    bool drain(const MountInterest&) override { return true; }
    [[nodiscard]] bool queues_events() const override { return false; }

private:
    UniqueFd fd_;
};

class FanotifyMountMonitor final : public MountMonitor {
public:
    explicit FanotifyMountMonitor(UniqueFd fd) : fd_(std::move(fd)) {}
    [[nodiscard]] std::string_view name() const override { return "fanotify"; }
    [[nodiscard]] int fd() const override { return fd_.get(); }
    [[nodiscard]] std::uint32_t poll_events() const override { return EPOLLIN; }
    [[nodiscard]] bool queues_events() const override { return true; }

    bool drain(const MountInterest& interest) override {
        bool relevant = false;
        alignas(fanotify_event_metadata) char buffer[16 * 1024];
        for (;;) {
            ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            // Records are padded to 4 bytes only: copy each header out before use.
            for (std::size_t offset = 0; offset + sizeof(fanotify_event_metadata) <= static_cast<std::size_t>(n);) {
                fanotify_event_metadata meta{};
                std::memcpy(&meta, buffer + offset, sizeof meta);
                if (meta.event_len < sizeof meta || offset + meta.event_len > static_cast<std::size_t>(n)) break;
                const char* p = buffer + offset + meta.metadata_len;
                const char* end = buffer + offset + meta.event_len;
                offset += meta.event_len;
                if ((meta.mask & FAN_Q_OVERFLOW) != 0) {
                    relevant = true;
                    continue;
                }
                if (relevant) continue;  // already decided; keep draining
                while (p + sizeof(MntInfo) <= end) {
                    MntInfo info{};
                    std::memcpy(&info, p, sizeof info);
                    if (info.hdr.len == 0) break;
                    bool is_mnt = info.hdr.info_type == fan_event_info_type_mnt ||
                                  (info.hdr.info_type == fan_event_info_type_mnt_early && info.hdr.len == sizeof(MntInfo));
                    if (is_mnt) relevant |= matters(meta.mask, info.mnt_id, interest);
                    p += info.hdr.len;
                }
            }
        }
        return relevant;
    }

private:
    static bool matters(std::uint64_t mask, std::uint64_t id, const MountInterest& interest) {
        if (interest.mount_ids.count(id) != 0) return true;  // one of ours went (or moved)
        if ((mask & fan_mnt_attach) == 0) return false;      // a detach of a mount we do not use
        auto facts = stat_mount(id);
        if (!facts) return true;  // cannot tell: look
        if (interest.roots.count(facts->mount_point) != 0) return true;  // covers a volume
        if (facts->root != "/" || is_pseudo_fs(facts->fs_type) || is_network_fs(facts->fs_type) || facts->read_only)
            return false;  // a bind of a subtree, tmpfs, NFS, read-only: never a volume
        return true;
    }

    UniqueFd fd_;
};

}  // namespace

std::uint64_t unique_mount_id(const std::filesystem::path& path) {
    struct statx st {};
    if (::statx(AT_FDCWD, path.c_str(), AT_NO_AUTOMOUNT, statx_mnt_id_unique, &st) != 0) return 0;
    if ((st.stx_mask & statx_mnt_id_unique) == 0) return 0;
    return st.stx_mnt_id;
}

std::optional<MountFacts> stat_mount(std::uint64_t id) {
    MntIdReq req{sizeof(MntIdReq), 0, id,
                 statmount_sb_basic | statmount_mnt_basic | statmount_mnt_root | statmount_mnt_point | statmount_fs_type};
    std::vector<char> buffer(statmount_fixed_size + 8192);
    long rc = ::syscall(sys_statmount, &req, buffer.data(), buffer.size(), 0);
    if (rc != 0) return std::nullopt;
    StatmountHead head{};
    std::memcpy(&head, buffer.data(), sizeof head);
    if (head.size > buffer.size()) return std::nullopt;
    auto text = [&](std::uint64_t flag, std::uint32_t offset) -> std::string {
        if ((head.mask & flag) == 0 || statmount_fixed_size + offset >= head.size) return {};
        return std::string(buffer.data() + statmount_fixed_size + offset);
    };
    MountFacts facts;
    facts.mount_point = text(statmount_mnt_point, head.mnt_point);
    facts.root = text(statmount_mnt_root, head.mnt_root);
    facts.fs_type = text(statmount_fs_type, head.fs_type);
    facts.read_only = (head.sb_flags & sb_rdonly) != 0 || (head.mnt_attr & mount_attr_rdonly) != 0;
    if (facts.mount_point.empty()) return std::nullopt;
    return facts;
}

std::unique_ptr<MountMonitor> make_mount_monitor(bool try_fanotify, std::string* why_not) {
    auto fallback = [&](std::string why) -> std::unique_ptr<MountMonitor> {
        if (why_not != nullptr) *why_not = std::move(why);
        return std::make_unique<MountinfoMonitor>();
    };
    if (!try_fanotify) return fallback("not privileged");
    // statmount decodes the mounts the notifications name: without it they are no help.
    if (!stat_mount(unique_mount_id("/"))) return fallback("the kernel has no statmount (Linux 6.8+)");
    int fd = ::fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | fan_report_mnt, O_RDONLY);
    if (fd < 0) return fallback(fmt::format("no fanotify mount notifications (Linux 6.14+): {}", std::strerror(errno)));
    UniqueFd fan(fd);
    UniqueFd ns(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
    if (!ns || ::fanotify_mark(fd, FAN_MARK_ADD | fan_mark_mntns, fan_mnt_attach | fan_mnt_detach, ns.get(), nullptr) != 0)
        return fallback(fmt::format("cannot watch the mount namespace: {}", std::strerror(errno)));
    return std::make_unique<FanotifyMountMonitor>(std::move(fan));
}

}  // namespace volwatch
