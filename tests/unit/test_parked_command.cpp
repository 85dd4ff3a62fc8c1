#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"
#include "volwatch/parked_command.hpp"
#include "volwatch/process.hpp"

using namespace volwatch;
using volwatch::testing::TempDir;

namespace {

sigset_t no_signals() {
    sigset_t mask;
    sigemptyset(&mask);
    return mask;
}

int exit_status(pid_t pid) {
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST(ParkedCommandTest, WaitsUntilStartedAndThenRunsAsTheSameProcess) {
    TempDir dir;
    auto marker = dir / "ran";
    std::vector<std::string> argv = {"sh", "-c", "echo $$ > \"$1\"", "sh", marker.string()};
    ParkedCommand command(argv, no_signals());
    // Parked: a live process of its own that has not run the command.
    ASSERT_GT(command.pid(), 0);
    EXPECT_TRUE(identify_process(command.pid()).has_value());
    ::usleep(100 * 1000);
    EXPECT_FALSE(std::filesystem::exists(marker));
    // The caller's own copy may change at once: the parked process has its own.
    argv.assign({"false"});
    EXPECT_EQ(command.start(), 0);
    EXPECT_EQ(exit_status(command.pid()), 0);
    // The command ran in the very process whose PID the caller knew all along
    // (sh found through PATH).
    EXPECT_EQ(volwatch::testing::read_file(marker), std::to_string(command.pid()) + "\n");
}

TEST(ParkedCommandTest, CancelledCommandNeverRunsAndIsReaped) {
    TempDir dir;
    auto marker = dir / "ran";
    pid_t pid = 0;
    {
        ParkedCommand command({"touch", marker.string()}, no_signals());
        pid = command.pid();
        command.cancel();
        command.cancel();  // once is enough; twice changes nothing
        EXPECT_THROW((void)command.start(), Failure);
    }
    EXPECT_FALSE(std::filesystem::exists(marker));
    // Reaped by cancel(): no such child is left.
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

TEST(ParkedCommandTest, DestroyingAParkedCommandCancelsIt) {
    TempDir dir;
    auto marker = dir / "ran";
    pid_t pid = 0;
    {
        ParkedCommand command({"touch", marker.string()}, no_signals());
        pid = command.pid();
    }
    EXPECT_FALSE(std::filesystem::exists(marker));
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

TEST(ParkedCommandTest, AnExecThatFailsReportsItsErrorAndExitsAsAShellWould) {
    TempDir dir;
    ParkedCommand missing({(dir / "no-such-command").string()}, no_signals());
    EXPECT_EQ(missing.start(), ENOENT);
    EXPECT_EQ(exit_status(missing.pid()), 127);

    volwatch::testing::write_file(dir / "not-executable", "#!/bin/sh\n");
    ParkedCommand denied({(dir / "not-executable").string()}, no_signals());
    EXPECT_EQ(denied.start(), EACCES);
    EXPECT_EQ(exit_status(denied.pid()), 126);

    ParkedCommand not_in_path({"volwatch-no-such-command-anywhere"}, no_signals());
    EXPECT_EQ(not_in_path.start(), ENOENT);
    EXPECT_EQ(exit_status(not_in_path.pid()), 127);
}

TEST(ParkedCommandTest, TheCommandRunsWithTheGivenSignalMask) {
    // The caller blocks SIGTERM (vlock takes it through a signalfd); the
    // command gets the mask it is given, here none blocked.
    sigset_t blocked, old;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    ASSERT_EQ(::sigprocmask(SIG_BLOCK, &blocked, &old), 0);
    ParkedCommand command({"sh", "-c", "kill -TERM $$; sleep 5"}, no_signals());
    ASSERT_EQ(::sigprocmask(SIG_SETMASK, &old, nullptr), 0);
    EXPECT_EQ(command.start(), 0);
    EXPECT_EQ(exit_status(command.pid()), 128 + SIGTERM);
}
