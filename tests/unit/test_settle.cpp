#include "volwatch/settle.hpp"

#include <gtest/gtest.h>

namespace volwatch {
namespace {

using namespace std::chrono_literals;
using TimePoint = SettleTimer::TimePoint;

TEST(SettleTimer, EachChangeRestartsTheQuietPeriod) {
    SettleTimer timer(5s, 60s);
    TimePoint t0{};
    EXPECT_FALSE(timer.pending());
    EXPECT_EQ(timer.note_change(t0), t0 + 5s);
    EXPECT_EQ(timer.note_change(t0 + 3s), t0 + 8s);
    EXPECT_EQ(timer.deadline(), t0 + 8s);
    EXPECT_TRUE(timer.pending());
}

TEST(SettleTimer, ConstantChurnIsCappedBySettleMax) {
    SettleTimer timer(5s, 60s);
    TimePoint t0{};
    TimePoint due{};
    for (auto t = 0s; t < 120s; t += 1s) due = timer.note_change(t0 + t);
    EXPECT_EQ(due, t0 + 60s);
}

TEST(SettleTimer, ClearStartsAFreshPeriod) {
    SettleTimer timer(5s, 10s);
    TimePoint t0{};
    timer.note_change(t0);
    timer.clear();
    EXPECT_FALSE(timer.deadline().has_value());
    EXPECT_EQ(timer.note_change(t0 + 20s), t0 + 25s);
    EXPECT_EQ(timer.note_change(t0 + 28s), t0 + 30s);  // capped: first change + 10s
}

TEST(SettleTimer, SettleMaxShorterThanSettleMeansSettle) {
    SettleTimer timer(5s, 1s);
    TimePoint t0{};
    EXPECT_EQ(timer.note_change(t0), t0 + 5s);
}

}  // namespace
}  // namespace volwatch
