#include "volwatch/lock_record.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/fd.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {
namespace {

constexpr std::size_t max_record_bytes = 256 * 1024;

std::string one_line(std::string_view text) {
    std::string out(text.substr(0, 1024));
    std::replace(out.begin(), out.end(), '\n', ' ');
    std::replace(out.begin(), out.end(), '\r', ' ');
    return out;
}

template <class T>
bool number(std::string_view text, T& out) {
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && ptr == text.data() + text.size();
}

bool real_number(std::string_view text, double& out) {
    std::string copy(text);
    char* end = nullptr;
    errno = 0;
    double value = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size() || errno != 0 || copy.empty()) return false;
    out = value;
    return true;
}

std::optional<ProcessIdentity> parse_identity(std::string_view text) {
    std::size_t first = text.find(':');
    if (first == std::string_view::npos) return std::nullopt;
    std::size_t second = text.find(':', first + 1);
    if (second == std::string_view::npos) return std::nullopt;
    ProcessIdentity who;
    if (!number(text.substr(0, first), who.pid) || who.pid <= 0) return std::nullopt;
    if (!number(text.substr(first + 1, second - first - 1), who.start_time)) return std::nullopt;
    who.boot_id = std::string(text.substr(second + 1));
    return who;
}

std::string format_identity(const ProcessIdentity& who) {
    return fmt::format("{}:{}:{}", who.pid, who.start_time, who.boot_id);
}

}  // namespace

bool LockRecord::held() const { return live_owner().has_value(); }

std::optional<ProcessIdentity> LockRecord::live_owner() const {
    for (const auto& owner : owners)
        if (is_alive(owner)) return owner;
    return std::nullopt;
}

std::vector<LockWaiter> LockRecord::live_waiters() const {
    std::vector<LockWaiter> live;
    for (const auto& waiter : waiters)
        if (is_alive(waiter.who)) live.push_back(waiter);
    return live;
}

std::string format_lock_record(const LockRecord& record) {
    std::string out = "volwatch-lock=1\n";
    out += fmt::format("volume={}\n", one_line(record.volume));
    for (const auto& owner : record.owners) out += fmt::format("owner={}\n", format_identity(owner));
    if (!record.owners.empty()) {
        out += fmt::format("command={}\n", one_line(record.command));
        out += fmt::format("purpose={}\n", one_line(record.purpose));
        out += fmt::format("since={:.3f}\n", record.since);
    }
    for (const auto& waiter : record.waiters)
        out += fmt::format("waiter={}:{}\n", waiter.ticket, format_identity(waiter.who));
    out += fmt::format("next_ticket={}\n", record.next_ticket);
    out += fmt::format("failures={}\nattempts={}\nlast_status={}\n", record.failures, record.attempts, record.last_status);
    out += fmt::format("last_success={:.3f}\ngave_up={}\n", record.last_success, record.gave_up ? 1 : 0);
    out += fmt::format("end={:016x}\n", stable_hash(out));
    return out;
}

LockRecord parse_lock_record(std::string_view text) {
    LockRecord record;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        std::size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        if (key == "end") {
            std::uint64_t expected = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), expected, 16);
            bool valid = ec == std::errc() && ptr == value.data() + value.size();
            if (!valid || expected != stable_hash(text.substr(0, start - line.size() - 1))) {
                record = LockRecord{};
                record.damaged = true;
                return record;
            }
            break;
        }
        if (key == "volume") record.volume = std::string(value);
        else if (key == "owner") {
            if (auto who = parse_identity(value)) record.owners.push_back(*who);
        } else if (key == "command") record.command = std::string(value);
        else if (key == "purpose") record.purpose = std::string(value);
        else if (key == "since") (void)real_number(value, record.since);
        else if (key == "waiter") {
            std::size_t colon = value.find(':');
            LockWaiter waiter;
            if (colon == std::string_view::npos || !number(value.substr(0, colon), waiter.ticket)) continue;
            if (auto who = parse_identity(value.substr(colon + 1))) {
                waiter.who = *who;
                record.waiters.push_back(waiter);
            }
        } else if (key == "next_ticket") (void)number(value, record.next_ticket);
        else if (key == "failures") (void)number(value, record.failures);
        else if (key == "attempts") (void)number(value, record.attempts);
        else if (key == "last_status") (void)number(value, record.last_status);
        else if (key == "last_success") (void)real_number(value, record.last_success);
        else if (key == "gave_up") record.gave_up = value == "1";
    }
    std::stable_sort(record.waiters.begin(), record.waiters.end(),
                     [](const LockWaiter& a, const LockWaiter& b) { return a.ticket < b.ticket; });
    return record;
}

Result<LockRecord> read_lock_record(int fd, const std::filesystem::path& shown) {
    // No lock is taken: writers hold a guard file only root (or the owner of
    // a sandbox lock directory) can open, so no reader can ever make a
    // writer wait. A read that overlaps a rewrite can see a mix of old and
    // new text, or new text cut at the old length; it fails the end line's
    // check or lacks one, and is read again. Text that reads the same twice
    // is what the file holds (a hand-written record, or a damaged one).
    constexpr int max_reads = 200;
    std::string previous;
    LockRecord record;
    for (int reads = 0; reads < max_reads; ++reads) {
        std::string text;
        char buffer[8192];
        for (;;) {
            ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(text.size()));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return Problem{errno == EACCES ? ExitCode::permission : ExitCode::internal,
                               fmt::format("{}: cannot read the lock record: {}", shown.string(), std::strerror(errno))};
            if (n == 0) break;
            text.append(buffer, static_cast<std::size_t>(n));
            if (text.size() > max_record_bytes) break;
        }
        record = parse_lock_record(text);
        bool sealed = text.starts_with("end=") || text.find("\nend=") != std::string::npos;
        if ((sealed && !record.damaged) || (reads > 0 && text == previous)) return record;
        previous = std::move(text);
        ::sched_yield();
    }
    return record;
}

bool over_limits(const LockRecord& record, int max_failures, int max_attempts) {
    return record.gave_up || record.failures >= max_failures || record.attempts >= max_attempts;
}

}  // namespace volwatch
