#include "volwatch/mount_monitor.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/fd.hpp"

namespace volwatch {
namespace {

using volwatch::testing::TempDir;

bool readable(const MountMonitor& monitor, int timeout_ms) {
    pollfd p{monitor.fd(), static_cast<short>(monitor.name() == "mountinfo" ? POLLPRI : POLLIN), 0};
    return ::poll(&p, 1, timeout_ms) > 0;
}

// Waits for the monitor to become readable and drains it: did it say "re-read"?
bool says_reread(MountMonitor& monitor, const MountInterest& interest) {
    bool reread = false;
    while (readable(monitor, 500)) reread |= monitor.drain(interest);
    return reread;
}

TEST(MountMonitor, StatMountDescribesTheRootMount) {
    std::uint64_t id = unique_mount_id("/");
    if (id == 0) GTEST_SKIP() << "no STATX_MNT_ID_UNIQUE (Linux 6.8+)";
    auto facts = stat_mount(id);
    if (!facts) GTEST_SKIP() << "no statmount (Linux 6.8+)";
    EXPECT_EQ(facts->mount_point, "/");
    EXPECT_EQ(facts->root, "/");
    EXPECT_FALSE(facts->fs_type.empty());
    EXPECT_FALSE(stat_mount(~0ULL).has_value());
}

TEST(MountMonitor, WithoutPrivilegeItFollowsMountinfo) {
    std::string why;
    auto monitor = make_mount_monitor(false, &why);
    EXPECT_EQ(monitor->name(), "mountinfo");
    EXPECT_FALSE(why.empty());
}

class PrivilegedMountMonitor : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (mounts)";
        // A private mount namespace: mounts made by tests running alongside
        // must not reach the monitor (ctest runs each case in its own process).
        if (!private_namespace_) {
            if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
                GTEST_SKIP() << "cannot make a private mount namespace";
            private_namespace_ = true;
        }
        std::string why;
        monitor_ = make_mount_monitor(GetParam(), &why);
        if (GetParam() && monitor_->name() != "fanotify") GTEST_SKIP() << "no fanotify mount notifications here: " << why;
        while (readable(*monitor_, 0)) (void)monitor_->drain({});
    }
    std::unique_ptr<MountMonitor> monitor_;
    static inline bool private_namespace_ = false;
};

INSTANTIATE_TEST_SUITE_P(Backends, PrivilegedMountMonitor, ::testing::Values(false, true),
                         [](const auto& param_info) { return param_info.param ? "fanotify" : "mountinfo"; });

TEST_P(PrivilegedMountMonitor, ABindMountOfASubtreeAndATmpfsNeedNoReReadWithFanotify) {
    TempDir dir;
    std::filesystem::create_directories(dir / "src/sub");
    std::filesystem::create_directories(dir / "bind");
    std::filesystem::create_directories(dir / "tmp");
    ASSERT_EQ(::mount((dir / "src/sub").c_str(), (dir / "bind").c_str(), nullptr, MS_BIND, nullptr), 0);
    ASSERT_EQ(::mount("tmpfs", (dir / "tmp").c_str(), "tmpfs", 0, "size=1m"), 0);
    bool reread = says_reread(*monitor_, {});
    ::umount((dir / "bind").c_str());
    ::umount((dir / "tmp").c_str());
    // The mountinfo backend cannot tell mounts apart; fanotify can.
    EXPECT_EQ(reread, monitor_->name() == "mountinfo");
    (void)says_reread(*monitor_, {});
}

TEST_P(PrivilegedMountMonitor, AMountOverAVolumeRootAndTheDetachOfAVolumesMountNeedAReRead) {
    TempDir dir;
    std::filesystem::create_directories(dir / "vol");
    MountInterest interest;
    interest.roots.insert((dir / "vol").string());
    ASSERT_EQ(::mount("tmpfs", (dir / "vol").c_str(), "tmpfs", 0, "size=1m"), 0);
    EXPECT_TRUE(says_reread(*monitor_, interest));
    interest.mount_ids.insert(unique_mount_id(dir / "vol"));
    ASSERT_EQ(::umount((dir / "vol").c_str()), 0);
    EXPECT_TRUE(says_reread(*monitor_, interest));
}

// What lets vwatch stop listening between the events of a burst
// (mount_event_batch in vwatch.cpp): a monitor that queues events reports,
// to an epoll set that it joins afterwards, everything that happened while
// nobody listened, and one drain finds a mount that matters behind many that
// do not. mountinfo consumes its change on every poll: it must say so.
TEST_P(PrivilegedMountMonitor, AQueueingMonitorKeepsWhatHappensWhileNobodyListens) {
    if (!monitor_->queues_events()) {
        EXPECT_EQ(monitor_->name(), "mountinfo");
        return;
    }
    TempDir dir;
    std::filesystem::create_directories(dir / "src/sub");
    std::filesystem::create_directories(dir / "vol");
    MountInterest interest;
    interest.roots.insert((dir / "vol").string());
    constexpr int binds = 20;
    for (int i = 0; i < binds; ++i) {
        std::filesystem::create_directories(dir / "bind" / std::to_string(i));
        ASSERT_EQ(::mount((dir / "src/sub").c_str(), (dir / "bind" / std::to_string(i)).c_str(), nullptr, MS_BIND, nullptr), 0);
    }
    ASSERT_EQ(::mount("tmpfs", (dir / "vol").c_str(), "tmpfs", 0, "size=1m"), 0);
    UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = monitor_->poll_events();
    ASSERT_EQ(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, monitor_->fd(), &ev), 0);
    epoll_event out{};
    EXPECT_EQ(::epoll_wait(epoll.get(), &out, 1, 0), 1);
    EXPECT_TRUE(monitor_->drain(interest));
    for (int i = 0; i < binds; ++i) ::umount((dir / "bind" / std::to_string(i)).c_str());
    ::umount((dir / "vol").c_str());
    (void)says_reread(*monitor_, {});
}

}  // namespace
}  // namespace volwatch
