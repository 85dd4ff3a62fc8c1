// Monotonic time behind an interface (STYLE habit 7), so logic that waits,
// backs off and bounds (the reboot gate) is tested with a fake clock that
// moves only when the test says.
#pragma once

#include <chrono>

namespace volwatch {

class Clock {
public:
    using Duration = std::chrono::steady_clock::duration;
    using TimePoint = std::chrono::steady_clock::time_point;

    virtual ~Clock() = default;
    /// The current time; never goes backwards.
    [[nodiscard]] virtual TimePoint now() const = 0;
};

/// std::chrono::steady_clock (CLOCK_MONOTONIC).
class SteadyClock final : public Clock {
public:
    [[nodiscard]] TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace volwatch
