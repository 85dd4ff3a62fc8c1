#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "volwatch/process.hpp"

using namespace volwatch;

namespace {

// A child that sleeps until killed; reaped by the destructor.
struct Sleeper {
    pid_t pid = ::fork();
    Sleeper() {
        if (pid == 0) {
            ::pause();
            ::_exit(0);
        }
    }
    ~Sleeper() { finish(); }
    void finish() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        pid = 0;
    }
};

}  // namespace

TEST(Process, IdentifiesItself) {
    ProcessIdentity me = self_identity();
    EXPECT_EQ(me.pid, ::getpid());
    EXPECT_GT(me.start_time, 0u);
    EXPECT_EQ(me.boot_id, current_boot_id());
    EXPECT_TRUE(is_alive(me));
    EXPECT_EQ(identify_process(::getpid()), me);
}

TEST(Process, ARecycledPidOrAnotherBootIsNotAlive) {
    ProcessIdentity me = self_identity();
    ProcessIdentity recycled = me;
    recycled.start_time += 1;
    EXPECT_FALSE(is_alive(recycled));
    ProcessIdentity earlier_boot = me;
    earlier_boot.boot_id = "00000000-0000-0000-0000-000000000000";
    EXPECT_FALSE(is_alive(earlier_boot));
}

TEST(Process, AZombieIsNotAlive) {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    auto identity = identify_process(child);
    // Until reaped it is a zombie: it holds nothing.
    for (int i = 0; i < 200 && identify_process(child); ++i) ::usleep(5000);
    EXPECT_FALSE(identify_process(child));
    if (identity) {
        EXPECT_FALSE(is_alive(*identity));
    }
    ::waitpid(child, nullptr, 0);
}

TEST(Process, HandleBecomesReadableWhenTheProcessExits) {
    Sleeper sleeper;
    auto who = identify_process(sleeper.pid);
    ASSERT_TRUE(who);
    UniqueFd handle = open_process_handle(*who);
    if (!handle && errno == ENOSYS) GTEST_SKIP() << "no pidfd_open on this kernel";
    ASSERT_TRUE(handle);
    pollfd fd{handle.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&fd, 1, 0), 0);
    ::kill(sleeper.pid, SIGKILL);
    EXPECT_EQ(::poll(&fd, 1, 5000), 1);
    sleeper.finish();
}

TEST(Process, NoHandleForAWrongStartTime) {
    Sleeper sleeper;
    auto who = identify_process(sleeper.pid);
    ASSERT_TRUE(who);
    who->start_time += 1;
    EXPECT_FALSE(open_process_handle(*who));
}

TEST(Process, Describes) {
    EXPECT_EQ(describe_process(42, "sleep 60"), "pid 42 (sleep 60)");
    EXPECT_EQ(describe_process(42, ""), "pid 42");
    EXPECT_EQ(parent_of(::getpid()), ::getppid());
}
