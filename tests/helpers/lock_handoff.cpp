// lock_handoff: measures how long a waiting process takes to get a lock
// after its holder releases it, for volwatch's volume lock and, as the
// kernel's baseline, for a bare flock(2). Used by bench/lock.sh.
//   lock_handoff volwatch LOCK_DIR ROUNDS
//   lock_handoff flock FILE ROUNDS
// Prints one line per round: the handoff in microseconds.
//   lock_handoff stamp
// Prints CLOCK_MONOTONIC in nanoseconds (for whole-process measurements).
//   lock_handoff observe FILE
// Prints "ready" once an inotify watch is on FILE, then CLOCK_MONOTONIC
// when FILE is next modified (a lock record's rewrite), and exits.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include "volwatch/lockdir.hpp"

using namespace volwatch;

namespace {

long long now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The waiter must be asleep before the release, or we would measure its
// start-up; its state in /proc tells (the bench may poll, the product not).
void wait_until_sleeping(pid_t pid) {
    for (int i = 0; i < 5000; ++i) {
        char state = '?';
        std::string path = "/proc/" + std::to_string(pid) + "/stat";
        if (FILE* f = std::fopen(path.c_str(), "r")) {
            if (std::fscanf(f, "%*d (%*[^)]) %c", &state) != 1) state = '?';
            std::fclose(f);
        }
        if (state == 'S') break;
        ::usleep(200);
    }
    ::usleep(2000);
}

long long receive(int fd) {
    long long value = 0;
    if (::read(fd, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) return -1;
    return value;
}

int run_volwatch(const char* lock_dir, int rounds) {
    LockDir dir = LockDir::open(lock_dir, LockDirAccess::write).or_throw();
    const std::string id = "path-handoffbench";
    for (int round = 0; round < rounds; ++round) {
        AcquireRequest hold;
        hold.volume = "handoff";
        hold.owners = {self_identity()};
        (void)acquire_volume_lock(dir, id, hold).or_throw();
        int pipe_fds[2];
        if (::pipe(pipe_fds) != 0) return 70;
        pid_t child = ::fork();
        if (child == 0) {
            AcquireRequest wait = hold;
            wait.owners = {self_identity()};
            wait.wait = Duration::max();
            Grant grant = acquire_volume_lock(dir, id, wait).or_throw();
            long long got = now_ns();
            (void)!::write(pipe_fds[1], &got, sizeof got);
            retire_watch(std::move(grant.watch));
            ReleaseRequest release;
            release.requesters = {self_identity()};
            (void)release_volume_lock(dir, id, release);
            ::_exit(0);
        }
        // Queued, then asleep.
        for (int i = 0; i < 5000; ++i) {
            auto record = dir.volume_file(id).or_throw().read().or_throw();
            if (!record.waiters.empty()) break;
            ::usleep(200);
        }
        wait_until_sleeping(child);
        long long released = now_ns();
        ReleaseRequest release;
        release.requesters = {self_identity()};
        (void)release_volume_lock(dir, id, release).or_throw();
        long long got = receive(pipe_fds[0]);
        ::waitpid(child, nullptr, 0);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        std::printf("%.1f\n", static_cast<double>(got - released) / 1000.0);
    }
    return 0;
}

int run_flock(const char* file, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        int fd = ::open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || ::flock(fd, LOCK_EX) != 0) return 70;
        int pipe_fds[2];
        if (::pipe(pipe_fds) != 0) return 70;
        pid_t child = ::fork();
        if (child == 0) {
            int own = ::open(file, O_RDWR | O_CLOEXEC);
            ::flock(own, LOCK_EX);
            long long got = now_ns();
            (void)!::write(pipe_fds[1], &got, sizeof got);
            ::_exit(0);
        }
        wait_until_sleeping(child);
        long long released = now_ns();
        ::flock(fd, LOCK_UN);
        long long got = receive(pipe_fds[0]);
        ::waitpid(child, nullptr, 0);
        ::close(fd);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        std::printf("%.1f\n", static_cast<double>(got - released) / 1000.0);
    }
    return 0;
}

int run_observe(const char* file) {
    int inotify = ::inotify_init1(IN_CLOEXEC);
    if (inotify < 0 || ::inotify_add_watch(inotify, file, IN_MODIFY) < 0) return 70;
    std::printf("ready\n");
    std::fflush(stdout);
    alignas(inotify_event) char buffer[4096];
    if (::read(inotify, buffer, sizeof buffer) <= 0) return 70;
    std::printf("%lld\n", now_ns());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "stamp") {
        std::printf("%lld\n", now_ns());
        return 0;
    }
    if (argc == 3 && std::string(argv[1]) == "observe") return run_observe(argv[2]);
    if (argc != 4) {
        std::fprintf(stderr, "usage: lock_handoff volwatch LOCK_DIR ROUNDS | flock FILE ROUNDS\n");
        return 64;
    }
    std::string mode = argv[1];
    int rounds = std::max(1, std::atoi(argv[3]));
    try {
        if (mode == "volwatch") return run_volwatch(argv[2], rounds);
        if (mode == "flock") return run_flock(argv[2], rounds);
    } catch (const Failure& failure) {
        std::fprintf(stderr, "lock_handoff: %s\n", failure.what());
        return static_cast<int>(failure.code());
    }
    std::fprintf(stderr, "lock_handoff: unknown mode %s\n", mode.c_str());
    return 64;
}
