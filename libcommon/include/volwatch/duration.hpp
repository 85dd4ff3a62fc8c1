// Durations as people write them in configs and on command lines: "300ms",
// "5s", "10m", "1h", and compounds such as "1m30s".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "volwatch/error.hpp"

namespace volwatch {

using Duration = std::chrono::milliseconds;

/// Parses `text`; units ms, s, m, h, d; a bare "0" is zero. Fails with a
/// usage Problem whose message explains the accepted forms.
[[nodiscard]] Result<Duration> parse_duration(std::string_view text);

/// Shortest exact spelling of `d` in the same syntax ("1m30s", "300ms", "0s").
[[nodiscard]] std::string format_duration(Duration d);

/// A human span for reports: "3m12s", "2h5m", "41ms", rounding below the
/// two largest units. Works on nanoseconds so file-time gaps print well.
[[nodiscard]] std::string format_span(std::chrono::nanoseconds d);

}  // namespace volwatch
