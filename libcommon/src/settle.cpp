#include "volwatch/settle.hpp"

namespace volwatch {

SettleTimer::TimePoint SettleTimer::note_change(TimePoint now) {
    if (!first_) first_ = now;
    last_ = now;
    return *deadline();
}

std::optional<SettleTimer::TimePoint> SettleTimer::deadline() const {
    if (!first_) return std::nullopt;
    return std::min(*last_ + settle_, *first_ + settle_max_);
}

}  // namespace volwatch
