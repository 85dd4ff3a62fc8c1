#include "volwatch/watcher.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <sched.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;
using volwatch::testing::TempDir;
using volwatch::testing::write_file;

// Collects events until one for `key` with `role` arrives or 3 s pass.
bool wait_event(Watcher& watcher, WatchKey key, WatchEventKind kind, std::vector<WatchEvent>* all = nullptr,
                int timeout_ms = 3000) {
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        pollfd p{watcher.fd(), POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) {
            std::vector<WatchEvent> events;
            watcher.read_events(events);
            bool hit = false;
            for (const auto& e : events) {
                if (all != nullptr) all->push_back(e);
                hit |= e.key == key && e.kind == kind;
            }
            if (hit) return true;
        }
    }
    return false;
}

// Drains what is queued now, so the next wait sees only new events.
void drain(Watcher& watcher) {
    std::vector<WatchEvent> events;
    pollfd p{watcher.fd(), POLLIN, 0};
    while (::poll(&p, 1, 100) > 0) watcher.read_events(events);
}

WatchPlan plan_for(const fs::path& root, std::vector<WatchTarget> targets) {
    WatchPlan plan;
    plan.root = root;
    plan.targets = std::move(targets);
    return plan;
}

std::size_t entries_of(const fs::path& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++n;
    return n;
}

// The watches the kernel holds on the inotify descriptor `fd` (one "inotify wd:" line each).
std::size_t kernel_watches(int fd) {
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.starts_with("inotify wd:") ? 1 : 0;
    return n;
}

// This process's threads, once they are `expected` again or 3 s have passed:
// a thread that has been joined may stay listed a moment longer.
std::size_t threads_once_back_to(std::size_t expected) {
    std::size_t threads = entries_of("/proc/self/task");
    for (int waited = 0; threads != expected && waited < 3000; waited += 10) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        threads = entries_of("/proc/self/task");
    }
    return threads;
}

// Writes each of `files` (relative to `root`) in turn and expects an event of
// key 1 naming it.
void expect_each_reported(Watcher& watcher, const fs::path& root, std::initializer_list<const char*> files) {
    for (const char* file : files) {
        drain(watcher);
        write_file(root / file, "2");
        std::vector<WatchEvent> events;
        ASSERT_TRUE(wait_event(watcher, 1, WatchEventKind::changed, &events)) << file;
        EXPECT_EQ(events.back().path, file);
    }
}

// `dir` and the directories beneath it, symlinks not followed.
std::size_t directories_in(const fs::path& dir) {
    std::size_t n = 1;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
        n += entry.is_directory() && !entry.is_symlink() ? 1 : 0;
    return n;
}

// src/d0..d9/e0..e9/f0..f19 (2,110 directories, 2,000 of them leaves) and
// one deeper branch, src/d3/e7/f19/g/h/i: returns src's count, itself included.
std::size_t make_wide_tree(const fs::path& src) {
    for (int d = 0; d < 10; ++d)
        for (int e = 0; e < 10; ++e)
            for (int f = 0; f < 20; ++f)
                fs::create_directories(src / fmt::format("d{}/e{}/f{}", d, e, f));
    fs::create_directories(src / "d3/e7/f19/g/h/i");
    return 1 + 10 + 100 + 2000 + 3;
}

TEST(WatchPlan, CoversSourcesProductsHelpersAndTheConfig) {
    VolumeConfig config;
    CacheSpec deep;
    deep.name = "a";
    deep.sources = {"usr/lib/modules"};
    deep.product = "boot/initrd.img";
    deep.depth = Depth::deep;
    CacheSpec shallow;
    shallow.name = "b";
    shallow.sources = {"etc/ld.so.conf.d", "usr/lib/modules"};
    shallow.product = "etc/ld.so.cache";
    config.caches = {deep, shallow};
    config.helper_files = {"boot/vmlinuz"};
    WatchPlan plan = watch_plan("/vol", config);
    ASSERT_EQ(plan.targets.size(), 6U);
    EXPECT_EQ(plan.targets[0].relpath, "usr/lib/modules");
    EXPECT_EQ(plan.targets[0].depth, unlimited_depth);  // the deep use wins
    EXPECT_EQ(plan.targets[1].role, WatchRole::product);
    EXPECT_EQ(plan.targets[2].depth, 2U);
    EXPECT_EQ(plan.targets[4].role, WatchRole::helper);
    EXPECT_EQ(plan.targets[5].relpath, volume_config_relpath);
    EXPECT_EQ(plan.targets[5].role, WatchRole::config);
    EXPECT_EQ(config_only_plan("/vol").targets.size(), 1U);
}

// Every behaviour holds for both backends; fanotify needs CAP_SYS_ADMIN.
class WatcherTest : public ::testing::TestWithParam<std::string> {
protected:
    std::unique_ptr<Watcher> make() {
        if (GetParam() == "inotify") return make_inotify_watcher();
        auto fan = make_fanotify_watcher();
        if (!fan) return nullptr;
        return std::move(*fan);
    }
};

#define MAKE_WATCHER(name)                                                              \
    auto name = make();                                                                 \
    if (!name) GTEST_SKIP() << "fanotify is not available here (needs CAP_SYS_ADMIN)"

INSTANTIATE_TEST_SUITE_P(Backends, WatcherTest, ::testing::Values("inotify", "fanotify"),
                         [](const auto& param_info) { return param_info.param; });

TEST_P(WatcherTest, ReportsChangesDeepInASourceTreeWithTheirRole) {
    TempDir dir;
    write_file(dir / "src/a/b/c/file", "1");
    write_file(dir / "out/product", "p");
    MAKE_WATCHER(watcher);
    auto setup = watcher->add(7, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth},
                                                        {"out/product", WatchRole::product, 1}}));
    ASSERT_TRUE(setup.ok());
    EXPECT_TRUE(setup->complete);
    EXPECT_GE(setup->watches, GetParam() == "inotify" ? 5U : 1U);  // inotify: root, src, a, b, c, out; fanotify: one mark
    write_file(dir / "src/a/b/c/file", "2");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 7, WatchEventKind::changed, &events));
    EXPECT_EQ(events[0].role, WatchRole::source);
    EXPECT_EQ(events[0].path, "src/a/b/c/file");

    drain(*watcher);
    events.clear();
    write_file(dir / "out/product", "q");
    ASSERT_TRUE(wait_event(*watcher, 7, WatchEventKind::changed, &events));
    EXPECT_EQ(events[0].role, WatchRole::product);
}

TEST_P(WatcherTest, NewDirectoriesInADeepTreeAreWatchedToo) {
    TempDir dir;
    fs::create_directories(dir / "src");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}})).ok());
    fs::create_directories(dir / "src/new/deeper");
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    drain(*watcher);
    write_file(dir / "src/new/deeper/file", "x");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed, &events));
    EXPECT_EQ(events.back().path.rfind("src/new/deeper", 0), 0U) << events.back().path;
}

TEST_P(WatcherTest, ShallowSourcesSeeTheirEntriesButNotDeeper) {
    TempDir dir;
    write_file(dir / "src/sub/deeper/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, 2}})).ok());
    write_file(dir / "src/sub/new", "x");  // changes sub's times: seen
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    drain(*watcher);
    write_file(dir / "src/sub/deeper/file", "2");  // two levels down: not watched
    EXPECT_FALSE(wait_event(*watcher, 1, WatchEventKind::changed, nullptr, 300));
}

TEST_P(WatcherTest, APathThatDoesNotExistYetIsWatchedThroughItsNearestParent) {
    TempDir dir;
    MAKE_WATCHER(watcher);
    fs::path root = dir / "not/yet/root";
    ASSERT_TRUE(watcher->add(3, config_only_plan(root)).ok());
    fs::create_directories(root / "etc");
    ASSERT_TRUE(wait_event(*watcher, 3, WatchEventKind::changed));
    drain(*watcher);
    write_file(root / volume_config_relpath, "version = 1\n");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 3, WatchEventKind::changed, &events));
    EXPECT_EQ(events.back().role, WatchRole::config);
    // And a later edit of the now existing file.
    drain(*watcher);
    write_file(root / volume_config_relpath, "version = 1\n# edited\n");
    ASSERT_TRUE(wait_event(*watcher, 3, WatchEventKind::changed));
}

TEST_P(WatcherTest, ARemovedAndRecreatedSourceIsWatchedAgain) {
    TempDir dir;
    write_file(dir / "src/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}})).ok());
    fs::remove_all(dir / "src");
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    fs::create_directories(dir / "src");
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    drain(*watcher);
    write_file(dir / "src/again", "x");
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
}

TEST_P(WatcherTest, RemovedKeysGetNoMoreEventsWhileSharedDirectoriesStayWatched) {
    TempDir dir;
    write_file(dir / "src/file", "1");
    MAKE_WATCHER(watcher);
    auto plan = plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}});
    ASSERT_TRUE(watcher->add(1, plan).ok());
    ASSERT_TRUE(watcher->add(2, plan).ok());
    watcher->remove(1);
    write_file(dir / "src/file", "2");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 2, WatchEventKind::changed, &events));
    for (const auto& e : events) EXPECT_NE(e.key, 1U);
    watcher->remove(2);
    drain(*watcher);
    write_file(dir / "src/file", "3");
    EXPECT_FALSE(wait_event(*watcher, 2, WatchEventKind::changed, nullptr, 300));
}

// A volume whose file system went away (unmounted, moved) leaves a stored
// path that now resolves to another file system. Removing it must not take
// that file system's watches with it. Modelled without mounts: the second
// volume lives on /dev/shm, and its root is then replaced by a symlink into
// the first volume's file system.
TEST_P(WatcherTest, RemovingAVolumeWhoseRootNowLiesElsewhereKeepsTheOtherFileSystemWatched) {
    TempDir dir;
    write_file(dir / "src/file", "1");
    std::string pattern = "/dev/shm/volwatch-test-XXXXXX";
    struct stat here {}, shm {};
    if (::stat(dir.path().c_str(), &here) != 0 || ::stat("/dev/shm", &shm) != 0 || here.st_dev == shm.st_dev ||
        ::mkdtemp(pattern.data()) == nullptr)
        GTEST_SKIP() << "needs /dev/shm on a file system other than the temporary directory's";
    const fs::path other = pattern;
    struct RemoveAll {
        fs::path path;
        ~RemoveAll() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    } cleanup{other};
    write_file(other / "vol/src/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}})).ok());
    ASSERT_TRUE(watcher->add(2, plan_for(other / "vol", {{"src", WatchRole::source, unlimited_depth}})).ok());
    fs::remove_all(other / "vol");
    fs::create_directory_symlink(dir.path(), other / "vol");
    watcher->remove(2);
    drain(*watcher);
    write_file(dir / "src/file", "2");
    EXPECT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
}

// The inotify walk reads only directories that have subdirectories (by link
// count on ext4, tmpfs and xfs; every one elsewhere) and watches a read
// directory's subdirectories in one go: every directory to the depth is
// watched once, symlinks are not followed, and changes at the bottom of each
// branch are seen.
TEST(InotifyWalk, WatchesEveryDirectoryOfAMixedTreeOnce) {
    TempDir dir;
    for (const char* leaf : {"src/a/a1/f", "src/a/a2/x/f", "src/b/f", "src/c/c1/f", "src/c/c2/c3/c4/f"})
        write_file(dir / leaf, "1");
    fs::create_directory_symlink(dir / "src/a", dir / "src/link");
    auto watcher = make_inotify_watcher();
    auto deep = watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}}));
    ASSERT_TRUE(deep.ok());
    EXPECT_TRUE(deep->complete);
    EXPECT_EQ(deep->watches, 12U);  // the base, src and its 10 directories; not the symlink
    auto shallow = watcher->add(2, plan_for(dir.path(), {{"src", WatchRole::source, 2}}));
    ASSERT_TRUE(shallow.ok());
    EXPECT_EQ(shallow->watches, 5U);  // the base, src, a, b, c
    expect_each_reported(*watcher, dir.path(), {"src/a/a2/x/f", "src/c/c1/f", "src/c/c2/c3/c4/f"});
}

// A big walk runs on two threads (a pipeline, see inotify_watcher.cpp): each
// directory gets exactly one watch (the kernel holds no other), the depth is
// kept, changes at the bottom are seen, and no descriptor or thread is left
// behind when add() returns.
TEST(InotifyWalk, ATreeOfThousandsOfDirectoriesGetsOneWatchPerDirectory) {
    TempDir dir;
    std::size_t in_src = make_wide_tree(dir / "src");
    auto watcher = make_inotify_watcher();
    std::size_t fds = entries_of("/proc/self/fd");
    std::size_t threads = entries_of("/proc/self/task");
    auto deep = watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}}));
    ASSERT_TRUE(deep.ok());
    EXPECT_TRUE(deep->complete);
    EXPECT_EQ(deep->watches, in_src + 1);  // and the base
    EXPECT_EQ(kernel_watches(watcher->fd()), in_src + 1);
    EXPECT_EQ(entries_of("/proc/self/fd"), fds);
    EXPECT_EQ(threads_once_back_to(threads), threads);

    auto shallow = watcher->add(2, plan_for(dir.path(), {{"src", WatchRole::source, 3}}));
    ASSERT_TRUE(shallow.ok());
    EXPECT_EQ(shallow->watches, 1U + 1 + 10 + 100);  // the base, src, d*, d*/e*
    EXPECT_EQ(kernel_watches(watcher->fd()), in_src + 1);  // all shared with key 1

    expect_each_reported(*watcher, dir.path(), {"src/d3/e7/f19/g/h/i/file", "src/d0/e0/f0/file", "src/d9/e9/f19/file"});
}

// Directories made while the walk runs (each with a subdirectory) are all
// watched in the end, by the walk or through the watch of their parent:
// every directory is watched before it is looked at or read.
TEST(InotifyWalk, DirectoriesMadeDuringTheWalkAreWatched) {
    TempDir dir;
    make_wide_tree(dir / "src");
    auto watcher = make_inotify_watcher();
    std::atomic<bool> walked{false};
    int made = 0;
    std::thread maker([&] {
        for (; made < 400 && !walked; ++made) {
            fs::path fresh = dir / fmt::format("src/d{}/e{}/new{}", made % 10, made % 7, made);
            fs::create_directories(fresh / "sub");
        }
    });
    auto setup = watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}}));
    walked = true;
    maker.join();
    ASSERT_TRUE(setup.ok());
    EXPECT_TRUE(setup->complete);
    drain(*watcher);  // the creations seen by watches: their directories are walked
    EXPECT_EQ(kernel_watches(watcher->fd()), directories_in(dir / "src") + 1) << made << " directories made";
    ASSERT_GT(made, 0);
    std::string last = fmt::format("src/d{}/e{}/new{}/sub/file", (made - 1) % 10, (made - 1) % 7, made - 1);
    write_file(dir / last, "1");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed, &events));
    EXPECT_EQ(events.back().path, last);
}

bool write_to(const char* path, const std::string& text) {
    std::ofstream out(path);
    out << text << std::flush;
    return static_cast<bool>(out);
}

// Moves this (single-threaded) process into a user namespace of its own, as the same user.
bool enter_own_user_namespace() {
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    return ::unshare(CLONE_NEWUSER) == 0 && write_to("/proc/self/setgroups", "deny") &&
           write_to("/proc/self/uid_map", fmt::format("0 {} 1", uid)) &&
           write_to("/proc/self/gid_map", fmt::format("0 {} 1", gid));
}

// Runs `body` in a child process once `prepare` has run there, and returns
// what `body` returned; nullopt when `prepare` fails.
std::optional<std::string> in_child_process(const std::function<bool()>& prepare,
                                            const std::function<std::string()>& body) {
    int report[2];
    if (::pipe(report) != 0) return std::nullopt;
    pid_t child = ::fork();
    if (child == 0) {
        ::close(report[0]);
        if (!prepare()) ::_exit(3);
        std::string text;
        try {
            text = body();
        } catch (const std::exception& e) {
            text = e.what();
        }
        (void)!::write(report[1], text.data(), text.size());
        ::_exit(0);
    }
    ::close(report[1]);
    std::string text;
    char buffer[512];
    for (ssize_t n; (n = ::read(report[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(n));
    ::close(report[0]);
    int status = 0;
    if (child < 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return std::nullopt;
    return text;
}

// What a child's walk left: "COMPLETE WATCHES KERNEL_WATCHES FDS_BEFORE FDS_AFTER THREADS\nPROBLEM".
std::string walk_outcome(const fs::path& root) {
    auto watcher = make_inotify_watcher();
    std::size_t fds = entries_of("/proc/self/fd");
    auto setup = watcher->add(1, plan_for(root, {{"src", WatchRole::source, unlimited_depth}}));
    std::size_t threads = threads_once_back_to(1);
    if (!setup.ok()) return "add failed";
    return fmt::format("{} {} {} {} {} {}\n{}", setup->complete ? 1 : 0, setup->watches, kernel_watches(watcher->fd()),
                       fds, entries_of("/proc/self/fd"), threads, setup->problem);
}

struct WalkOutcome {
    int complete = -1;
    std::size_t watches = 0, in_kernel = 0, fds_before = 0, fds_after = 0, threads = 0;
};

// The figures of walk_outcome's text; nullopt when it has none (the text says why).
std::optional<WalkOutcome> parse_walk_outcome(const std::string& text) {
    std::istringstream in(text);
    WalkOutcome got;
    if (!(in >> got.complete >> got.watches >> got.in_kernel >> got.fds_before >> got.fds_after >> got.threads))
        return std::nullopt;
    return got;
}

// The watch limit reached in the middle of a big walk: add() says so, the
// watches made up to the limit are all kept (the kernel holds no others), and no
// descriptor or thread is left behind. The limit is lowered in a user
// namespace of a child process's own.
TEST(InotifyWalk, TheWatchLimitStopsTheWalkCleanly) {
    TempDir dir;
    make_wide_tree(dir / "src");
    auto lower_the_limit = [] {
        return enter_own_user_namespace() && write_to("/proc/sys/user/max_inotify_watches", "300");
    };
    auto text = in_child_process(lower_the_limit, [&] { return walk_outcome(dir.path()); });
    if (!text) GTEST_SKIP() << "cannot lower the watch limit in a user namespace of its own here";
    std::optional<WalkOutcome> got = parse_walk_outcome(*text);
    ASSERT_TRUE(got) << *text;
    EXPECT_EQ(got->complete, 0) << *text;
    EXPECT_EQ(got->watches, 300U);  // every watch made up to the limit is kept
    EXPECT_EQ(got->in_kernel, got->watches);
    EXPECT_EQ(got->fds_after, got->fds_before);
    EXPECT_EQ(got->threads, 1U);
    EXPECT_NE(text->find("inotify watch limit reached"), std::string::npos) << *text;
    EXPECT_NE(text->find("user.max_inotify_watches=300"), std::string::npos) << *text;
}

// No thread to be had (a task limit of 0, which root escapes: the child
// runs as nobody then): the walk runs on the one thread, with the same result.
TEST(InotifyWalk, WithoutAHelperThreadTheWalkRunsOnOneThread) {
    TempDir dir;
    std::size_t in_src = make_wide_tree(dir / "src");
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                    fs::perms::others_read | fs::perms::others_exec);
    auto refuse_threads = [] {
        const uid_t nobody = 65534;
        if (::getuid() == 0 && (::setresgid(nobody, nobody, nobody) != 0 || ::setresuid(nobody, nobody, nobody) != 0))
            return false;
        rlimit none{0, 0};
        if (::setrlimit(RLIMIT_NPROC, &none) != 0) return false;
        try {
            std::thread([] {}).join();
            return false;  // threads are still had: nothing to test
        } catch (const std::system_error&) {
            return true;
        }
    };
    auto text = in_child_process(refuse_threads, [&] { return walk_outcome(dir.path()); });
    if (!text) GTEST_SKIP() << "cannot refuse a process its threads here";
    std::optional<WalkOutcome> got = parse_walk_outcome(*text);
    ASSERT_TRUE(got) << *text;
    EXPECT_EQ(got->complete, 1) << *text;
    EXPECT_EQ(got->watches, in_src + 1);
    EXPECT_EQ(got->in_kernel, got->watches);
    EXPECT_EQ(got->fds_after, got->fds_before);
}

// A file system mounted inside a deep source is not walked into (vcheck does
// not cross it either); the rest of the source is watched as before.
TEST_P(WatcherTest, AFileSystemMountedInsideASourceIsNotWatched) {
    TempDir dir;
    write_file(dir / "src/plain/f", "1");
    fs::create_directories(dir / "src/m");
    const fs::path mnt = dir / "src/m";
    if (::mount("volwatch-test", mnt.c_str(), "tmpfs", 0, nullptr) != 0)
        GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
    struct Unmount {
        fs::path path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{mnt};
    write_file(mnt / "sub/f", "1");
    MAKE_WATCHER(watcher);
    auto setup = watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}}));
    ASSERT_TRUE(setup.ok());
    if (GetParam() == "inotify") {
        EXPECT_EQ(setup->watches, 3U);  // the base, src, plain
        EXPECT_EQ(kernel_watches(watcher->fd()), 3U);  // the one made on the mounted root is dropped
    }
    drain(*watcher);
    write_file(mnt / "sub/f", "2");
    write_file(mnt / "g", "2");
    EXPECT_FALSE(wait_event(*watcher, 1, WatchEventKind::changed, nullptr, 300));
    write_file(dir / "src/plain/f", "2");
    EXPECT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
}

TEST_P(WatcherTest, VolwatchsOwnStateDirectoryIsNeverWatched) {
    TempDir dir;
    write_file(dir / "var/lib/volwatch/build/x.json", "{}");
    write_file(dir / "var/other/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"var", WatchRole::source, unlimited_depth}})).ok());
    write_file(dir / "var/lib/volwatch/build/x.json", "{\"new\":1}");
    EXPECT_FALSE(wait_event(*watcher, 1, WatchEventKind::changed, nullptr, 300));
    write_file(dir / "var/other/file", "2");
    EXPECT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
}

TEST_P(WatcherTest, ADirectoryRenamedInsideASourceKeepsReportingUnderItsNewName) {
    TempDir dir;
    write_file(dir / "src/old/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}})).ok());
    write_file(dir / "src/old/file", "2");  // the old name gets cached (fanotify)
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    fs::rename(dir / "src/old", dir / "src/new");
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed));
    drain(*watcher);
    write_file(dir / "src/new/file", "3");
    std::vector<WatchEvent> events;
    ASSERT_TRUE(wait_event(*watcher, 1, WatchEventKind::changed, &events));
    EXPECT_EQ(events.back().path, "src/new/file");
}

TEST_P(WatcherTest, ChangesOutsideTheTargetsAreNotReported) {
    TempDir dir;
    write_file(dir / "src/file", "1");
    write_file(dir / "elsewhere/file", "1");
    MAKE_WATCHER(watcher);
    ASSERT_TRUE(watcher->add(1, plan_for(dir.path(), {{"src", WatchRole::source, unlimited_depth}})).ok());
    write_file(dir / "elsewhere/file", "2");
    write_file(dir / "srcfoo", "x");
    EXPECT_FALSE(wait_event(*watcher, 1, WatchEventKind::changed, nullptr, 300));
}

}  // namespace
}  // namespace volwatch
