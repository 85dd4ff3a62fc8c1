#include "volwatch/process.hpp"

#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/fd.hpp"

namespace volwatch {
namespace {

std::string read_small_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return "";
    std::string text;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > (1 << 20)) break;
    }
    return text;
}

struct StatFields {
    char state = '?';
    pid_t parent = 0;
    std::uint64_t start_time = 0;
};

// /proc/PID/stat: "pid (comm) state ppid ..." where comm may hold spaces and
// parentheses, so the fields are counted from the last ')'.
std::optional<StatFields> read_stat(pid_t pid) {
    std::string text = read_small_file(fmt::format("/proc/{}/stat", pid));
    std::size_t close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size()) return std::nullopt;
    std::string_view rest(text.data() + close + 2, text.size() - close - 2);
    StatFields fields;
    int index = 3;  // rest begins with field 3 (state)
    std::size_t i = 0;
    while (i < rest.size() && index <= 22) {
        std::size_t end = rest.find(' ', i);
        if (end == std::string_view::npos) end = rest.size();
        std::string_view field = rest.substr(i, end - i);
        if (index == 3 && !field.empty()) fields.state = field[0];
        if (index == 4) std::from_chars(field.data(), field.data() + field.size(), fields.parent);
        if (index == 22) {
            auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), fields.start_time);
            if (ec != std::errc()) return std::nullopt;
        }
        ++index;
        i = end + 1;
    }
    if (index <= 22) return std::nullopt;
    return fields;
}

}  // namespace

const std::string& current_boot_id() {
    static const std::string boot_id = [] {
        std::string text = read_small_file("/proc/sys/kernel/random/boot_id");
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
        return text.empty() ? std::string("unknown-boot") : text;
    }();
    return boot_id;
}

std::optional<ProcessIdentity> identify_process(pid_t pid) {
    if (pid <= 0) return std::nullopt;
    auto fields = read_stat(pid);
    if (!fields || fields->state == 'Z' || fields->state == 'X') return std::nullopt;
    return ProcessIdentity{pid, fields->start_time, current_boot_id()};
}

bool is_alive(const ProcessIdentity& who) {
    if (who.pid <= 0 || who.boot_id != current_boot_id()) return false;
    auto now = identify_process(who.pid);
    return now && now->start_time == who.start_time;
}

std::string process_command(pid_t pid) {
    std::string text = read_small_file(fmt::format("/proc/{}/cmdline", pid));
    while (!text.empty() && text.back() == '\0') text.pop_back();
    for (char& c : text)
        if (c == '\0' || c == '\n') c = ' ';
    return text;
}

pid_t parent_of(pid_t pid) {
    auto fields = read_stat(pid);
    return fields ? fields->parent : 0;
}

ProcessIdentity self_identity() {
    if (auto me = identify_process(::getpid())) return *me;
    return ProcessIdentity{::getpid(), 0, current_boot_id()};
}

std::string describe_process(pid_t pid, const std::string& command) {
    return command.empty() ? fmt::format("pid {}", pid) : fmt::format("pid {} ({})", pid, command);
}

UniqueFd open_process_handle(const ProcessIdentity& who) {
    if (who.pid <= 0 || who.boot_id != current_boot_id()) {
        errno = ESRCH;
        return UniqueFd();
    }
#ifdef SYS_pidfd_open
    UniqueFd handle(static_cast<int>(::syscall(SYS_pidfd_open, who.pid, 0)));
#else
    errno = ENOSYS;
    UniqueFd handle;
#endif
    if (!handle) return handle;
    // The pidfd pins whichever process had the PID at open time; if that is
    // still the one we expect now, it was the one we expect then (a process
    // cannot start before itself).
    if (!is_alive(who)) {
        errno = ESRCH;
        return UniqueFd();
    }
    return handle;
}

}  // namespace volwatch
