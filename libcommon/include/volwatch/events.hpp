// The stable events (DESIGN §7, the seed's MessageTracer events): the facts
// monitoring looks for, each with a name appended to its line as
// " event=NAME" and a journal MESSAGE_ID that never changes. Their catalog
// entries are in contrib/systemd/volwatch.catalog; docs/events.md lists them
// with example journalctl queries.
#pragma once

#include <array>
#include <string_view>

namespace volwatch {

enum class Event { cache_updated, update_failed, gave_up, shutdown_delay_begins, shutdown_delay_ends };

struct EventInfo {
    Event event;
    std::string_view name;        // "cache-updated"
    std::string_view message_id;  // 32 lowercase hex digits, generated once with systemd-id128 new
};

/// Every event; its MESSAGE_ID is part of the interface (journalctl MESSAGE_ID=..., the catalog).
inline constexpr std::array<EventInfo, 5> all_events{{
    {Event::cache_updated, "cache-updated", "88b2ffb62dc04b7d83080acb507f96bb"},
    {Event::update_failed, "update-failed", "545fd39ee2c847c8babc80c92cd682f3"},
    {Event::gave_up, "gave-up", "e8014c0ca1cc4bc2a769db39403c3aee"},
    {Event::shutdown_delay_begins, "shutdown-delay-begins", "74c2baeb39414e12850e00f227d04b87"},
    {Event::shutdown_delay_ends, "shutdown-delay-ends", "fde649112579449fb825c6909030d5fe"},
}};

/// The name and MESSAGE_ID of `event`.
[[nodiscard]] constexpr const EventInfo& event_info(Event event) {
    for (const EventInfo& info : all_events)
        if (info.event == event) return info;
    return all_events[0];  // unreachable: every enumerator is in the table (test_log checks)
}

}  // namespace volwatch
