// The inotify backend: one watch per directory. A target is reached through
// named interests on each directory on the way to it, so a path that does not
// exist yet (or is removed and re-created) is picked up when it appears; the
// target directory itself and, to its depth, the directories beneath carry
// "all entries" interests. Several volumes may share a directory: a watch
// lives as long as any interest in it.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <dirent.h>
#include <exception>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <system_error>
#include <thread>
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

[[nodiscard]] std::string joined(const std::string& dir, const std::string& name) {
    return dir.ends_with('/') ? dir + name : dir + "/" + name;
}

// One target of a volume's plan, the owner of interests in watched directories.
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

// True if `rel`/`name` is the owner's state directory (without building the path).
[[nodiscard]] bool is_skipped(const Owner& owner, const std::string& rel, const std::string& name) {
    const std::string& skip = owner.skip;
    return skip.size() == rel.size() + 1 + name.size() && skip.starts_with(rel) && skip[rel.size()] == '/' &&
           skip.ends_with(name);
}

// ---- The walk of a deep target
//
// Every directory beneath the target, to the owner's depth, gets a watch,
// without following symlinks, leaving the base's file system or entering
// volwatch's state directory. System calls are almost all of the cost (each
// one traps to the hypervisor on a VM), so the walk makes as few as it can: a
// directory that is read has all its subdirectories watched in one go, by
// one-component names from the working directory (moved there once per
// directory read, restored at the end); one whose link count says it has no
// subdirectories (2, as find(1) relies on) is never opened or read, and a
// read stops once the count is reached (on file systems whose link counts say
// so: see counts_subdirectories). Path strings are spelt out only for the
// directories that are read.
//
// What is left is one inotify_add_watch and one fstatat (for the link count
// and the device) per directory, two halves of about equal cost; a
// directory's fstatat must follow its watch, but the fstatats of one
// directory's subdirectories can run while the next directory's are being
// watched. A big walk therefore runs as a pipeline of two stages over
// batches (one batch: a directory read, with its subdirectories) on two
// threads, one per CPU of a small machine, which brings it close to the cost
// of the watches alone:
//  1. on the watcher's thread, which owns nodes_ and owners_ and alone may
//     move the working directory (the threads of a process share it): watch
//     each subdirectory of a batch; later, record those that stage 2
//     accepted (remember, add_interest);
//  2. on a helper thread, through directory descriptors only: look at
//     (fstatat) each watched subdirectory, and read those with
//     subdirectories of their own into the next batches.
// Batches pass between the threads in bunches (BatchChannel): waking a
// thread costs more than a system call here. A small walk (a directory made
// inside a watched tree) runs the same two stages in turn on the one thread.
//
// The rules both drivers keep (each is tested):
//  - a directory is watched before it is looked at or read, so a link count
//    covers every subdirectory made before the watch, and one made after the
//    read is reported by the watch (handle() walks it);
//  - a rejected subdirectory (gone, not a directory, or another file system
//    mounted there: the watch is on its root) loses its watch at the end of
//    the walk unless a recorded directory shares it (the same directory met
//    twice, through a bind mount: its other watch may not be recorded yet);
//  - when the watch limit is reached (ENOSPC, ENOMEM: setup_ says so), stage 1
//    watches no more and stage 2 reads no more, and the watches already made
//    are still looked at and recorded or dropped;
//  - every descriptor is owned (UniqueFd) by the batch or the stage-2 frame
//    that holds it, and the helper thread ends with the walk: nothing is left
//    open and nothing wakes vwatch afterwards.

// A subdirectory found by the walk.
struct Subdirectory {
    std::string name;
    int wd = -1;             // stage 1: its watch; -1 none
    bool accepted = false;   // stage 2: still a directory, on the base's file system
    nlink_t links = 0;       // stage 2: its link count
};

// A directory read by the walk, with its subdirectories; it owns the
// directory's descriptor while it passes between the stages.
struct Batch {
    UniqueFd dir;
    int wd = -1;              // the directory's watch
    std::uint32_t level = 0;  // the directory's level below the owner's target
    std::string path;         // absolute
    std::string rel;          // relative to the owner's base
    std::vector<Subdirectory> subdirs;
    bool looked_at = false;   // stage 2 is done with it: stage 1 records it
};

// Stage 2 of the walk, depth first: looks at the subdirectories stage 1 has
// watched and reads those that have subdirectories of their own. It uses no
// path but one component below an open directory.
class SubdirectoryReader {
public:
    explicit SubdirectoryReader(const Owner& owner)
        : depth_(owner.depth), device_(owner.device), subdir_links_(owner.subdir_links), owner_(owner),
          dirents_(std::make_unique_for_overwrite<char[]>(dirents_size)) {}

    // The batch of the open directory `dir` (watched as `wd`, at `level`,
    // with link count `links`): its subdirectories, the state directory left out.
    Batch read(UniqueFd dir, int wd, nlink_t links, std::uint32_t level, std::string path, std::string rel) {
        Batch batch{std::move(dir), wd, level, std::move(path), std::move(rel), {}, false};
        const nlink_t unknown = 0;  // read to the end
        read_subdirectories(batch, subdir_links_ ? links : unknown);
        return batch;
    }

    // Looks at each watched subdirectory of `batch` (accepted, links) and
    // keeps those to read; closes the batch's directory unless it is kept.
    void look_at(Batch& batch) {
        Frame frame{std::move(batch.dir), batch.level, std::move(batch.path), std::move(batch.rel), {}};
        for (Subdirectory& sub : batch.subdirs) {
            if (sub.wd < 0) continue;
            struct stat st {};
            sub.accepted = ::fstatat(frame.dir.get(), sub.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                           S_ISDIR(st.st_mode) && st.st_dev == device_;
            sub.links = st.st_nlink;
            if (sub.accepted && frame.level + 2 < depth_ && !(subdir_links_ && sub.links == 2))
                frame.to_read.push_back(sub);
        }
        batch.looked_at = true;
        if (!frame.to_read.empty()) stack_.push_back(std::move(frame));
    }

    // True while an accepted subdirectory is left to read.
    [[nodiscard]] bool has_next() {
        while (!stack_.empty() && stack_.back().next == stack_.back().to_read.size()) stack_.pop_back();
        return !stack_.empty();
    }

    // The batch of the next subdirectory to read; nullopt when none is left.
    std::optional<Batch> read_next() {
        while (has_next()) {
            Frame& frame = stack_.back();
            const Subdirectory& sub = frame.to_read[frame.next++];
            UniqueFd dir(::openat(frame.dir.get(), sub.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!dir) continue;  // gone since
            return read(std::move(dir), sub.wd, sub.links, frame.level + 1, joined(frame.path, sub.name),
                        frame.rel + "/" + sub.name);
        }
        return std::nullopt;
    }

private:
    // A directory looked at whose subdirectories in to_read are read next.
    struct Frame {
        UniqueFd dir;
        std::uint32_t level = 0;
        std::string path, rel;
        std::vector<Subdirectory> to_read;
        std::size_t next = 0;
    };
    static constexpr std::size_t dirents_size = 32 * 1024;

    // Reading stops once all links - 2 subdirectories are found (a count
    // below 2 means the file system does not keep it: read everything).
    void read_subdirectories(Batch& batch, nlink_t links) {
        std::size_t expected = links >= 2 ? links - 2 : ~std::size_t{0};
        if (links >= 2) batch.subdirs.reserve(expected);
        std::size_t found = 0;
        while (found < expected) {
            long n = ::getdents64(batch.dir.get(), dirents_.get(), dirents_size);
            if (n <= 0) break;
            for (long offset = 0; offset < n;) {
                auto* entry = reinterpret_cast<dirent64*>(dirents_.get() + offset);
                offset += entry->d_reclen;
                std::string_view child = entry->d_name;
                if (child == "." || child == "..") continue;
                bool is_dir = entry->d_type == DT_DIR;
                if (entry->d_type == DT_UNKNOWN) {
                    struct stat st {};
                    is_dir = ::fstatat(batch.dir.get(), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                             S_ISDIR(st.st_mode);
                }
                if (!is_dir) continue;
                ++found;
                std::string name(child);
                if (!is_skipped(owner_, batch.rel, name)) batch.subdirs.push_back(Subdirectory{std::move(name)});
            }
        }
    }

    const unsigned depth_;
    const dev_t device_;
    const bool subdir_links_;
    const Owner& owner_;  // for the state directory; not changed during a walk
    std::unique_ptr<char[]> dirents_;
    std::vector<Frame> stack_;
};

// One direction of the hand-over between the two threads of a walk.
// Batches pass in bunches, so that a thread is woken about once a bunch, not
// once a batch: the sender queues them on its side and hands the bunch over
// when it is full, or (flush) before it waits or ends.
class BatchChannel {
public:
    explicit BatchChannel(std::size_t bunch) : bunch_(bunch) {}

    // Sender: queues `batch`, handing the bunch over when it is full.
    void send(Batch batch) {
        outgoing_.push_back(std::move(batch));
        if (outgoing_.size() >= bunch_) flush();
    }
    // Sender: hands over what is queued.
    void flush() {
        if (outgoing_.empty()) return;
        {
            std::lock_guard lock(mutex_);
            for (Batch& batch : outgoing_) handed_over_.push_back(std::move(batch));
        }
        outgoing_.clear();
        ready_.notify_one();
    }
    // Sender: no more batches will come (after a flush).
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        ready_.notify_one();
    }
    // Receiver: moves what was handed over to `into`, waiting for it when
    // `wait`; false once the channel is closed and nothing is left.
    bool receive(std::deque<Batch>& into, bool wait) {
        std::unique_lock lock(mutex_);
        if (wait) ready_.wait(lock, [&] { return !handed_over_.empty() || closed_; });
        if (handed_over_.empty()) return !closed_;
        for (Batch& batch : handed_over_) into.push_back(std::move(batch));
        handed_over_.clear();
        return true;
    }

private:
    const std::size_t bunch_;
    std::vector<Batch> outgoing_;  // the sender's, not shared
    std::mutex mutex_;
    std::condition_variable ready_;
    std::vector<Batch> handed_over_;
    bool closed_ = false;
};

// The two directions, and stage 1's word to stage 2 to read no more.
struct Handover {
    // Batches passed in one go, and stage 2's batches out with stage 1 at
    // most: enough that neither thread waits for the other often, few enough
    // to hold few descriptors (each batch holds its directory's).
    static constexpr std::size_t bunch = 8;
    static constexpr std::size_t read_ahead = 4 * bunch;
    BatchChannel to_watcher{bunch};  // read (to watch), or looked at (to record)
    BatchChannel to_reader{bunch};   // watched (to look at)
    std::atomic<bool> stop{false};   // the watch limit is reached
};

// Stage 2's driver on the helper thread: looks at what stage 1 has watched
// first, else reads ahead; ends when no batch is out with stage 1 and
// nothing is left to read (or stage 1 said stop), or when stage 1 closes its
// channel. `out` counts the batches handed to stage 1 that come back watched.
void run_reader(SubdirectoryReader& reader, Handover& handover, std::size_t out) {
    std::deque<Batch> watched;
    while (out > 0 || (!handover.stop && reader.has_next())) {
        bool can_read = !handover.stop && out < Handover::read_ahead && reader.has_next();
        if (!can_read) handover.to_watcher.flush();
        if (!handover.to_reader.receive(watched, !can_read)) return;  // stage 1 gave up
        for (; !watched.empty(); watched.pop_front()) {
            --out;
            reader.look_at(watched.front());  // after a stop too: stage 1 records the watches it made
            handover.to_watcher.send(std::move(watched.front()));
        }
        if (!can_read) continue;
        if (std::optional<Batch> batch = reader.read_next()) {
            ++out;
            handover.to_watcher.send(std::move(*batch));
        }
    }
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

    Node& remember(int wd, int parent, const std::string& name) {
        auto [it, inserted] = nodes_.try_emplace(wd);
        if (inserted || it->second.parent != parent || it->second.name != name) {
            // New, or moved/renamed since: remember where it is now.
            it->second.parent = parent;
            it->second.name = name;
        }
        return it->second;
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
                walk(index, next, rel, wd, parts[i], 0, /*may_use_helper=*/true);
            }
        }
    }

    // Watches `path` (at `level` below the owner's target) and, to the
    // owner's depth, the directories beneath it, as described at "The walk of
    // a deep target"; on two threads if `may_use_helper` and the directories
    // read may be more than one.
    void walk(std::uint32_t index, const std::string& path, const std::string& rel, int parent, const std::string& name,
              std::uint32_t level, bool may_use_helper) {
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
        SubdirectoryReader reader(owner);
        Batch first = reader.read(std::move(top), top_wd, st.st_nlink, level, path, rel);
        std::vector<int> rejected;
        if (may_use_helper && level + 2 < owner.depth && !first.subdirs.empty())
            walk_on_two_threads(index, reader, std::move(first), saved_cwd.valid(), rejected);
        else
            walk_on_one_thread(index, reader, std::move(first), saved_cwd.valid(), rejected);
        if (saved_cwd) (void)::fchdir(saved_cwd.get());
        for (int wd : rejected)
            if (!nodes_.contains(wd)) ::inotify_rm_watch(fd_.get(), wd);
    }

    // The two stages in turn, on this thread.
    void walk_on_one_thread(std::uint32_t index, SubdirectoryReader& reader, Batch first, bool may_chdir,
                            std::vector<int>& rejected) {
        std::optional<Batch> batch = std::move(first);
        while (batch) {
            watch_subdirectories(*batch, may_chdir);
            reader.look_at(*batch);
            record_subdirectories(index, *batch, rejected);
            if (!setup_.complete) break;
            batch = reader.read_next();
        }
    }

    // Stage 1 here, stage 2 (run_reader) on a helper thread.
    void walk_on_two_threads(std::uint32_t index, SubdirectoryReader& reader, Batch first, bool may_chdir,
                             std::vector<int>& rejected) {
        Handover handover;
        std::exception_ptr reader_failure;
        std::deque<Batch> batches;
        batches.push_back(std::move(first));
        std::thread helper;
        try {
            helper = std::thread([&] {
                // Signals are for the watcher's thread (vwatch reads them from a signalfd).
                sigset_t all;
                ::sigfillset(&all);
                ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
                try {
                    run_reader(reader, handover, 1);
                } catch (...) {
                    reader_failure = std::current_exception();
                }
                handover.to_watcher.flush();
                handover.to_watcher.close();
            });
        } catch (const std::system_error&) {
            // No thread to be had (a task limit): the same stages on this one.
            return walk_on_one_thread(index, reader, std::move(batches.front()), may_chdir, rejected);
        }
        // Joined however stage 1 ends: if by an exception, stage 2 is told
        // that nothing more will come.
        struct JoinHelper {
            Handover& handover;
            std::thread& helper;
            ~JoinHelper() {
                handover.to_reader.close();
                helper.join();
            }
        } join{handover, helper};
        do {
            for (; !batches.empty(); batches.pop_front()) {
                Batch& batch = batches.front();
                if (batch.looked_at) {
                    record_subdirectories(index, batch, rejected);
                    continue;
                }
                if (setup_.complete) watch_subdirectories(batch, may_chdir);
                if (!setup_.complete) handover.stop = true;
                handover.to_reader.send(std::move(batch));
            }
            handover.to_reader.flush();
        } while (handover.to_watcher.receive(batches, true));
        if (reader_failure) std::rethrow_exception(reader_failure);
    }

    // Stage 1: watches each subdirectory of `batch`, by its name from inside
    // the batch's directory when the working directory may move there.
    void watch_subdirectories(Batch& batch, bool may_chdir) {
        bool in_dir = may_chdir && ::fchdir(batch.dir.get()) == 0;
        for (Subdirectory& sub : batch.subdirs) {
            if (!setup_.complete) break;
            sub.wd = in_dir ? add_watch(sub.name.c_str(), batch.wd, sub.name)
                            : add_watch(joined(batch.path, sub.name).c_str(), batch.wd, sub.name);
        }
    }

    // Stage 1, once stage 2 has looked at `batch`: records its accepted
    // subdirectories; the rejected ones' watches go to `rejected`.
    void record_subdirectories(std::uint32_t index, const Batch& batch, std::vector<int>& rejected) {
        for (const Subdirectory& sub : batch.subdirs) {
            if (sub.wd < 0) continue;
            if (sub.accepted)
                add_interest(remember(sub.wd, batch.wd, sub.name), Interest{index, batch.level + 1, {}});
            else
                rejected.push_back(sub.wd);
        }
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
                    walk(interest.owner, full, relative(owner, full), ev.wd, name, interest.level + 1,
                         /*may_use_helper=*/false);  // a new directory: small, as a rule
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

    [[nodiscard]] static std::string relative(const Owner& owner, const std::string& full) {
        if (full.size() > owner.base.size() && full.compare(0, owner.base.size(), owner.base) == 0) {
            std::size_t skip = owner.base.size() + (owner.base.back() == '/' ? 0 : 1);
            return full.substr(std::min(skip, full.size()));
        }
        return full;
    }

    UniqueFd fd_;
    std::vector<Owner> owners_;
    std::vector<std::uint32_t> free_owners_;
    std::unordered_map<int, Node> nodes_;
    WatchSetup setup_;
};

}  // namespace

std::unique_ptr<Watcher> make_inotify_watcher() { return std::make_unique<InotifyWatcher>(); }

}  // namespace volwatch
