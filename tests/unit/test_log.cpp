#include "volwatch/log.hpp"

#include <cctype>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/journal.hpp"

namespace volwatch {
namespace {

std::string drain(int fd) {
    char buffer[1024];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
}

TEST(Logger, WritesLinesWithLevelTagsAndEventNames) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    {
        Logger log("vwatch", LogLevel::info, LogTarget::stderr_stream, fds[1]);
        log.log(LogLevel::info, "/: watching");
        log.log(LogLevel::warning, "/: not watching: bad");
        log.log(LogLevel::debug, "not shown at info");
        log.event(LogLevel::info, log_event::cache_updated, "/: cache updated");
    }
    ::close(fds[1]);
    EXPECT_EQ(drain(fds[0]),
              "vwatch: /: watching\nvwatch: warning: /: not watching: bad\nvwatch: /: cache updated event=cache-updated\n");
    ::close(fds[0]);
}

TEST(Logger, ParsesLevels) {
    EXPECT_EQ(*parse_log_level("debug"), LogLevel::debug);
    EXPECT_EQ(*parse_log_level("error"), LogLevel::error);
    auto bad = parse_log_level("loud");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.problem().code, ExitCode::usage);
    EXPECT_EQ(to_string(LogLevel::notice), "notice");
}

TEST(Logger, SendsEventsWithMessageIdAndVolumeFields) {
    std::vector<testing::LoggedRecord> records;
    Logger log(LogLevel::info, std::make_unique<testing::RecordingSink>("vwatch", records));
    log.log(LogLevel::info, "/: watching");
    log.event(LogLevel::warning, log_event::update_failed, "/srv/img: update failed: vrebuild (pid 4250) exited with status 70 after 2.5s",
              EventFields::about("/srv/img", "uuid-b").with_status("70").with_pid(4250).with_seconds(2.5));
    log.event(LogLevel::debug, log_event::cache_updated, "below the threshold");
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].journal, (std::vector<std::string>{"MESSAGE=/: watching", "PRIORITY=6", "SYSLOG_IDENTIFIER=vwatch"}));
    EXPECT_EQ(records[1].journal, (std::vector<std::string>{
                              "MESSAGE=/srv/img: update failed: vrebuild (pid 4250) exited with status 70 after 2.5s event=update-failed",
                              "PRIORITY=4", "SYSLOG_IDENTIFIER=vwatch", "MESSAGE_ID=545fd39ee2c847c8babc80c92cd682f3",
                              "VOLWATCH_EVENT=update-failed", "VOLWATCH_VOLUME=/srv/img", "VOLWATCH_VOLUME_ID=uuid-b",
                              "VOLWATCH_STATUS=70", "VOLWATCH_PID=4250", "VOLWATCH_SECONDS=2.5"}));
}

TEST(Logger, ShutdownDelayNamesEveryBlockingVolume) {
    std::vector<testing::LoggedRecord> records;
    Logger log(LogLevel::info, std::make_unique<testing::RecordingSink>("vwatch", records));
    log.event(LogLevel::notice, log_event::shutdown_delay_begins, "shutdown delay begins: waiting for /, /srv/img (2 volumes)",
              EventFields::about({"/", "/srv/img"}).with_status("waiting").with_pid(1));
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].journal, (std::vector<std::string>{
                              "MESSAGE=shutdown delay begins: waiting for /, /srv/img (2 volumes) event=shutdown-delay-begins",
                              "PRIORITY=5", "SYSLOG_IDENTIFIER=vwatch", "MESSAGE_ID=74c2baeb39414e12850e00f227d04b87",
                              "VOLWATCH_EVENT=shutdown-delay-begins", "VOLWATCH_VOLUME=/", "VOLWATCH_VOLUME=/srv/img",
                              "VOLWATCH_STATUS=waiting", "VOLWATCH_PID=1"}));
}

TEST(Events, EachHasItsOwnNameAndA128BitMessageId) {
    std::set<std::string_view> names, ids;
    for (std::size_t i = 0; i < all_events.size(); ++i) {
        const EventInfo& info = all_events[i];
        EXPECT_EQ(static_cast<std::size_t>(info.event), i) << info.name;
        EXPECT_EQ(&event_info(info.event), &info);
        EXPECT_EQ(info.message_id.size(), 32u) << info.name;
        for (char c : info.message_id) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c))) << info.name;
        names.insert(info.name);
        ids.insert(info.message_id);
    }
    EXPECT_EQ(names.size(), all_events.size());
    EXPECT_EQ(ids.size(), all_events.size());
    EXPECT_EQ(event_info(Event::shutdown_delay_ends).name, "shutdown-delay-ends");
}

TEST(Logger, AutomaticTargetIsStderrUnlessStderrIsTheJournalStream) {
    testing::ScopedEnv unset("JOURNAL_STREAM", nullptr);
    EXPECT_FALSE(stderr_is_journal_stream());
    {
        testing::ScopedEnv other("JOURNAL_STREAM", "0:1");  // no file has inode 1 on device 0
        EXPECT_FALSE(stderr_is_journal_stream());
    }
    struct stat st {};
    ASSERT_EQ(::fstat(2, &st), 0);
    std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    testing::ScopedEnv same("JOURNAL_STREAM", stream.c_str());
    EXPECT_TRUE(stderr_is_journal_stream());
}

TEST(Logger, ParsesTargets) {
    EXPECT_EQ(*parse_log_target("auto"), LogTarget::automatic);
    EXPECT_EQ(*parse_log_target("journal"), LogTarget::journal);
    EXPECT_EQ(*parse_log_target("syslog"), LogTarget::syslog);
    EXPECT_EQ(*parse_log_target("stderr"), LogTarget::stderr_stream);
    auto bad = parse_log_target("kmsg");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.problem().code, ExitCode::usage);
}

}  // namespace
}  // namespace volwatch
