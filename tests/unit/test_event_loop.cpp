#include "volwatch/event_loop.hpp"

#include <sys/epoll.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

namespace volwatch {
namespace {

using namespace std::chrono_literals;

// Runs the loop until `done` or 5 s pass.
template <class Pred>
void run_until(EventLoop& loop, Pred done) {
    auto deadline = EventLoop::Clock::now() + 5s;
    while (!done() && EventLoop::Clock::now() < deadline) loop.run_once(100ms);
}

TEST(EventLoop, TimersFireInDeadlineOrder) {
    EventLoop loop;
    std::vector<int> order;
    auto now = EventLoop::Clock::now();
    loop.add_timer(now + 30ms, [&] { order.push_back(3); });
    loop.add_timer(now + 10ms, [&] { order.push_back(1); });
    loop.add_timer(now + 20ms, [&] { order.push_back(2); });
    run_until(loop, [&] { return order.size() == 3; });
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(loop.pending_timers(), 0U);
}

TEST(EventLoop, ACancelledTimerNeverFiresEvenWhenDueInTheSameBatch) {
    EventLoop loop;
    bool second_fired = false;
    EventLoop::TimerId second = 0;
    auto at = EventLoop::Clock::now() + 5ms;
    loop.add_timer(at, [&] { loop.cancel_timer(second); });
    second = loop.add_timer(at, [&] { second_fired = true; });
    bool sentinel = false;
    loop.add_timer(at + 20ms, [&] { sentinel = true; });
    run_until(loop, [&] { return sentinel; });
    EXPECT_FALSE(second_fired);
    loop.cancel_timer(second);  // cancelling twice is harmless
    loop.cancel_timer(0);
}

TEST(EventLoop, AnIdleLoopDoesNotWakeUp) {
    EventLoop loop;
    EventLoop::TimerId id = loop.add_timer(10s, [] {});
    loop.cancel_timer(id);
    // No timers and no fds: the wait times out with nothing dispatched.
    EXPECT_EQ(loop.run_once(200ms), 0U);
}

TEST(EventLoop, FdCallbacksSeeReadinessAndMayUnwatchThemselves) {
    EventLoop loop;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    int calls = 0;
    loop.watch(fds[0], EPOLLIN, [&](std::uint32_t events) {
        EXPECT_TRUE(events & EPOLLIN);
        ++calls;
        loop.unwatch(fds[0]);
    });
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    run_until(loop, [&] { return calls > 0; });
    // Still readable, but no longer watched.
    loop.run_once(50ms);
    EXPECT_EQ(calls, 1);
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST(EventLoop, StopEndsRun) {
    EventLoop loop;
    loop.add_timer(5ms, [&] { loop.stop(); });
    loop.run();
    EXPECT_TRUE(loop.stopping());
}

}  // namespace
}  // namespace volwatch
