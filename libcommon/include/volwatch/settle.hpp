// The settle rule (DESIGN §6): each change restarts a volume's quiet period,
// but never beyond settle_max after the first change not yet checked, so
// constant churn still leads to a check. Pure logic; time is passed in.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>

#include "volwatch/duration.hpp"

namespace volwatch {

class SettleTimer {
public:
    using TimePoint = std::chrono::steady_clock::time_point;

    SettleTimer(Duration settle, Duration settle_max) : settle_(settle), settle_max_(std::max(settle, settle_max)) {}

    /// Records a change at `now` and returns when the check is due:
    /// min(now + settle, first unchecked change + settle_max).
    TimePoint note_change(TimePoint now);
    /// When the check is due, or nullopt when no change is pending.
    [[nodiscard]] std::optional<TimePoint> deadline() const;
    [[nodiscard]] bool pending() const noexcept { return first_.has_value(); }
    /// Forgets pending changes (the check ran, or the volume went away).
    void clear() noexcept {
        first_.reset();
        last_.reset();
    }

private:
    Duration settle_;
    Duration settle_max_;
    std::optional<TimePoint> first_;
    std::optional<TimePoint> last_;
};

}  // namespace volwatch
