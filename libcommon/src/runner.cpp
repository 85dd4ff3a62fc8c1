#include "volwatch/runner.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/fd.hpp"

namespace volwatch {
namespace {

constexpr const char* clean_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ioprio_set(2) has no glibc wrapper.
constexpr int ioprio_class_shift = 13;
constexpr int ioprio_class_idle = 3;
constexpr int ioprio_who_process = 1;

std::string find_program(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    std::string_view path(clean_path);
    std::size_t i = 0;
    while (i <= path.size()) {
        std::size_t colon = path.find(':', i);
        if (colon == std::string_view::npos) colon = path.size();
        std::string candidate = fmt::format("{}/{}", path.substr(i, colon - i), name);
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        i = colon + 1;
    }
    return "";
}

void write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Splits output into lines and writes each with the prefix.
class LinePrefixer {
public:
    LinePrefixer(std::string prefix, int fd) : prefix_(std::move(prefix)), fd_(fd) {}
    void feed(std::string_view data) {
        pending_.append(data);
        std::size_t start = 0, newline;
        while ((newline = pending_.find('\n', start)) != std::string::npos) {
            write_all(fd_, prefix_ + pending_.substr(start, newline - start + 1));
            start = newline + 1;
        }
        pending_.erase(0, start);
        if (pending_.size() > 64 * 1024) flush();  // a very long line: do not hoard it
    }
    void flush() {
        if (!pending_.empty()) write_all(fd_, prefix_ + pending_ + "\n");
        pending_.clear();
    }

private:
    std::string prefix_;
    int fd_;
    std::string pending_;
};

[[noreturn]] void exec_child(const RunSpec& spec, const std::string& program, char* const* argv, char* const* envp,
                             int output_write, int go_read) {
    ::setpgid(0, 0);
    if (go_read >= 0) {
        char byte = 0;
        ssize_t n;
        while ((n = ::read(go_read, &byte, 1)) < 0 && errno == EINTR) {
        }
        if (n != 1) ::_exit(75);  // the parent died before on_start returned: run nothing
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) ::signal(sig, SIG_DFL);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(output_write, 1) < 0 || ::dup2(output_write, 2) < 0) ::_exit(127);
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    if (::chdir(spec.cwd.c_str()) != 0) {
        static const char message[] = "cannot change to the volume root\n";
        (void)!::write(2, message, sizeof message - 1);
        ::_exit(126);
    }
    if (spec.low_priority) {
        (void)!::setpriority(PRIO_PROCESS, 0, 10);
        ::syscall(SYS_ioprio_set, ioprio_who_process, 0, ioprio_class_idle << ioprio_class_shift);
    }
    ::execve(program.c_str(), argv, envp);
    int error = errno;
    static const char message[] = "cannot execute the rebuilder\n";
    (void)!::write(2, message, sizeof message - 1);
    ::_exit(error == ENOENT ? 127 : 126);
}

}  // namespace

const std::vector<std::string>& rebuilder_environment() {
    static const std::vector<std::string> environment = {fmt::format("PATH={}", clean_path), "LANG=C.UTF-8",
                                                         "LC_ALL=C.UTF-8", "HOME=/", "SHELL=/bin/sh"};
    return environment;
}

Result<RunResult> run_command(const RunSpec& spec) {
    if (spec.argv.empty() || spec.argv.front().empty()) return Problem{ExitCode::internal, "empty command"};
    RunResult result;
    std::string program = find_program(spec.argv.front());
    LinePrefixer output(spec.prefix, spec.output_fd);
    if (program.empty()) {
        output.feed(fmt::format("{}: command not found in {}\n", spec.argv.front(), clean_path));
        result.status = 127;
        result.started = false;
        return result;
    }
    // Everything the child needs is built before fork: no allocation after it.
    std::vector<char*> argv;
    for (const auto& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& entry : rebuilder_environment()) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Problem{ExitCode::internal, fmt::format("pipe: {}", std::strerror(errno))};
    UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    auto started = std::chrono::steady_clock::now();
    UniqueFd go_read, go_write;
    if (spec.on_start) {
        int go[2];
        if (::pipe2(go, O_CLOEXEC) != 0) return Problem{ExitCode::internal, fmt::format("pipe: {}", std::strerror(errno))};
        go_read = UniqueFd(go[0]);
        go_write = UniqueFd(go[1]);
    }
    pid_t child = ::fork();
    if (child < 0) return Problem{ExitCode::internal, fmt::format("fork: {}", std::strerror(errno))};
    if (child == 0) {
        go_write.reset();
        exec_child(spec, program, argv.data(), envp.data(), write_end.get(), go_read.get());
    }
    ::setpgid(child, child);  // also in the parent, so the group exists before we might signal it
    write_end.reset();
    if (spec.on_start) {
        go_read.reset();
        spec.on_start(child);
        char byte = 1;
        while (::write(go_write.get(), &byte, 1) < 0 && errno == EINTR) {
        }
        go_write.reset();
    }
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));

    auto deadline = started + spec.timeout;
    std::chrono::steady_clock::time_point kill_at{};
    bool kill_pending = false;
    bool term_sent = false;
    bool exited = false, pipe_open = true;
    int wait_status = 0;
    char buffer[8192];
    while (!exited) {
        auto now = std::chrono::steady_clock::now();
        if (!term_sent && now >= deadline) {
            term_sent = true;
            result.timed_out = !result.interrupted;
            output.feed(result.interrupted ? std::string("interrupted; sending SIGTERM\n")
                                           : fmt::format("timed out after {}; sending SIGTERM\n", format_duration(spec.timeout)));
            ::kill(-child, SIGTERM);
            kill_at = now + spec.kill_grace;
            kill_pending = true;
        }
        if (kill_pending && now >= kill_at) {
            ::kill(-child, SIGKILL);
            kill_pending = false;
        }
        bool stopping = result.timed_out || result.interrupted;
        auto next = stopping ? (kill_pending ? kill_at : now + std::chrono::seconds(1)) : deadline;
        int timeout_ms = static_cast<int>(std::clamp<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1, 0, 60'000));
        struct pollfd fds[3] = {{pidfd.get(), POLLIN, 0},
                                {pipe_open ? read_end.get() : -1, POLLIN, 0},
                                {result.interrupted ? -1 : spec.interrupt_fd, POLLIN, 0}};
        if (!pidfd) timeout_ms = std::min(timeout_ms, 50);  // no pidfd (old kernel): poll for the exit
        int ready = ::poll(fds, 3, timeout_ms);
        if (ready > 0 && (fds[2].revents & POLLIN) && !term_sent) {
            // Asked to stop: end the command the way a timeout does, at once.
            result.interrupted = true;
            deadline = std::chrono::steady_clock::now();
            continue;
        }
        if (ready < 0 && errno != EINTR) break;
        if (pipe_open && (fds[1].revents & (POLLIN | POLLHUP))) {
            ssize_t n = ::read(read_end.get(), buffer, sizeof buffer);
            if (n > 0) output.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
            else if (n == 0) pipe_open = false;
        }
        pid_t waited = ::waitpid(child, &wait_status, WNOHANG);
        if (waited == child) exited = true;
    }
    // Drain what the rebuilder wrote before it exited, without waiting for
    // any descendant that still holds the pipe open.
    ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
    for (ssize_t n; pipe_open && (n = ::read(read_end.get(), buffer, sizeof buffer)) > 0;)
        output.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
    output.flush();
    if (result.timed_out || result.interrupted) ::kill(-child, SIGKILL);  // leave nothing of a stopped build behind

    result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    if (WIFEXITED(wait_status)) result.status = WEXITSTATUS(wait_status);
    else if (WIFSIGNALED(wait_status)) result.status = 128 + WTERMSIG(wait_status);
    return result;
}

}  // namespace volwatch
