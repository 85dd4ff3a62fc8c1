#include "volwatch/event_loop.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "volwatch/error.hpp"

namespace volwatch {
namespace {

// The timerfd's epoll token; registrations count up from 1.
constexpr std::uint64_t timer_token = 0;

[[noreturn]] void fail(const char* what) {
    throw Failure(ExitCode::internal, fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), timerfd_(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) {
    if (!epoll_) fail("epoll_create1");
    if (!timerfd_) fail("timerfd_create");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = timer_token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, timerfd_.get(), &ev) != 0) fail("epoll_ctl");
}

void EventLoop::watch(int fd, std::uint32_t events, FdCallback callback) {
    unwatch(fd);
    std::uint64_t token = next_token_++;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl");
    registrations_.emplace(token, Registration{fd, std::move(callback)});
    token_by_fd_[fd] = token;
}

void EventLoop::unwatch(int fd) {
    auto it = token_by_fd_.find(fd);
    if (it == token_by_fd_.end()) return;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    registrations_.erase(it->second);
    token_by_fd_.erase(it);
}

EventLoop::TimerId EventLoop::add_timer(Clock::time_point when, TimerCallback callback) {
    TimerId id = next_timer_++;
    timers_.emplace(TimerKey{when, id}, std::move(callback));
    timers_by_id_.emplace(id, when);
    rearm_timerfd();
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    auto it = timers_by_id_.find(id);
    if (it == timers_by_id_.end()) return;
    timers_.erase(TimerKey{it->second, id});
    timers_by_id_.erase(it);
    rearm_timerfd();
}

void EventLoop::rearm_timerfd() {
    std::optional<Clock::time_point> want;
    if (!timers_.empty()) want = timers_.begin()->first.first;
    if (want == armed_) return;
    itimerspec spec{};
    if (want) {
        auto since_epoch = want->time_since_epoch();
        auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
        spec.it_value.tv_sec = seconds.count();
        spec.it_value.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count();
        // An all-zero it_value disarms; a deadline at the epoch means "now".
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    // steady_clock is CLOCK_MONOTONIC on Linux, so absolute times carry over.
    if (::timerfd_settime(timerfd_.get(), want ? TFD_TIMER_ABSTIME : 0, &spec, nullptr) != 0) fail("timerfd_settime");
    armed_ = want;
}

std::size_t EventLoop::fire_due_timers() {
    std::uint64_t expirations = 0;
    while (::read(timerfd_.get(), &expirations, sizeof expirations) < 0 && errno == EINTR) {
    }
    armed_.reset();  // the timerfd is one-shot: it is disarmed once it expired
    std::size_t fired = 0;
    Clock::time_point now = Clock::now();
    // One at a time: a callback may cancel or add timers.
    while (!timers_.empty() && timers_.begin()->first.first <= now && !stopping_) {
        auto node = timers_.extract(timers_.begin());
        timers_by_id_.erase(node.key().second);
        node.mapped()();
        ++fired;
    }
    rearm_timerfd();
    return fired;
}

std::size_t EventLoop::run_once(std::optional<std::chrono::milliseconds> max_wait) {
    std::array<epoll_event, 64> events{};
    int timeout = max_wait ? static_cast<int>(max_wait->count()) : -1;
    int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
        if (errno == EINTR) return 0;
        fail("epoll_wait");
    }
    std::size_t ran = 0;
    for (int i = 0; i < n && !stopping_; ++i) {
        std::uint64_t token = events[static_cast<std::size_t>(i)].data.u64;
        if (token == timer_token) {
            ran += fire_due_timers();
            continue;
        }
        auto it = registrations_.find(token);
        if (it == registrations_.end()) continue;  // unwatched by an earlier callback of this batch
        FdCallback callback = it->second.callback;  // a copy: the callback may unwatch itself
        callback(events[static_cast<std::size_t>(i)].events);
        ++ran;
    }
    return ran;
}

void EventLoop::run() {
    while (!stopping_) run_once(std::nullopt);
}

}  // namespace volwatch
