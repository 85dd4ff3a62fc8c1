#include "volwatch/duration.hpp"

#include <array>
#include <cctype>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

namespace volwatch {
namespace {

struct DurationUnit {
    std::string_view suffix;
    std::int64_t ms;
};
// Longest suffixes first so "ms" is not read as "m" followed by junk.
constexpr std::array<DurationUnit, 5> units{{{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};

Problem bad_duration(std::string_view text, std::string_view why) {
    return {ExitCode::usage,
            fmt::format("invalid duration \"{}\": {} (use forms like 300ms, 5s, 10m, 1h, 1m30s)", text, why)};
}

}  // namespace

Result<Duration> parse_duration(std::string_view text) {
    if (text.empty()) return bad_duration(text, "empty");
    if (text == "0") return Duration{0};
    std::int64_t total = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) return bad_duration(text, "expected a number");
        std::int64_t number = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            if (number > (std::numeric_limits<std::int64_t>::max() - 9) / 10) return bad_duration(text, "too large");
            number = number * 10 + (text[i] - '0');
            ++i;
        }
        const DurationUnit* unit = nullptr;
        for (const auto& candidate : units) {
            if (text.substr(i, candidate.suffix.size()) == candidate.suffix) {
                unit = &candidate;
                break;
            }
        }
        if (unit == nullptr) return bad_duration(text, i == text.size() ? "missing unit" : "unknown unit");
        i += unit->suffix.size();
        if (number > std::numeric_limits<std::int64_t>::max() / unit->ms - total / unit->ms - 1)
            return bad_duration(text, "too large");
        total += number * unit->ms;
    }
    return Duration{total};
}

std::string format_duration(Duration d) {
    std::int64_t ms = d.count();
    if (ms == 0) return "0s";
    std::string out;
    if (ms < 0) {
        out = "-";
        ms = -ms;
    }
    for (auto it = units.rbegin(); it != units.rend(); ++it) {
        if (ms >= it->ms) {
            out += fmt::format("{}{}", ms / it->ms, it->suffix);
            ms %= it->ms;
        }
    }
    return out;
}

std::string format_span(std::chrono::nanoseconds d) {
    std::int64_t ns = d.count();
    std::string sign;
    if (ns < 0) {
        sign = "-";
        ns = -ns;
    }
    if (ns < 1'000) return fmt::format("{}{}ns", sign, ns);
    if (ns < 1'000'000) return fmt::format("{}{}us", sign, ns / 1'000);
    if (ns < 1'000'000'000) return fmt::format("{}{}ms", sign, ns / 1'000'000);
    std::int64_t s = ns / 1'000'000'000;
    if (s < 60) {
        std::int64_t tenths = (ns / 100'000'000) % 10;
        return tenths ? fmt::format("{}{}.{}s", sign, s, tenths) : fmt::format("{}{}s", sign, s);
    }
    if (s < 3600) return fmt::format("{}{}m{}s", sign, s / 60, s % 60);
    if (s < 86400) return fmt::format("{}{}h{}m", sign, s / 3600, (s % 3600) / 60);
    return fmt::format("{}{}d{}h", sign, s / 86400, (s % 86400) / 3600);
}

}  // namespace volwatch
