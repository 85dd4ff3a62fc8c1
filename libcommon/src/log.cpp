#include "volwatch/log.hpp"

#include <cerrno>
#include <syslog.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/output.hpp"

namespace volwatch {
namespace {

int syslog_priority(LogLevel level) {
    switch (level) {
    case LogLevel::error: return LOG_ERR;
    case LogLevel::warning: return LOG_WARNING;
    case LogLevel::notice: return LOG_NOTICE;
    case LogLevel::info: return LOG_INFO;
    case LogLevel::debug: return LOG_DEBUG;
    }
    return LOG_INFO;
}

std::string_view stderr_tag(LogLevel level) {
    switch (level) {
    case LogLevel::error: return "error: ";
    case LogLevel::warning: return "warning: ";
    case LogLevel::debug: return "debug: ";
    default: return "";
    }
}

}  // namespace

Result<LogLevel> parse_log_level(std::string_view text) {
    for (LogLevel level : {LogLevel::error, LogLevel::warning, LogLevel::notice, LogLevel::info, LogLevel::debug})
        if (text == to_string(level)) return level;
    return Problem{ExitCode::usage,
                   fmt::format("\"{}\" is not a log level (error, warning, notice, info, debug)", text)};
}

std::string_view to_string(LogLevel level) {
    switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::notice: return "notice";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
    }
    return "info";
}

Logger::Logger(std::string program, LogLevel threshold, LogTarget target, int fd)
    : program_(std::move(program)), threshold_(threshold), target_(target), fd_(fd) {
    // openlog keeps the ident pointer: program_ lives as long as the logger.
    if (target_ == LogTarget::syslog) ::openlog(program_.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

Logger::~Logger() {
    if (target_ == LogTarget::syslog) ::closelog();
}

void Logger::log(LogLevel level, std::string_view message) {
    if (!enabled(level)) return;
    std::string shown = escape_for_terminal(message);  // names from a volume may hold escape sequences
    if (target_ == LogTarget::syslog) {
        ::syslog(syslog_priority(level), "%.*s", static_cast<int>(shown.size()), shown.data());
        return;
    }
    std::string line = fmt::format("{}: {}{}\n", program_, stderr_tag(level), shown);
    std::string_view rest(line);
    while (!rest.empty()) {
        ssize_t n = ::write(fd_, rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // nowhere left to complain to
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
}

void Logger::event(LogLevel level, std::string_view name, std::string_view message) {
    if (!enabled(level)) return;
    log(level, fmt::format("{} event={}", message, name));
}

}  // namespace volwatch
