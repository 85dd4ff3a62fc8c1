// One epoll loop for a daemon: file descriptors with callbacks and one-shot
// timers kept in a single timerfd armed to the earliest deadline, so an idle
// loop with no timers sleeps without any periodic wake-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>

#include "volwatch/fd.hpp"

namespace volwatch {

class EventLoop {
public:
    using Clock = std::chrono::steady_clock;
    using FdCallback = std::function<void(std::uint32_t events)>;
    using TimerCallback = std::function<void()>;
    using TimerId = std::uint64_t;  // 0 is never a timer

    /// Creates the epoll instance and the timerfd; throws Failure if it cannot.
    EventLoop();

    /// Calls `callback` with the ready epoll events whenever `fd` is ready for
    /// `events` (level-triggered). Replaces an earlier registration of `fd`.
    void watch(int fd, std::uint32_t events, FdCallback callback);
    /// Stops watching `fd`; events already collected for it are not delivered.
    /// Call before closing `fd`.
    void unwatch(int fd);

    /// Calls `callback` once at `when` (or as soon as possible if past).
    TimerId add_timer(Clock::time_point when, TimerCallback callback);
    TimerId add_timer(std::chrono::milliseconds delay, TimerCallback callback) {
        return add_timer(Clock::now() + delay, std::move(callback));
    }
    /// Cancels a pending timer; a no-op for 0, fired or cancelled timers.
    void cancel_timer(TimerId id);
    [[nodiscard]] bool timer_pending(TimerId id) const { return timers_by_id_.count(id) != 0; }
    [[nodiscard]] std::size_t pending_timers() const { return timers_by_id_.size(); }

    /// Runs until stop() is called.
    void run();
    /// Waits for events at most `max_wait` (forever if nullopt), dispatches
    /// them, and returns how many callbacks ran.
    std::size_t run_once(std::optional<std::chrono::milliseconds> max_wait);
    void stop() noexcept { stopping_ = true; }
    [[nodiscard]] bool stopping() const noexcept { return stopping_; }

private:
    struct Registration {
        int fd;
        FdCallback callback;
    };
    using TimerKey = std::pair<Clock::time_point, TimerId>;

    void rearm_timerfd();
    std::size_t fire_due_timers();

    UniqueFd epoll_;
    UniqueFd timerfd_;
    std::unordered_map<std::uint64_t, Registration> registrations_;  // by token
    std::unordered_map<int, std::uint64_t> token_by_fd_;
    std::uint64_t next_token_ = 1;
    std::map<TimerKey, TimerCallback> timers_;
    std::unordered_map<TimerId, Clock::time_point> timers_by_id_;
    TimerId next_timer_ = 1;
    std::optional<Clock::time_point> armed_;
    bool stopping_ = false;
};

}  // namespace volwatch
