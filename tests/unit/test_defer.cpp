#include "volwatch/defer.hpp"

#include <csignal>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace volwatch {
namespace {

using volwatch::testing::TempDir;
using volwatch::testing::write_file;

// A child process that takes a lock on `path` with `how` and waits to be killed.
pid_t locker(const std::filesystem::path& path, int how) {
    int ready[2];
    if (::pipe(ready) != 0) return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
        int fd = ::open(path.c_str(), O_RDWR);
        if (how == 0) {
            ::flock(fd, LOCK_EX);
        } else if (how == 1) {
            struct flock fl {};
            fl.l_type = F_WRLCK;
            fl.l_whence = SEEK_SET;
            ::fcntl(fd, F_SETLK, &fl);
        }  // how == 2: just keep it open, as pacman does with db.lck
        (void)::write(ready[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    char c;
    (void)::read(ready[0], &c, 1);
    ::close(ready[0]);
    ::close(ready[1]);
    return pid;
}

void reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

TEST(Defer, MissingAndUnusedFilesAreFree) {
    TempDir dir;
    write_file(dir / "lock-frontend", "");
    EXPECT_FALSE(find_defer_holder({dir / "missing", dir / "lock-frontend"}).has_value());
    EXPECT_FALSE(find_defer_holder({}).has_value());
}

TEST(Defer, FlockFcntlAndOpenHoldersAreFoundWithTheirPid) {
    TempDir dir;
    auto path = dir / "lock";
    write_file(path, "");
    for (int how : {0, 1, 2}) {
        pid_t pid = locker(path, how);
        ASSERT_GT(pid, 0);
        auto holder = find_defer_holder({dir / "missing", path});
        ASSERT_TRUE(holder.has_value()) << "how " << how;
        EXPECT_EQ(holder->path, path);
        EXPECT_EQ(holder->how, how == 2 ? "open" : "lock");
        ASSERT_FALSE(holder->pids.empty());
        EXPECT_EQ(holder->pids[0], pid);
        reap(pid);
        EXPECT_FALSE(find_defer_holder({path}).has_value()) << "how " << how;
    }
}

TEST(Defer, ParsesProcLocks) {
    dev_t dev = makedev(8, 1);
    std::string text =
        "1: POSIX  ADVISORY  WRITE 1505 08:01:123456 0 EOF\n"
        "1: -> POSIX  ADVISORY  WRITE 1600 08:01:123456 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 1700 08:01:999 0 EOF\n"
        "3: OFDLCK ADVISORY  WRITE -1 08:01:777 0 EOF\n";
    bool found = false;
    EXPECT_EQ(lock_holders(text, dev, 123456, found), (std::vector<pid_t>{1505}));
    EXPECT_TRUE(found);
    EXPECT_TRUE(lock_holders(text, dev, 777, found).empty());
    EXPECT_TRUE(found);
    EXPECT_TRUE(lock_holders(text, dev, 42, found).empty());
    EXPECT_FALSE(found);
}

}  // namespace
}  // namespace volwatch
