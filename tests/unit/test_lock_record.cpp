#include <gtest/gtest.h>

#include <atomic>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

#include "test_support.hpp"
#include "volwatch/lock_record.hpp"
#include "volwatch/lockdir.hpp"

using namespace volwatch;

namespace {

LockRecord sample() {
    LockRecord record;
    record.volume = "/srv/img";
    record.owners = {{4242, 1000, "boot-a"}, {4240, 990, "boot-a"}};
    record.command = "update-initramfs -u";
    record.purpose = "vrebuild";
    record.since = 1764042184.25;
    record.waiters = {{7, {4250, 1100, "boot-a"}}, {8, {4251, 1101, "boot-a"}}};
    record.next_ticket = 9;
    record.failures = 2;
    record.attempts = 3;
    record.last_status = 1;
    record.last_success = 1764040000;
    return record;
}

}  // namespace

TEST(LockRecord, RoundTrips) {
    LockRecord back = parse_lock_record(format_lock_record(sample()));
    LockRecord want = sample();
    EXPECT_FALSE(back.damaged);
    EXPECT_EQ(back.volume, want.volume);
    EXPECT_EQ(back.owners, want.owners);
    EXPECT_EQ(back.command, want.command);
    EXPECT_EQ(back.purpose, want.purpose);
    EXPECT_DOUBLE_EQ(back.since, want.since);
    ASSERT_EQ(back.waiters.size(), 2u);
    EXPECT_EQ(back.waiters[1].ticket, 8u);
    EXPECT_EQ(back.waiters[1].who, want.waiters[1].who);
    EXPECT_EQ(back.next_ticket, 9u);
    EXPECT_EQ(back.failures, 2);
    EXPECT_EQ(back.attempts, 3);
    EXPECT_EQ(back.last_status, 1);
}

TEST(LockRecord, IgnoresTheOldTailOfARewriteCutShort) {
    // A writer killed between pwrite and ftruncate leaves the old, longer
    // text's tail behind the new end line.
    LockRecord shorter;
    shorter.volume = "/srv/img";
    std::string text = format_lock_record(shorter) + format_lock_record(sample()).substr(40);
    LockRecord back = parse_lock_record(text);
    EXPECT_FALSE(back.damaged);
    EXPECT_TRUE(back.owners.empty());
    EXPECT_TRUE(back.waiters.empty());
}

TEST(LockRecord, DetectsAChangedBody) {
    std::string text = format_lock_record(sample());
    text.replace(text.find("failures=2"), 10, "failures=3");
    EXPECT_TRUE(parse_lock_record(text).damaged);
}

TEST(LockRecord, AcceptsHandWrittenRecordsWithoutEndLine) {
    LockRecord back = parse_lock_record("owner=12:34:boot\nwaiter=5:13:35:boot\nwaiter=2:14:36:boot\ngarbage\nfailures=x\n");
    EXPECT_FALSE(back.damaged);
    ASSERT_EQ(back.owners.size(), 1u);
    EXPECT_EQ(back.owners[0].pid, 12);
    ASSERT_EQ(back.waiters.size(), 2u);
    EXPECT_EQ(back.waiters[0].ticket, 2u);  // FIFO order is by ticket
    EXPECT_EQ(back.failures, 0);
}

TEST(LockRecord, CommandsStayOnOneLine) {
    LockRecord record = sample();
    record.command = "evil\nowner=1:1:boot-a";
    LockRecord back = parse_lock_record(format_lock_record(record));
    EXPECT_EQ(back.owners.size(), 2u);
    EXPECT_EQ(back.command, "evil owner=1:1:boot-a");
}

TEST(LockRecord, OverLimits) {
    LockRecord record;
    EXPECT_FALSE(over_limits(record, 5, 25));
    record.failures = 5;
    EXPECT_TRUE(over_limits(record, 5, 25));
    record.failures = 0;
    record.attempts = 25;
    EXPECT_TRUE(over_limits(record, 5, 25));
}

TEST(LockRecord, ALockFreeReadNeverTakesARewriteInProgressForTheRecord) {
    volwatch::testing::TempDir temp;
    auto dir = LockDir::open(temp.path() / "locks", LockDirAccess::write).or_throw();
    auto file = dir.volume_file("uuid-1").or_throw();
    LockRecord shorter;
    shorter.failures = 1;
    LockRecord longer = sample();
    for (int i = 0; i < 40; ++i) longer.waiters.push_back({static_cast<std::uint64_t>(10 + i), {5000 + i, 1, "boot-a"}});
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        for (int i = 0; !stop; ++i) {
            (void)file.update([&](LockRecord& record) {
                record = i % 2 == 0 ? longer : shorter;
                return true;
            });
        }
    });
    UniqueFd reader(::open((temp.path() / "locks/volumes/uuid-1.lock").c_str(), O_RDONLY | O_CLOEXEC));
    int torn = 0;
    for (int i = 0; i < 20000; ++i) {
        auto record = read_lock_record(reader.get(), "uuid-1.lock").or_throw();
        bool whole = !record.damaged && ((record.waiters.size() == 42 && record.failures == 2) ||
                                         (record.waiters.empty() && record.failures == 1) ||
                                         (record.waiters.empty() && record.failures == 0));
        if (!whole) ++torn;
    }
    stop = true;
    writer.join();
    EXPECT_EQ(torn, 0);
}

TEST(LockRecord, ALockFreeReadTakesAStableHandWrittenRecordAsItIs) {
    volwatch::testing::TempDir temp;
    volwatch::testing::write_file(temp.path() / "r", "volwatch-lock=1\nfailures=4\n");
    UniqueFd fd(::open((temp.path() / "r").c_str(), O_RDONLY | O_CLOEXEC));
    auto record = read_lock_record(fd.get(), "r").or_throw();
    EXPECT_FALSE(record.damaged);
    EXPECT_EQ(record.failures, 4);
    volwatch::testing::write_file(temp.path() / "d", "volwatch-lock=1\nfailures=4\nend=0000000000000001\n");
    UniqueFd damaged(::open((temp.path() / "d").c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(read_lock_record(damaged.get(), "d").or_throw().damaged);
}
