#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "test_support.hpp"
#include "volwatch/lockdir.hpp"

using namespace volwatch;
using volwatch::testing::TempDir;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// ---- The protocol with fake processes: alive unless the pid is listed dead.

struct FakeProcesses {
    std::set<pid_t> dead;
    Liveness liveness() const {
        return [this](const ProcessIdentity& who) { return !dead.contains(who.pid); };
    }
};

ProcessIdentity fake(pid_t pid) { return ProcessIdentity{pid, static_cast<std::uint64_t>(pid) * 10, "boot"}; }

LockRecord held_by(pid_t pid, std::vector<pid_t> waiters = {}) {
    LockRecord record;
    record.owners = {fake(pid)};
    record.command = "update-initramfs -u";
    record.since = 1764042184;
    std::uint64_t ticket = 1;
    for (pid_t w : waiters) record.waiters.push_back({ticket++, fake(w)});
    record.next_ticket = ticket;
    return record;
}

TEST(LockProtocol, ADeadOwnerFreesTheLockAndCountsAFailure) {
    FakeProcesses processes{{100, 201}};
    LockRecord record = held_by(100, {200, 201, 202});
    std::vector<std::string> notes;
    EXPECT_TRUE(tidy_record(record, processes.liveness(), LockLimits{5, 25}, notes));
    EXPECT_TRUE(record.owners.empty());
    EXPECT_EQ(record.failures, 1);
    EXPECT_EQ(record.last_status, -1);
    ASSERT_EQ(record.waiters.size(), 2u);
    EXPECT_EQ(record.waiters[0].who.pid, 200);
    EXPECT_EQ(record.waiters[1].who.pid, 202);
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_EQ(notes[0], "pid 100 (update-initramfs -u) exited without unlocking; counted as a failed update (failures: 1 of 5)");
}

TEST(LockProtocol, OneLiveOwnerKeepsTheLock) {
    FakeProcesses processes{{100}};
    LockRecord record = held_by(100);
    record.owners.push_back(fake(101));  // vlock died, its command still runs
    std::vector<std::string> notes;
    EXPECT_FALSE(tidy_record(record, processes.liveness(), LockLimits{}, notes));
    EXPECT_EQ(record.owners.size(), 2u);
    EXPECT_TRUE(notes.empty());
}

TEST(LockProtocol, ADamagedRecordIsReset) {
    LockRecord record = held_by(100);
    record.damaged = true;
    std::vector<std::string> notes;
    EXPECT_TRUE(tidy_record(record, FakeProcesses{}.liveness(), LockLimits{}, notes));
    EXPECT_FALSE(record.damaged);
    EXPECT_TRUE(record.owners.empty());
    EXPECT_EQ(notes.size(), 1u);
}

TEST(LockProtocol, AccountingResetsOnSuccessIgnoresTempfailCountsFailures) {
    LockLimits limits{3, 25};
    LockRecord record;
    std::vector<std::string> notes;
    account_status(record, 1, 10, limits, notes);
    account_status(record, 75, 11, limits, notes);
    EXPECT_EQ(record.failures, 1);
    EXPECT_EQ(record.last_status, 75);
    record.attempts = 4;
    account_status(record, 0, 12, limits, notes);
    EXPECT_EQ(record.failures, 0);
    EXPECT_EQ(record.attempts, 0);  // any success resets both (the seed did not)
    EXPECT_DOUBLE_EQ(record.last_success, 12);
    ASSERT_EQ(notes.size(), 2u);
    EXPECT_EQ(notes[0], "update failed with status 1 (failures: 1 of 3)");
    EXPECT_EQ(notes[1], "recovered after 1 failed update");
}

TEST(LockProtocol, GivesUpAtTheLimitsUntilASuccess) {
    LockLimits limits{2, 25};
    LockRecord record;
    std::vector<std::string> notes;
    account_status(record, 1, 1, limits, notes);
    EXPECT_FALSE(record.gave_up);
    account_status(record, 1, 2, limits, notes);
    EXPECT_TRUE(record.gave_up);
    EXPECT_EQ(notes.back(), "gave up on the volume after 2 consecutive failed updates");
    account_status(record, 1, 3, limits, notes);
    EXPECT_EQ(notes.back(), "update failed with status 1 (failures: 3 of 2)");  // said once
    account_status(record, 0, 4, limits, notes);
    EXPECT_FALSE(record.gave_up);
}

TEST(LockProtocol, BusyMessageNamesHolderSinceAndWaiting) {
    FakeProcesses processes{{202}};
    LockRecord record = held_by(4242, {200, 201, 202});
    std::string message = busy_message(record, processes.liveness(), fake(201));
    EXPECT_TRUE(message.starts_with("busy: held by pid 4242 (update-initramfs -u) since ")) << message;
    EXPECT_TRUE(message.ends_with(", 1 waiting")) << message;
    processes.dead = {4242};
    EXPECT_EQ(busy_message(record, processes.liveness()), "busy: 3 waiting ahead");
    EXPECT_FALSE(busy_message(held_by(4242), FakeProcesses{}.liveness()).ends_with("waiting"));
}

TEST(LockProtocol, MayTakeOnlyWhenFreeAndFirstLiveWaiter) {
    FakeProcesses processes;
    LockRecord record = held_by(100, {200, 201});
    EXPECT_FALSE(may_take(record, fake(200), processes.liveness()));
    processes.dead = {100};
    EXPECT_TRUE(may_take(record, fake(200), processes.liveness()));
    EXPECT_FALSE(may_take(record, fake(201), processes.liveness()));
    EXPECT_FALSE(may_take(record, fake(300), processes.liveness()));  // newcomers queue behind
    processes.dead = {100, 200};
    EXPECT_TRUE(may_take(record, fake(201), processes.liveness()));
    EXPECT_TRUE(may_take(LockRecord{}, fake(300), processes.liveness()));
}

// ---- The lock directory on disk.

class LockDirTest : public ::testing::Test {
protected:
    TempDir temp;
    fs::path locks = temp / "locks";
    LockDir open_dir(LockDirAccess access = LockDirAccess::write) { return LockDir::open(locks, access).or_throw(); }
};

TEST_F(LockDirTest, CreatesTheDirectoryAndFilesWithTheirModes) {
    ::umask(077);
    LockDir dir = open_dir();
    ::umask(022);
    struct stat st{};
    ASSERT_EQ(::stat(locks.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    ASSERT_EQ(::stat((locks / "volumes").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    auto file = dir.volume_file("uuid-1");
    ASSERT_TRUE(file) << file.problem().message;
    ASSERT_EQ(::stat((locks / "volumes/uuid-1.lock").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(LockDirTest, WritersGuardARecordWithAPrivateFileAndReadersTakeNoLock) {
    ::umask(0);
    LockDir dir = open_dir();
    ::umask(022);
    auto file = dir.volume_file("uuid-1");
    ASSERT_TRUE(file) << file.problem().message;
    struct stat st{};
    ASSERT_EQ(::stat((locks / "guard").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    ASSERT_EQ(::stat((locks / "guard/volume-uuid-1").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    ASSERT_GE(file->guard(), 0);

    // Anyone may hold a flock on the world-readable record: neither a
    // rewrite nor a read waits for it.
    UniqueFd foreign(::open((locks / "volumes/uuid-1.lock").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::flock(foreign.get(), LOCK_EX | LOCK_NB), 0);
    auto written = file->update([](LockRecord& record) {
        record.failures = 2;
        return true;
    });
    ASSERT_TRUE(written) << written.problem().message;
    EXPECT_EQ(file->read()->failures, 2);
    EXPECT_EQ(dir.peek_volume("uuid-1")->failures, 2);
    // While a writer holds the guard, a second writer's flock would wait.
    UniqueFd guard(::open((locks / "guard/volume-uuid-1").c_str(), O_RDONLY | O_CLOEXEC));
    {
        RecordLock held(*file, true);
        EXPECT_NE(::flock(guard.get(), LOCK_EX | LOCK_NB), 0);
        EXPECT_EQ(errno, EWOULDBLOCK);
    }
    EXPECT_EQ(::flock(guard.get(), LOCK_EX | LOCK_NB), 0);
}

TEST_F(LockDirTest, ReadAccessOpensNoGuardAndRefusesToLock) {
    { LockDir writer = open_dir(); (void)writer.volume_file("uuid-1").or_throw(); }
    LockDir dir = open_dir(LockDirAccess::read);
    auto file = dir.volume_file("uuid-1");
    ASSERT_TRUE(file);
    EXPECT_LT(file->guard(), 0);
    EXPECT_THROW(RecordLock(*file, true), Failure);
}

TEST_F(LockDirTest, AGuardDirectoryOthersCanReadIsClosedOneTheyCanWriteRefused) {
    (void)open_dir();
    ::chmod((locks / "guard").c_str(), 0755);
    (void)open_dir();
    struct stat st{};
    ASSERT_EQ(::stat((locks / "guard").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    ::chmod((locks / "guard").c_str(), 0730);
    auto refused = LockDir::open(locks, LockDirAccess::write);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.problem().code, ExitCode::permission);
    EXPECT_NE(refused.problem().message.find("guard: refusing the lock directory: writable by group or others"),
              std::string::npos);
}

TEST_F(LockDirTest, ReadAccessCreatesNothing) {
    LockDir dir = open_dir(LockDirAccess::read);
    EXPECT_FALSE(dir.exists());
    EXPECT_TRUE(list_volume_locks(dir)->empty());
    EXPECT_FALSE(reboot_lock_owner(dir).value());
    EXPECT_FALSE(fs::exists(locks));
}

TEST_F(LockDirTest, RefusesSymlinkGroupWritableAndNonDirectory) {
    fs::create_directory(temp / "real");
    fs::create_directory_symlink(temp / "real", locks);
    auto symlinked = LockDir::open(locks, LockDirAccess::read);
    ASSERT_FALSE(symlinked);
    EXPECT_EQ(symlinked.problem().code, ExitCode::permission);
    EXPECT_NE(symlinked.problem().message.find("symlinked lock directory"), std::string::npos);
    fs::remove(locks);

    fs::create_directory(locks);
    ::chmod(locks.c_str(), 0777);
    auto writable = LockDir::open(locks, LockDirAccess::write);
    ASSERT_FALSE(writable);
    EXPECT_NE(writable.problem().message.find("writable by group or others (mode 0777)"), std::string::npos);
    fs::remove(locks);

    volwatch::testing::write_file(locks, "not a directory");
    EXPECT_EQ(LockDir::open(locks, LockDirAccess::write).problem().code, ExitCode::permission);
}

TEST_F(LockDirTest, RefusesSymlinkedAndHardLinkedLockFiles) {
    LockDir dir = open_dir();
    fs::create_symlink(temp / "elsewhere", locks / "volumes/uuid-1.lock");
    auto symlinked = dir.volume_file("uuid-1");
    ASSERT_FALSE(symlinked);
    EXPECT_NE(symlinked.problem().message.find("symlinked lock file"), std::string::npos);
    EXPECT_FALSE(fs::exists(temp / "elsewhere"));

    volwatch::testing::write_file(temp / "other", "");
    fs::create_hard_link(temp / "other", locks / "volumes/uuid-2.lock");
    auto linked = dir.volume_file("uuid-2");
    ASSERT_FALSE(linked);
    EXPECT_NE(linked.problem().message.find("2 hard links"), std::string::npos);
    EXPECT_FALSE(dir.volume_file("../escape"));
}

AcquireRequest request_for(std::vector<ProcessIdentity> owners, std::optional<Duration> wait = std::nullopt) {
    AcquireRequest request;
    request.volume = "/srv/img";
    request.owners = std::move(owners);
    request.command = "unit test";
    request.purpose = "testing";
    request.wait = wait;
    return request;
}

// A child process that sleeps until killed; reaped by the destructor.
struct Child {
    pid_t pid = ::fork();
    Child() {
        if (pid == 0) {
            ::pause();
            ::_exit(0);
        }
    }
    ~Child() { kill(); }
    ProcessIdentity identity() const {
        for (int i = 0; i < 100; ++i) {
            if (auto who = identify_process(pid)) return *who;
            ::usleep(1000);
        }
        throw std::runtime_error("child vanished");
    }
    void kill() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        pid = 0;
    }
};

TEST_F(LockDirTest, AcquireReleaseAndTheOwnerRule) {
    LockDir dir = open_dir();
    ProcessIdentity me = self_identity();
    auto grant = acquire_volume_lock(dir, "uuid-1", request_for({me}));
    ASSERT_TRUE(grant) << grant.problem().message;
    EXPECT_EQ(grant->record.owners, std::vector<ProcessIdentity>{me});

    auto again = acquire_volume_lock(dir, "uuid-1", request_for({me}));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.problem().code, ExitCode::busy);
    EXPECT_TRUE(again.problem().message.starts_with("busy: held by pid ")) << again.problem().message;

    ReleaseRequest stranger;
    stranger.requesters = {ProcessIdentity{1, 1, "boot"}};
    auto refused = release_volume_lock(dir, "uuid-1", stranger);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.problem().code, ExitCode::not_owner);

    ReleaseRequest owner;
    owner.requesters = {me};
    owner.status = 1;
    auto released = release_volume_lock(dir, "uuid-1", owner);
    ASSERT_TRUE(released) << released.problem().message;
    EXPECT_EQ(released->failures, 1);
    EXPECT_TRUE(released->owners.empty());
    EXPECT_EQ(release_volume_lock(dir, "uuid-1", owner).problem().code, ExitCode::not_locked);

    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({me})));
    stranger.force = true;
    EXPECT_TRUE(release_volume_lock(dir, "uuid-1", stranger));
}

TEST_F(LockDirTest, AnAddedOwnerKeepsTheLockHeldAfterTheHolderDies) {
    LockDir dir = open_dir();
    Child holder, command;
    ProcessIdentity h = holder.identity(), c = command.identity();
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({h})));
    EXPECT_EQ(add_lock_owner(dir, "uuid-2", h, c).problem().code, ExitCode::not_locked);
    EXPECT_EQ(add_lock_owner(dir, "uuid-1", ProcessIdentity{1, 1, "boot"}, c).problem().code, ExitCode::not_owner);
    auto added = add_lock_owner(dir, "uuid-1", h, c);
    ASSERT_TRUE(added) << added.problem().message;
    EXPECT_EQ(added->owners, (std::vector<ProcessIdentity>{h, c}));  // the holder stays the one named
    auto twice = add_lock_owner(dir, "uuid-1", h, c);
    ASSERT_TRUE(twice);
    EXPECT_EQ(twice->owners.size(), 2u);

    holder.kill();  // as kill -9 of vrebuild while its rebuilder runs
    ProcessIdentity me = self_identity();
    auto busy = acquire_volume_lock(dir, "uuid-1", request_for({me}));
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.problem().code, ExitCode::busy);
    EXPECT_NE(busy.problem().message.find("pid " + std::to_string(c.pid)), std::string::npos) << busy.problem().message;

    command.kill();
    auto grant = acquire_volume_lock(dir, "uuid-1", request_for({me}));
    ASSERT_TRUE(grant) << grant.problem().message;
    EXPECT_EQ(grant->record.failures, 1);  // nobody unlocked: a failed update
}

TEST_F(LockDirTest, RemovingAnAddedOwnerNeverFreesTheLock) {
    LockDir dir = open_dir();
    Child command;
    ProcessIdentity me = self_identity(), c = command.identity();
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({me})));
    ASSERT_TRUE(add_lock_owner(dir, "uuid-1", me, c));
    auto removed = remove_lock_owner(dir, "uuid-1", c);
    ASSERT_TRUE(removed) << removed.problem().message;
    EXPECT_EQ(removed->owners, std::vector<ProcessIdentity>{me});
    auto last = remove_lock_owner(dir, "uuid-1", me);
    ASSERT_TRUE(last);
    EXPECT_EQ(last->owners, std::vector<ProcessIdentity>{me});
    ReleaseRequest release;
    release.requesters = {me};
    EXPECT_TRUE(release_volume_lock(dir, "uuid-1", release));
}

TEST_F(LockDirTest, AWaiterWakesWhenTheOwnerDies) {
    LockDir dir = open_dir();
    Child owner;
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({owner.identity()})));
    std::thread killer([&] {
        std::this_thread::sleep_for(200ms);
        owner.kill();
    });
    std::vector<std::string> notes;
    auto grant = acquire_volume_lock(dir, "uuid-1", request_for({self_identity()}, 10s),
                                     [&](const std::string& note) { notes.push_back(note); });
    killer.join();
    ASSERT_TRUE(grant) << grant.problem().message;
    EXPECT_GE(grant->waited, 150ms);
    EXPECT_LT(grant->waited, 5s);
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_NE(notes[0].find("exited without unlocking"), std::string::npos);
    EXPECT_EQ(grant->record.failures, 1);
}

TEST_F(LockDirTest, AWaitEndsBusyAndLeavesTheQueue) {
    LockDir dir = open_dir();
    Child owner;
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({owner.identity()})));
    auto start = std::chrono::steady_clock::now();
    auto grant = acquire_volume_lock(dir, "uuid-1", request_for({self_identity()}, 300ms));
    auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(grant);
    EXPECT_EQ(grant.problem().code, ExitCode::busy);
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 3s);
    auto record = dir.volume_file("uuid-1")->read();
    EXPECT_TRUE(record->waiters.empty());
    EXPECT_TRUE(record->held());
}

TEST_F(LockDirTest, AnInterruptEndsTheWait) {
    LockDir dir = open_dir();
    Child owner;
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-1", request_for({owner.identity()})));
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    ASSERT_EQ(::write(pipe_fds[1], "x", 1), 1);
    AcquireRequest request = request_for({self_identity()}, Duration::max());
    request.interrupt_fd = pipe_fds[0];
    auto grant = acquire_volume_lock(dir, "uuid-1", request);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    ASSERT_FALSE(grant);
    EXPECT_EQ(grant.problem().message, "interrupted");
    EXPECT_TRUE(dir.volume_file("uuid-1")->read()->waiters.empty());
}

TEST_F(LockDirTest, TheRebootLockRefusesNewVolumeLocks) {
    LockDir dir = open_dir();
    LockRecord reboot;
    reboot.owners = {self_identity()};
    reboot.command = "shutdown";
    auto file = dir.reboot_file().or_throw();
    {
        RecordLock exclusive(file, true);
        ASSERT_TRUE(file.write_held(reboot));
    }
    EXPECT_EQ(reboot_lock_owner(dir).value(), self_identity());
    auto grant = acquire_volume_lock(dir, "uuid-1", request_for({self_identity()}, 1s));
    ASSERT_FALSE(grant);
    EXPECT_EQ(grant.problem().code, ExitCode::reboot_in_progress);
    EXPECT_EQ(grant.problem().message, "reboot in progress");
}

TEST_F(LockDirTest, AttemptsAreCountedUntilTheLimit) {
    LockDir dir = open_dir();
    LockLimits limits{5, 2};
    EXPECT_EQ(record_attempt(dir, "uuid-1", limits)->attempts, 1);
    std::vector<std::string> notes;
    auto record = record_attempt(dir, "uuid-1", limits, [&](const std::string& note) { notes.push_back(note); });
    EXPECT_TRUE(record->gave_up);
    ASSERT_EQ(notes.size(), 1u);
    EXPECT_EQ(notes[0], "gave up on the volume after 2 automatic rebuild attempts");
}

TEST_F(LockDirTest, TidyCountsADeadOwnerOnceAndListShowsEveryVolume) {
    LockDir dir = open_dir();
    {
        Child owner;
        ASSERT_TRUE(acquire_volume_lock(dir, "uuid-b", request_for({owner.identity()})));
    }
    ASSERT_TRUE(acquire_volume_lock(dir, "uuid-a", request_for({self_identity()})));
    EXPECT_EQ(tidy_volume_lock(dir, "uuid-b", LockLimits{})->failures, 1);
    EXPECT_EQ(tidy_volume_lock(dir, "uuid-b", LockLimits{})->failures, 1);
    auto entries = list_volume_locks(dir);
    ASSERT_TRUE(entries);
    ASSERT_EQ(entries->size(), 2u);
    EXPECT_EQ((*entries)[0].volume_id, "uuid-a");
    EXPECT_TRUE((*entries)[0].record.held());
    EXPECT_FALSE((*entries)[1].record.held());
}

}  // namespace
