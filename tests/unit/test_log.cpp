#include "volwatch/log.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace volwatch
