// Logging for long-running programs (DESIGN §7): one line per message to
// stderr or syslog, with a threshold, and stable event names for the facts
// monitoring looks for (the seed's MessageTracer events).
#pragma once

#include <string>
#include <string_view>

#include "volwatch/error.hpp"

namespace volwatch {

enum class LogLevel { error, warning, notice, info, debug };
enum class LogTarget { stderr_stream, syslog };

/// Stable event names, appended to their lines as " event=NAME".
namespace log_event {
inline constexpr std::string_view cache_updated = "cache-updated";
inline constexpr std::string_view update_failed = "update-failed";
inline constexpr std::string_view gave_up = "gave-up";
inline constexpr std::string_view shutdown_delay_begins = "shutdown-delay-begins";
inline constexpr std::string_view shutdown_delay_ends = "shutdown-delay-ends";
}  // namespace log_event

/// "error", "warning", "notice", "info" or "debug"; fails with usage otherwise.
[[nodiscard]] Result<LogLevel> parse_log_level(std::string_view text);
[[nodiscard]] std::string_view to_string(LogLevel level);

/// Writes whole lines, each with one write(2) (stderr) or syslog(3) call.
/// On stderr: "PROGRAM: message", with "warning: ", "error: " or "debug: "
/// after the program name for those levels.
class Logger {
public:
    Logger(std::string program, LogLevel threshold, LogTarget target, int fd = 2);
    ~Logger();
    Logger(const Logger&) = delete;
    Logger& operator=(const Logger&) = delete;

    [[nodiscard]] bool enabled(LogLevel level) const noexcept { return level <= threshold_; }
    void set_threshold(LogLevel level) noexcept { threshold_ = level; }
    /// Logs `message` at `level` if the threshold lets it through.
    void log(LogLevel level, std::string_view message);
    /// Logs `message` tagged with a stable event name.
    void event(LogLevel level, std::string_view name, std::string_view message);

private:
    std::string program_;
    LogLevel threshold_;
    LogTarget target_;
    int fd_;
};

}  // namespace volwatch
