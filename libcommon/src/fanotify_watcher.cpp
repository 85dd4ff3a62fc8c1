// The fanotify backend: one FAN_MARK_FILESYSTEM mark per file system, with
// events reported as a directory handle plus an entry name
// (FAN_REPORT_DFID_NAME). Set-up costs the same whatever the tree size. Each
// event's directory is resolved to a path (open_by_handle_at, cached per
// handle; the cache is dropped whenever a directory moves, so renames never
// leave a stale path) and matched against the volumes' watch plans.
//
// A file system that cannot carry such a mark (no file handles, a zero
// fsid) falls back to inotify for that volume: both backends share one fd.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <optional>
#include <set>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <tuple>
#include <unistd.h>
#include <unordered_map>

#include <fmt/format.h>

#include "volwatch/fd.hpp"
#include "volwatch/mountinfo.hpp"
#include "volwatch/staleness.hpp"
#include "volwatch/watcher.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;

// Not FAN_MODIFY: every write(2) would wake us on a busy file system; a
// source written and closed shows up as FAN_CLOSE_WRITE.
constexpr std::uint64_t mark_mask = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_ATTRIB |
                                    FAN_CLOSE_WRITE | FAN_ONDIR;
constexpr std::size_t max_cached_dirs = 65536;

std::string fsid_key(const __kernel_fsid_t& fsid) {
    return fmt::format("{:08x}{:08x}", static_cast<unsigned>(fsid.val[0]), static_cast<unsigned>(fsid.val[1]));
}

std::size_t depth_of(std::string_view path) {
    return static_cast<std::size_t>(std::count(path.begin(), path.end(), '/'));
}

// True if `inner` is `outer` or beneath it.
bool within(std::string_view inner, std::string_view outer) {
    if (outer == "/") return true;
    return inner.size() >= outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
           (inner.size() == outer.size() || inner[outer.size()] == '/');
}

std::string join(const std::string& dir, std::string_view name) {
    if (name.empty()) return dir;
    return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
}

class FanotifyWatcher final : public Watcher {
public:
    FanotifyWatcher(UniqueFd fan, std::unique_ptr<Watcher> fallback)
        : fan_(std::move(fan)), fallback_(std::move(fallback)), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!epoll_) throw Failure(ExitCode::internal, fmt::format("epoll_create1: {}", std::strerror(errno)));
        for (int fd : {fan_.get(), fallback_->fd()}) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
                throw Failure(ExitCode::internal, fmt::format("epoll_ctl: {}", std::strerror(errno)));
        }
    }

    [[nodiscard]] std::string_view name() const override { return "fanotify"; }
    [[nodiscard]] int fd() const override { return epoll_.get(); }

    Result<WatchSetup> add(WatchKey key, const WatchPlan& plan) override {
        // The nearest existing ancestor of the root carries the mark until the root exists.
        fs::path base = plan.root;
        struct stat st {};
        while (::stat(base.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            if (!base.has_relative_path()) break;
            base = base.parent_path();
        }
        struct statfs sfs {};
        __kernel_fsid_t fsid{};
        bool ok = ::statfs(base.c_str(), &sfs) == 0;
        std::memcpy(&fsid, &sfs.f_fsid, sizeof fsid);
        std::string id = fsid_key(fsid);
        bool zero_fsid = fsid.val[0] == 0 && fsid.val[1] == 0;
        // Marked again even when this group has a mark on the fsid: adding is
        // idempotent, and a file system unmounted and mounted again under the
        // same fsid lost its mark with its old super block.
        if (ok && !zero_fsid &&
            ::fanotify_mark(fan_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mark_mask, AT_FDCWD, base.c_str()) != 0)
            ok = false;
        if (!ok || zero_fsid) {
            // This file system cannot be marked (no file handles, a zero fsid): inotify it.
            fallback_keys_.insert(key);
            return fallback_->add(key, plan);
        }
        Mark& mark = marks_[id];
        // Re-pointed when the file system it was on went (or took another path).
        if (mark.users == 0 || !on_marked_file_system(mark.path, id, mark.dev)) {
            mark.path = base.string();
            mark.dev = st.st_dev;
        }
        ++mark.users;
        Volume vol;
        vol.fsid = id;
        vol.root = fs::path(plan.root).lexically_normal().string();
        if (vol.root.size() > 1 && vol.root.back() == '/') vol.root.pop_back();
        vol.mount_path = base.string();
        for (const auto& target : plan.targets) vol.targets.push_back(Target{join(vol.root, target.relpath), target.role, target.depth});
        vol.skip = join(vol.root, state_relpath);
        volumes_[key] = std::move(vol);
        return WatchSetup{1, true, {}};
    }

    void remove(WatchKey key) override {
        if (fallback_keys_.erase(key) != 0) {
            fallback_->remove(key);
            return;
        }
        auto it = volumes_.find(key);
        if (it == volumes_.end()) return;
        const std::string leaving_path = it->second.mount_path;
        const std::string id = it->second.fsid;
        volumes_.erase(it);
        auto mark = marks_.find(id);
        if (mark == marks_.end()) return;
        if (--mark->second.users > 0) {
            // Keep a path of a volume still here: the leaving one's may go with it.
            if (mark->second.path == leaving_path)
                for (const auto& [other_key, other] : volumes_)
                    if (other.fsid == id && on_marked_file_system(other.mount_path, id, mark->second.dev)) {
                        mark->second.path = other.mount_path;
                        break;
                    }
            return;
        }
        // FAN_MARK_REMOVE acts on whatever file system the path resolves to
        // now. After an unmount or a move the stored path lies on the parent
        // file system, whose own mark (the root volume's, say) must stay.
        // The kernel dropped the mark of an unmounted super block itself; a
        // moved one is found again through the mount table.
        if (auto path = marked_path(mark->second, id))
            ::fanotify_mark(fan_.get(), FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, mark_mask, AT_FDCWD, path->c_str());
        marks_.erase(mark);
        dirs_.clear();
    }

    void read_events(std::vector<WatchEvent>& out) override {
        fallback_->read_events(out);
        std::set<std::tuple<WatchKey, WatchEventKind, WatchRole>> seen;
        for (const auto& e : out) seen.emplace(e.key, e.kind, e.role);
        auto emit = [&](WatchKey key, WatchEventKind kind, WatchRole role, std::string path) {
            if (seen.emplace(key, kind, role).second) out.push_back(WatchEvent{key, kind, role, std::move(path)});
        };
        alignas(fanotify_event_metadata) char buffer[64 * 1024];
        std::map<std::string, UniqueFd> mount_fds;  // opened for this batch only (not O_PATH: open_by_handle_at refuses those); a held fd would block umount
        for (;;) {
            ssize_t n = ::read(fan_.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            // Records are padded to 4 bytes only: copy each header out before use.
            for (std::size_t offset = 0; offset + sizeof(fanotify_event_metadata) <= static_cast<std::size_t>(n);) {
                fanotify_event_metadata meta{};
                std::memcpy(&meta, buffer + offset, sizeof meta);
                if (meta.event_len < sizeof meta || offset + meta.event_len > static_cast<std::size_t>(n)) break;
                if ((meta.mask & FAN_Q_OVERFLOW) != 0) {
                    emit(0, WatchEventKind::overflow, WatchRole::source, "");
                } else {
                    if (meta.fd >= 0) ::close(meta.fd);  // never with FID reporting, but be sure
                    handle(meta, buffer + offset, mount_fds, emit);
                }
                offset += meta.event_len;
            }
        }
    }

private:
    struct Target {
        std::string path;  // absolute
        WatchRole role;
        unsigned depth;
    };
    struct Volume {
        std::string fsid;
        std::string root;
        std::string mount_path;  // an existing directory on the file system, to decode handles
        std::string skip;
        std::vector<Target> targets;
    };
    struct Mark {
        std::string path;  // a directory on the marked file system, when last looked
        dev_t dev = 0;     // st_dev of the file system the mark was placed on
        int users = 0;     // volumes of this group on that file system
    };

    // True if `path` now lies on the file system with fsid `id` and device `dev`.
    static bool on_marked_file_system(const std::string& path, const std::string& id, dev_t dev) {
        struct statfs sfs {};
        struct stat st {};
        if (::statfs(path.c_str(), &sfs) != 0 || ::stat(path.c_str(), &st) != 0) return false;
        __kernel_fsid_t fsid{};
        std::memcpy(&fsid, &sfs.f_fsid, sizeof fsid);
        return fsid_key(fsid) == id && st.st_dev == dev;
    }

    // A path on the file system `mark` was placed on, or nullopt when that
    // file system is mounted nowhere in this namespace any more.
    static std::optional<std::string> marked_path(const Mark& mark, const std::string& id) {
        if (on_marked_file_system(mark.path, id, mark.dev)) return mark.path;
        for (const auto& entry : ProcMountTable().read())
            if (entry.device == mark.dev && on_marked_file_system(entry.mount_point, id, mark.dev)) return entry.mount_point;
        return std::nullopt;
    }

    // A file handle copied out of an event, aligned for open_by_handle_at.
    struct Handle {
        alignas(file_handle) unsigned char storage[sizeof(file_handle) + MAX_HANDLE_SZ];
        [[nodiscard]] file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
    };

    template <class Emit>
    void handle(const fanotify_event_metadata& meta, const char* raw, std::map<std::string, UniqueFd>& mount_fds, Emit& emit) {
        const char* p = raw + meta.metadata_len;
        const char* end = raw + meta.event_len;
        while (p + sizeof(fanotify_event_info_header) <= end) {
            fanotify_event_info_header header{};
            std::memcpy(&header, p, sizeof header);
            if (header.len == 0 || p + header.len > end) break;
            bool dfid = header.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || header.info_type == FAN_EVENT_INFO_TYPE_DFID;
            std::size_t fixed = sizeof(fanotify_event_info_fid) + sizeof(file_handle);
            if (dfid && header.len >= fixed) {
                fanotify_event_info_fid info{};
                std::memcpy(&info, p, sizeof info);
                const char* handle_at = p + sizeof(fanotify_event_info_fid);
                file_handle head{};
                std::memcpy(&head, handle_at, sizeof head);
                if (head.handle_bytes <= MAX_HANDLE_SZ && fixed + head.handle_bytes <= header.len) {
                    Handle handle;
                    std::memcpy(handle.storage, handle_at, sizeof(file_handle) + head.handle_bytes);
                    std::string_view name;
                    if (header.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
                        const char* name_at = handle_at + sizeof(file_handle) + head.handle_bytes;
                        name = std::string_view(name_at, strnlen(name_at, static_cast<std::size_t>(p + header.len - name_at)));
                    }
                    if (name == ".") name = {};
                    // A directory moved or went: cached paths beneath it are wrong now.
                    if ((meta.mask & FAN_ONDIR) != 0 && (meta.mask & (FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE)) != 0)
                        dirs_.clear();
                    std::string id = fsid_key(info.fsid);
                    std::optional<std::string> dir = resolve(id, handle, mount_fds);
                    if (dir) match(id, *dir, name, emit);
                }
            }
            p += header.len;
        }
    }

    // The path of the directory `handle` names on file system `id`, or
    // nullopt when it is gone or not ours.
    std::optional<std::string> resolve(const std::string& id, Handle& handle, std::map<std::string, UniqueFd>& mount_fds) {
        file_handle* fh = handle.get();
        std::string cache_key = id;
        cache_key.append(reinterpret_cast<const char*>(&fh->handle_type), sizeof fh->handle_type);
        cache_key.append(reinterpret_cast<const char*>(fh->f_handle), fh->handle_bytes);
        if (auto it = dirs_.find(cache_key); it != dirs_.end()) return it->second;
        auto mount = mount_fds.find(id);
        if (mount == mount_fds.end()) {
            const Volume* vol = nullptr;
            for (const auto& [key, v] : volumes_)
                if (v.fsid == id) vol = &v;
            if (vol == nullptr) return std::nullopt;
            mount = mount_fds.emplace(id, UniqueFd(::open(vol->mount_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC))).first;
        }
        if (!mount->second) return std::nullopt;
        UniqueFd dir(::open_by_handle_at(mount->second.get(), fh, O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!dir) return std::nullopt;  // deleted since (ESTALE)
        char link[4096];
        std::string proc = fmt::format("/proc/self/fd/{}", dir.get());
        ssize_t len = ::readlink(proc.c_str(), link, sizeof link);
        if (len <= 0 || static_cast<std::size_t>(len) >= sizeof link) return std::nullopt;
        std::string path(link, static_cast<std::size_t>(len));
        if (dirs_.size() >= max_cached_dirs) dirs_.clear();
        dirs_.emplace(std::move(cache_key), path);
        return path;
    }

    template <class Emit>
    void match(const std::string& id, const std::string& dir, std::string_view name, Emit& emit) {
        std::string full = join(dir, name);
        for (const auto& [key, vol] : volumes_) {
            if (vol.fsid != id || within(full, vol.skip)) continue;
            for (const auto& target : vol.targets) {
                bool hit = false;
                if (within(full, target.path)) {
                    // At or beneath the target: the directory holding the entry
                    // must be within the target's depth.
                    hit = full == target.path ||
                          (within(dir, target.path) && depth_of(dir) - depth_of(target.path) < target.depth);
                } else if (within(target.path, full)) {
                    hit = true;  // a directory on the way to the target came or went
                }
                if (!hit) continue;
                std::string rel = within(full, vol.root) && full.size() > vol.root.size() ? full.substr(vol.root.size() + (vol.root == "/" ? 0 : 1)) : full;
                emit(key, WatchEventKind::changed, target.role, std::move(rel));
                break;
            }
        }
    }

    UniqueFd fan_;
    std::unique_ptr<Watcher> fallback_;
    UniqueFd epoll_;
    std::map<WatchKey, Volume> volumes_;
    std::set<WatchKey> fallback_keys_;
    std::map<std::string, Mark> marks_;
    std::unordered_map<std::string, std::string> dirs_;
};

}  // namespace

Result<std::unique_ptr<Watcher>> make_fanotify_watcher() {
    int fd = ::fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME, O_RDONLY | O_LARGEFILE);
    if (fd < 0) {
        int error = errno;
        if (error == EPERM)
            return Problem{ExitCode::permission, "fanotify needs CAP_SYS_ADMIN (run as root, or use --backend inotify)"};
        if (error == EINVAL || error == ENOSYS)
            return Problem{ExitCode::internal, "the kernel has no fanotify with FAN_REPORT_DFID_NAME (Linux 5.9 or later)"};
        return Problem{ExitCode::internal, fmt::format("fanotify_init: {}", std::strerror(error))};
    }
    UniqueFd fan(fd);
    // A file-system mark needs CAP_SYS_ADMIN even where fanotify_init does not.
    if (::fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mark_mask, AT_FDCWD, "/") != 0) {
        int error = errno;
        if (error == EPERM)
            return Problem{ExitCode::permission, "fanotify file-system marks need CAP_SYS_ADMIN (run as root, or use --backend inotify)"};
    } else {
        ::fanotify_mark(fd, FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, mark_mask, AT_FDCWD, "/");
    }
    return std::unique_ptr<Watcher>(std::make_unique<FanotifyWatcher>(std::move(fan), make_inotify_watcher()));
}

}  // namespace volwatch
