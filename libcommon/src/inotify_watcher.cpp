// The inotify backend: one watch per directory. A target is reached through
// named interests on each directory on the way to it, so a path that does not
// exist yet (or is removed and re-created) is picked up when it appears; the
// target directory itself and, to its depth, the directories beneath carry
// "all entries" interests. Several volumes may share a directory: a watch
// lives as long as any interest in it.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <tuple>
#include <unistd.h>
#include <unordered_map>

#include <fmt/format.h>

#include "volwatch/fd.hpp"
#include "volwatch/staleness.hpp"
#include "volwatch/watcher.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t watch_mask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                     IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW |
                                     IN_EXCL_UNLINK;

std::vector<std::string> split_path(const std::string& relpath) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < relpath.size()) {
        std::size_t slash = relpath.find('/', i);
        if (slash == std::string::npos) slash = relpath.size();
        if (slash > i && relpath.compare(i, slash - i, ".") != 0) parts.push_back(relpath.substr(i, slash - i));
        i = slash + 1;
    }
    return parts;
}

std::string read_first_word(const char* path) {
    std::ifstream in(path);
    std::string value;
    in >> value;
    return value;
}

// The limit that was hit: the system's, and this user namespace's when lower.
std::string max_watches_text() {
    std::string system = read_first_word("/proc/sys/fs/inotify/max_user_watches");
    std::string here = read_first_word("/proc/sys/user/max_inotify_watches");
    std::string text = fmt::format("fs.inotify.max_user_watches={}", system.empty() ? "?" : system);
    if (!here.empty() && here != system && here.size() <= system.size()) text += fmt::format(", user.max_inotify_watches={}", here);
    return text;
}

// True if the file system holding `dir` counts a directory's subdirectories
// in its link count (2 + subdirectories), so that a directory with a count of
// 2 has none and one with N needs reading only until N - 2 are seen. Only the
// file systems known to keep it: btrfs and overlayfs report 1, and a file
// system that reported 2 for every directory would hide whole subtrees.
bool counts_subdirectories(const fs::path& dir) {
    constexpr long ext_magic = 0xEF53;  // ext2, ext3, ext4
    constexpr long tmpfs_magic = 0x01021994;
    constexpr long xfs_magic = 0x58465342;
    struct statfs sfs {};
    if (::statfs(dir.c_str(), &sfs) != 0) return false;
    long type = static_cast<long>(sfs.f_type);
    return type == ext_magic || type == tmpfs_magic || type == xfs_magic;
}

class InotifyWatcher final : public Watcher {
public:
    InotifyWatcher() : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
        if (!fd_) throw Failure(ExitCode::internal, fmt::format("inotify_init1: {}", std::strerror(errno)));
    }

    [[nodiscard]] std::string_view name() const override { return "inotify"; }
    [[nodiscard]] int fd() const override { return fd_.get(); }

    Result<WatchSetup> add(WatchKey key, const WatchPlan& plan) override {
        setup_ = WatchSetup{};
        std::size_t before = nodes_.size();
        // The nearest existing ancestor of the root stands in for it until it exists.
        fs::path base = plan.root;
        std::string prefix;
        struct stat st {};
        while (::lstat(base.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            if (!base.has_relative_path()) break;
            prefix = prefix.empty() ? base.filename().string() : base.filename().string() + "/" + prefix;
            base = base.parent_path();
        }
        for (const WatchTarget& target : plan.targets) {
            Owner owner;
            owner.key = key;
            owner.role = target.role;
            owner.depth = target.depth;
            owner.base = base.string();
            owner.device = st.st_dev;
            owner.subdir_links = counts_subdirectories(base);
            owner.relpath = prefix.empty() ? target.relpath : prefix + "/" + target.relpath;
            owner.skip = prefix.empty() ? state_relpath : prefix + "/" + state_relpath;
            owner.live = true;
            std::uint32_t index = new_owner(std::move(owner));
            setup_target(index);
        }
        setup_.watches = nodes_.size() - before;
        if (nodes_.empty() && !setup_.complete) return Problem{ExitCode::internal, setup_.problem};
        // Count what this key watches, shared directories included.
        std::size_t mine = 0;
        for (const auto& [wd, node] : nodes_)
            for (const auto& interest : node.interests)
                if (owners_[interest.owner].key == key) {
                    ++mine;
                    break;
                }
        setup_.watches = mine;
        return setup_;
    }

    void remove(WatchKey key) override {
        bool any = false;
        for (std::uint32_t i = 0; i < owners_.size(); ++i) {
            if (owners_[i].live && owners_[i].key == key) {
                owners_[i].live = false;
                free_owners_.push_back(i);
                any = true;
            }
        }
        if (!any) return;
        for (auto it = nodes_.begin(); it != nodes_.end();) {
            auto& interests = it->second.interests;
            interests.erase(std::remove_if(interests.begin(), interests.end(),
                                           [&](const Interest& in) { return !owners_[in.owner].live; }),
                            interests.end());
            if (interests.empty()) {
                ::inotify_rm_watch(fd_.get(), it->first);
                it = nodes_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void read_events(std::vector<WatchEvent>& out) override {
        alignas(inotify_event) char buffer[64 * 1024];
        std::set<std::tuple<WatchKey, WatchEventKind, WatchRole>> seen;
        auto emit = [&](WatchKey key, WatchEventKind kind, WatchRole role, std::string path) {
            if (seen.emplace(key, kind, role).second) out.push_back(WatchEvent{key, kind, role, std::move(path)});
        };
        for (;;) {
            ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            for (char* p = buffer; p < buffer + n;) {
                auto* ev = reinterpret_cast<inotify_event*>(p);
                p += sizeof(inotify_event) + ev->len;
                handle(*ev, emit);
            }
        }
    }

private:
    struct Owner {
        WatchKey key = 0;
        WatchRole role = WatchRole::source;
        unsigned depth = 0;
        std::string base;     // existing directory the relpath starts from
        dev_t device = 0;     // base's device: recursion stays on it
        std::string relpath;  // the target, relative to base
        std::string skip;     // volwatch's state directory, never watched
        bool subdir_links = false;  // base's file system counts subdirectories in link counts
        bool live = false;
    };
    // An interest of an owner in a watched directory: every entry (child
    // empty, at `level` below the target) or one named entry on the way.
    struct Interest {
        std::uint32_t owner = 0;
        std::uint32_t level = 0;
        std::string child;
        [[nodiscard]] bool operator==(const Interest&) const = default;
    };
    struct Node {
        int parent = -1;   // -1: name is an absolute path
        std::string name;
        std::vector<Interest> interests;
    };

    std::uint32_t new_owner(Owner owner) {
        if (!free_owners_.empty()) {
            std::uint32_t index = free_owners_.back();
            free_owners_.pop_back();
            owners_[index] = std::move(owner);
            return index;
        }
        owners_.push_back(std::move(owner));
        return static_cast<std::uint32_t>(owners_.size() - 1);
    }

    [[nodiscard]] std::string path_of(int wd) const {
        std::vector<const std::string*> parts;
        for (auto it = nodes_.find(wd); it != nodes_.end(); it = nodes_.find(it->second.parent)) {
            parts.push_back(&it->second.name);
            if (it->second.parent < 0) break;
        }
        std::string path;
        for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
            if (!path.empty() && path.back() != '/') path += '/';
            path += **p;
        }
        return path;
    }

    // Watches the directory `path` names (relative to the working directory
    // or absolute), entry `name` of the watched directory `parent` (-1: `name`
    // is an absolute path); -1 when it cannot (noted in setup_).
    int ensure_watch(const char* path, int parent, const std::string& name) {
        int wd = add_watch(path, parent, name);
        if (wd >= 0) remember(wd, parent, name);
        return wd;
    }

    // The inotify_add_watch of ensure_watch, without recording the watch.
    int add_watch(const char* path, int parent, const std::string& name) {
        int wd = ::inotify_add_watch(fd_.get(), path, watch_mask);
        if (wd < 0 && (errno == ENOSPC || errno == ENOMEM)) {
            std::string shown = parent < 0 ? name : joined(path_of(parent), name);
            if (setup_.complete)
                setup_.problem = errno == ENOSPC ? fmt::format("inotify watch limit reached ({}) at {}",
                                                               max_watches_text(), shown)
                                                 : fmt::format("out of kernel memory for inotify watches at {}", shown);
            setup_.complete = false;
        }
        return wd;
    }

    void remember(int wd, int parent, const std::string& name) {
        auto [it, inserted] = nodes_.try_emplace(wd);
        if (inserted || it->second.parent != parent || it->second.name != name) {
            // New, or moved/renamed since: remember where it is now.
            it->second.parent = parent;
            it->second.name = name;
        }
    }

    static void add_interest(Node& node, Interest interest) {
        if (std::find(node.interests.begin(), node.interests.end(), interest) == node.interests.end())
            node.interests.push_back(std::move(interest));
    }

    void setup_target(std::uint32_t index) {
        const Owner owner = owners_[index];
        std::string path = owner.base;
        int wd = ensure_watch(path.c_str(), -1, path);
        if (wd < 0) return;
        std::vector<std::string> parts = split_path(owner.relpath);
        std::string rel;
        for (std::size_t i = 0; i < parts.size(); ++i) {
            add_interest(nodes_[wd], Interest{index, 0, parts[i]});
            std::string next = joined(path, parts[i]);
            rel = rel.empty() ? parts[i] : rel + "/" + parts[i];
            struct stat st {};
            if (::lstat(next.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;  // missing, or a file: watched by name
            if (i + 1 < parts.size()) {
                wd = ensure_watch(next.c_str(), wd, parts[i]);
                if (wd < 0) return;
                path = std::move(next);
            } else if (owner.depth > 0) {
                walk(index, next, rel, wd, parts[i], 0);
            }
        }
    }

    // Watches `path` (at `level` below the owner's target) and the
    // directories beneath it down to the owner's depth, without following
    // symlinks or leaving the base's file system. Each directory is watched
    // before it is read, so a subdirectory made after the read is reported by
    // that watch (handle() walks it). System calls are most of the cost (each
    // one traps to the hypervisor on a VM), so the walk makes as few as it
    // can: a directory that is read has all its subdirectories looked at and
    // watched in one go, by one-component names from the working directory
    // (moved there once per directory read, restored at the end); one whose
    // link count says it has no subdirectories (2, as find(1) relies on) is
    // never opened or read (on file systems whose link counts say so: see
    // counts_subdirectories). Path strings are spelt out only for the
    // directories that are read in turn.
    void walk(std::uint32_t index, const std::string& path, const std::string& rel, int parent, const std::string& name,
              std::uint32_t level) {
        const Owner& owner = owners_[index];
        if (rel == owner.skip) return;
        int top_wd = ensure_watch(path.c_str(), parent, name);
        if (top_wd < 0) return;
        add_interest(nodes_[top_wd], Interest{index, level, {}});
        if (level + 1 >= owner.depth) return;
        UniqueFd top(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!top || ::fstat(top.get(), &st) != 0 || st.st_dev != owner.device) return;
        UniqueFd saved_cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));

        // A watched subdirectory that has subdirectories of its own.
        struct Pending {
            std::string name;
            int wd;
            nlink_t nlink;
        };
        // A directory that was read: its subdirectories are watched, those
        // in `pending` are read next, depth first.
        struct Frame {
            UniqueFd fd;
            std::uint32_t level;
            std::string path, rel;
            std::vector<Pending> pending;
            std::size_t next = 0;
        };
        std::vector<Frame> stack;
        const nlink_t unknown = 0;  // subdirectories() then reads to the end
        auto read_and_watch = [&](UniqueFd fd, int wd, nlink_t nlink, std::uint32_t at, std::string dir_path,
                                  std::string dir_rel) {
            Frame frame{std::move(fd), at, std::move(dir_path), std::move(dir_rel), {}};
            std::vector<std::string> subdirs = subdirectories(frame.fd.get(), owner.subdir_links ? nlink : unknown);
            bool in_dir = saved_cwd && ::fchdir(frame.fd.get()) == 0;
            for (const std::string& child : subdirs) {
                if (!setup_.complete) break;
                if (is_skipped(owner, frame.rel, child)) continue;
                // Watched first, looked at after: a link count taken before
                // the watch could miss a subdirectory made in between.
                int child_wd = in_dir ? add_watch(child.c_str(), wd, child)
                                      : add_watch(joined(frame.path, child).c_str(), wd, child);
                if (child_wd < 0) continue;
                struct stat cst {};
                if (::fstatat(frame.fd.get(), child.c_str(), &cst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(cst.st_mode) ||
                    cst.st_dev != owner.device) {
                    // Gone, replaced, or another file system mounted here (the
                    // watch is on its root): drop the watch unless it is in use.
                    if (!nodes_.contains(child_wd)) ::inotify_rm_watch(fd_.get(), child_wd);
                    continue;
                }
                remember(child_wd, wd, child);
                add_interest(nodes_[child_wd], Interest{index, at + 1, {}});
                if (at + 2 >= owner.depth || (owner.subdir_links && cst.st_nlink == 2)) continue;
                frame.pending.push_back(Pending{child, child_wd, cst.st_nlink});
            }
            stack.push_back(std::move(frame));
        };
        read_and_watch(std::move(top), top_wd, st.st_nlink, level, path, rel);
        while (!stack.empty() && setup_.complete) {
            Frame& frame = stack.back();
            if (frame.next == frame.pending.size()) {
                stack.pop_back();
                continue;
            }
            const Pending& child = frame.pending[frame.next++];
            UniqueFd fd(::openat(frame.fd.get(), child.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!fd) continue;
            // The arguments are built before the call: the push inside it moves `frame`.
            read_and_watch(std::move(fd), child.wd, child.nlink, frame.level + 1, joined(frame.path, child.name),
                           frame.rel + "/" + child.name);
        }
        if (saved_cwd) (void)::fchdir(saved_cwd.get());
    }

    // The names of the subdirectories of the open directory `fd`, whose link
    // count is `nlink`: reading stops once all nlink - 2 are found (a count
    // below 2 means the file system does not keep it: read everything).
    std::vector<std::string> subdirectories(int fd, nlink_t nlink) {
        std::vector<std::string> names;
        std::size_t expected = nlink >= 2 ? nlink - 2 : ~std::size_t{0};
        if (nlink >= 2) names.reserve(expected);
        while (names.size() < expected) {
            long n = ::getdents64(fd, dirents_, sizeof dirents_);
            if (n <= 0) break;
            for (long offset = 0; offset < n;) {
                auto* entry = reinterpret_cast<dirent64*>(dirents_ + offset);
                offset += entry->d_reclen;
                std::string_view child = entry->d_name;
                if (child == "." || child == "..") continue;
                bool is_dir = entry->d_type == DT_DIR;
                if (entry->d_type == DT_UNKNOWN) {
                    struct stat st {};
                    is_dir = ::fstatat(fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
                }
                if (is_dir) names.emplace_back(child);
            }
        }
        return names;
    }

    template <class Emit>
    void handle(const inotify_event& ev, Emit& emit) {
        if ((ev.mask & IN_Q_OVERFLOW) != 0) {
            emit(0, WatchEventKind::overflow, WatchRole::source, "");
            return;
        }
        auto it = nodes_.find(ev.wd);
        if (it == nodes_.end()) return;
        if ((ev.mask & IN_IGNORED) != 0) {
            // The kernel dropped the watch (directory gone, file system unmounted).
            nodes_.erase(it);
            return;
        }
        std::vector<Interest> interests = it->second.interests;  // setup below may rehash nodes_
        if ((ev.mask & IN_UNMOUNT) != 0) {
            for (const auto& interest : interests)
                if (owners_[interest.owner].live) emit(owners_[interest.owner].key, WatchEventKind::unmounted, owners_[interest.owner].role, "");
            return;
        }
        std::string name = ev.len > 0 ? std::string(ev.name) : std::string();
        bool appeared = (ev.mask & (IN_CREATE | IN_MOVED_TO)) != 0;
        bool dir_appeared = appeared && (ev.mask & IN_ISDIR) != 0;
        std::string dir_path;
        for (const auto& interest : interests) {
            if (interest.owner >= owners_.size() || !owners_[interest.owner].live) continue;
            const Owner& owner = owners_[interest.owner];
            if (interest.child.empty()) {
                if (dir_path.empty()) dir_path = path_of(ev.wd);
                std::string full = name.empty() ? dir_path : dir_path + "/" + name;
                emit(owner.key, WatchEventKind::changed, owner.role, relative(owner, full));
                if (dir_appeared && interest.level + 1 < owner.depth) {
                    setup_ = WatchSetup{};
                    walk(interest.owner, full, relative(owner, full), ev.wd, name, interest.level + 1);
                    if (!setup_.complete) emit(owner.key, WatchEventKind::limit_reached, owner.role, setup_.problem);
                }
            } else if (interest.child == name) {
                if (dir_path.empty()) dir_path = path_of(ev.wd);
                emit(owner.key, WatchEventKind::changed, owner.role, relative(owner, dir_path + "/" + name));
                if (appeared) {
                    setup_ = WatchSetup{};
                    setup_target(interest.owner);
                    if (!setup_.complete) emit(owner.key, WatchEventKind::limit_reached, owner.role, setup_.problem);
                }
            }
        }
    }

    [[nodiscard]] static std::string joined(const std::string& dir, const std::string& name) {
        return dir.ends_with('/') ? dir + name : dir + "/" + name;
    }

    // True if `rel`/`name` is the owner's state directory (without building the path).
    [[nodiscard]] static bool is_skipped(const Owner& owner, const std::string& rel, const std::string& name) {
        const std::string& skip = owner.skip;
        return skip.size() == rel.size() + 1 + name.size() && skip.starts_with(rel) && skip[rel.size()] == '/' &&
               skip.ends_with(name);
    }

    [[nodiscard]] static std::string relative(const Owner& owner, const std::string& full) {
        if (full.size() > owner.base.size() && full.compare(0, owner.base.size(), owner.base) == 0) {
            std::size_t skip = owner.base.size() + (owner.base.back() == '/' ? 0 : 1);
            return full.substr(std::min(skip, full.size()));
        }
        return full;
    }

    UniqueFd fd_;
    alignas(dirent64) char dirents_[32 * 1024];
    std::vector<Owner> owners_;
    std::vector<std::uint32_t> free_owners_;
    std::unordered_map<int, Node> nodes_;
    WatchSetup setup_;
};

}  // namespace

std::unique_ptr<Watcher> make_inotify_watcher() { return std::make_unique<InotifyWatcher>(); }

}  // namespace volwatch
