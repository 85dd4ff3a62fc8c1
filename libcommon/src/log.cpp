#include "volwatch/log.hpp"

#include <cerrno>
#include <syslog.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/journal.hpp"
#include "volwatch/output.hpp"

namespace volwatch {
namespace {

std::string_view stderr_tag(LogLevel level) {
    switch (level) {
    case LogLevel::error: return "error: ";
    case LogLevel::warning: return "warning: ";
    case LogLevel::debug: return "debug: ";
    default: return "";
    }
}

class StderrSink final : public LogSink {
public:
    StderrSink(std::string program, int fd) : program_(std::move(program)), fd_(fd) {}

    void write(const LogRecord& record) override {
        // Names from a volume may hold escape sequences.
        std::string line = fmt::format("{}: {}{}\n", program_, stderr_tag(record.level), escape_for_terminal(log_line(record)));
        std::string_view rest(line);
        while (!rest.empty()) {
            ssize_t n = ::write(fd_, rest.data(), rest.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;  // nowhere left to complain to
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
    }

private:
    std::string program_;
    int fd_;
};

class SyslogSink final : public LogSink {
public:
    // openlog keeps the ident pointer: program_ lives as long as the sink.
    explicit SyslogSink(std::string program) : program_(std::move(program)) {
        ::openlog(program_.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
    ~SyslogSink() override { ::closelog(); }
    SyslogSink(const SyslogSink&) = delete;
    SyslogSink& operator=(const SyslogSink&) = delete;

    void write(const LogRecord& record) override {
        std::string shown = escape_for_terminal(log_line(record));
        ::syslog(syslog_priority(record.level), "%.*s", static_cast<int>(shown.size()), shown.data());
    }

private:
    std::string program_;
};

}  // namespace

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

Result<LogTarget> parse_log_target(std::string_view text) {
    if (text == "auto") return LogTarget::automatic;
    if (text == "stderr") return LogTarget::stderr_stream;
    if (text == "syslog") return LogTarget::syslog;
    if (text == "journal") return LogTarget::journal;
    return Problem{ExitCode::usage, fmt::format("\"{}\" is not a log target (auto, stderr, syslog, journal)", text)};
}

std::string log_line(const LogRecord& record) {
    if (record.event == nullptr) return std::string(record.message);
    return fmt::format("{} event={}", record.message, record.event->name);
}

std::unique_ptr<LogSink> make_stderr_sink(std::string program, int fd) {
    return std::make_unique<StderrSink>(std::move(program), fd);
}

std::unique_ptr<LogSink> make_syslog_sink(std::string program) { return std::make_unique<SyslogSink>(std::move(program)); }

std::unique_ptr<LogSink> make_log_sink(std::string program, LogTarget target, int fd) {
    switch (target) {
    case LogTarget::automatic:
        // A service's output already goes to the journal, as lines without
        // fields: send natively instead. Interactive runs keep stderr.
        if (fd == 2 && stderr_is_journal_stream() && journal_present()) return make_journal_sink(std::move(program));
        return make_stderr_sink(std::move(program), fd);
    case LogTarget::stderr_stream: return make_stderr_sink(std::move(program), fd);
    case LogTarget::syslog: return make_syslog_sink(std::move(program));
    case LogTarget::journal: return make_journal_sink(std::move(program));
    }
    return make_stderr_sink(std::move(program), fd);
}

Logger::Logger(std::string program, LogLevel threshold, LogTarget target, int fd)
    : Logger(threshold, make_log_sink(std::move(program), target, fd)) {}

Logger::Logger(LogLevel threshold, std::unique_ptr<LogSink> sink) : threshold_(threshold), sink_(std::move(sink)) {}

void Logger::log(LogLevel level, std::string_view message) {
    if (!enabled(level)) return;
    sink_->write(LogRecord{level, message, nullptr, nullptr});
}

void Logger::event(LogLevel level, Event event, std::string_view message, const EventFields& fields) {
    if (!enabled(level)) return;
    sink_->write(LogRecord{level, message, &event_info(event), &fields});
}

}  // namespace volwatch
