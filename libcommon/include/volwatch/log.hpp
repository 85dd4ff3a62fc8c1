// Logging for long-running programs (DESIGN §7): one record per message to
// stderr, syslog or the systemd journal, with a threshold, and stable events
// (volwatch/events.hpp) for the facts monitoring looks for (the seed's
// MessageTracer events). Where a record goes is a LogSink, so what reaches
// the journal is tested with a fake sink.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "volwatch/error.hpp"
#include "volwatch/events.hpp"

namespace volwatch {

enum class LogLevel { error, warning, notice, info, debug };
/// automatic: the journal when standard error is the journal's stream (a
/// systemd service), else standard error. journal: the journal natively,
/// or syslog where no journal runs.
enum class LogTarget { automatic, stderr_stream, syslog, journal };

/// The events' old spelling, kept so callers read `log_event::gave_up`.
namespace log_event {
inline constexpr Event cache_updated = Event::cache_updated;
inline constexpr Event update_failed = Event::update_failed;
inline constexpr Event gave_up = Event::gave_up;
inline constexpr Event shutdown_delay_begins = Event::shutdown_delay_begins;
inline constexpr Event shutdown_delay_ends = Event::shutdown_delay_ends;
}  // namespace log_event

/// What an event is about. The journal gets each field that is set as a
/// VOLWATCH_* field (docs/events.md); stderr and syslog get the message only,
/// which says the same in words.
struct EventFields {
    std::vector<std::string> volumes;  // VOLWATCH_VOLUME, once per volume: its root, "/" or "/srv/img"
    std::string volume_id;             // VOLWATCH_VOLUME_ID: the one volume's UUID (or other identity)
    std::string cache;                 // VOLWATCH_CACHE: the cache concerned, when one is
    std::string status;                // VOLWATCH_STATUS: "0", "70", "signal 9", "granted", "timed-out", ...
    std::optional<pid_t> pid;          // VOLWATCH_PID: the vrebuild or lock owner concerned
    std::optional<double> seconds;     // VOLWATCH_SECONDS: how long it took (a rebuild, a shutdown delay)

    /// About one volume, or several.
    [[nodiscard]] static EventFields about(std::string root, std::string id) {
        EventFields fields;
        fields.volumes = {std::move(root)};
        fields.volume_id = std::move(id);
        return fields;
    }
    [[nodiscard]] static EventFields about(std::vector<std::string> roots) {
        EventFields fields;
        fields.volumes = std::move(roots);
        return fields;
    }
    EventFields& with_status(std::string value) { return status = std::move(value), *this; }
    EventFields& with_pid(pid_t value) { return pid = value, *this; }
    EventFields& with_seconds(double value) { return seconds = value, *this; }
};

/// One message as the sinks see it: `message` has no " event=NAME" suffix.
struct LogRecord {
    LogLevel level = LogLevel::info;
    std::string_view message;
    const EventInfo* event = nullptr;    // set for events only
    const EventFields* fields = nullptr;  // set for events only
};

/// Where records go.
class LogSink {
public:
    virtual ~LogSink() = default;
    virtual void write(const LogRecord& record) = 0;
};

/// "error", "warning", "notice", "info" or "debug"; fails with usage otherwise.
[[nodiscard]] Result<LogLevel> parse_log_level(std::string_view text);
[[nodiscard]] std::string_view to_string(LogLevel level);
/// "auto", "stderr", "syslog" or "journal"; fails with usage otherwise.
[[nodiscard]] Result<LogTarget> parse_log_target(std::string_view text);
/// LOG_ERR ... LOG_DEBUG, as syslog(3) and the journal's PRIORITY= use them.
[[nodiscard]] int syslog_priority(LogLevel level);

/// The line a record becomes on stderr and in syslog: "message event=NAME".
[[nodiscard]] std::string log_line(const LogRecord& record);

/// Standard error (or `fd`): "PROGRAM: message", with "warning: ", "error: "
/// or "debug: " after the program name for those levels; one write(2) a line.
[[nodiscard]] std::unique_ptr<LogSink> make_stderr_sink(std::string program, int fd = 2);
/// syslog(3) as facility daemon, identified as `program`.
[[nodiscard]] std::unique_ptr<LogSink> make_syslog_sink(std::string program);
/// The sink for `target` (automatic resolved as LogTarget says).
[[nodiscard]] std::unique_ptr<LogSink> make_log_sink(std::string program, LogTarget target, int fd = 2);

/// Passes records at or above a threshold to its sink.
class Logger {
public:
    Logger(std::string program, LogLevel threshold, LogTarget target, int fd = 2);
    Logger(LogLevel threshold, std::unique_ptr<LogSink> sink);

    [[nodiscard]] bool enabled(LogLevel level) const noexcept { return level <= threshold_; }
    void set_threshold(LogLevel level) noexcept { threshold_ = level; }
    /// Logs `message` at `level` if the threshold lets it through.
    void log(LogLevel level, std::string_view message);
    /// Logs `message` as the stable event `event`, with what it is about.
    void event(LogLevel level, Event event, std::string_view message, const EventFields& fields = {});

private:
    LogLevel threshold_;
    std::unique_ptr<LogSink> sink_;
};

}  // namespace volwatch
