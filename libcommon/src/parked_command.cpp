#include "volwatch/parked_command.hpp"

#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/error.hpp"
#include "volwatch/exit_codes.hpp"

namespace volwatch {

// Everything the parked process reads. It lives, pinned on the heap, until
// that process has exec'd or exited, and nothing in it is written after the
// clone (the caller's own ends of the pipes are kept apart, in
// ParkedCommand): the parked process reads it and writes its own stack only.
struct ParkedState {
    std::vector<std::string> words;
    std::vector<char*> argv;
    char** envp = nullptr;
    std::array<char, PATH_MAX> found;  // not zeroed (as the stack): a page written is a page fault
    bool searched = false;
    sigset_t mask{};
    int go[2] = {-1, -1};      // the pipe that starts the command: read end
    int report[2] = {-1, -1};  // close-on-exec: the exec's errno, if it fails: write end
    alignas(16) mutable std::array<char, 64 * 1024> stack;
};

namespace {

// Where execvp(3) would find `name`, into `found`: the first PATH entry that
// names a file we may execute. False when `name` holds a slash, PATH is unset
// or nothing is found: execvp then searches, and reports, itself (and it
// also covers what this misses: a directory, a script without "#!"). Done
// before the command is parked: after the grant, one exec instead of one
// failed exec per PATH directory ahead of the command's.
bool find_in_path(const char* name, std::array<char, PATH_MAX>& found) {
    const char* path = std::getenv("PATH");
    if (path == nullptr || std::strchr(name, '/') != nullptr) return false;
    const std::size_t name_length = std::strlen(name);
    for (std::string_view dirs(path);;) {
        std::size_t colon = dirs.find(':');
        std::string_view dir = dirs.substr(0, colon);
        if (dir.size() + name_length + 2 <= found.size()) {
            std::memcpy(found.data(), dir.data(), dir.size());
            char* end = found.data() + dir.size();
            if (!dir.empty()) *end++ = '/';  // an empty entry is the working directory
            std::memcpy(end, name, name_length + 1);
            if (::faccessat(AT_FDCWD, found.data(), X_OK, AT_EACCESS) == 0) return true;
        }
        if (colon == std::string_view::npos) return false;
        dirs.remove_prefix(colon + 1);
    }
}

// The parked process. It shares the caller's memory, and its thread-local
// storage too (errno), so it makes plain system calls only: no allocation,
// no stdio, no locale. An exec that fails is reported to the caller, who
// words the error. Not instrumented by AddressSanitizer: it runs on a stack
// ASan does not know, whose _exit() it would warn about on standard error.
__attribute__((no_sanitize_address)) int parked_main(void* arg) {
    const ParkedState& state = *static_cast<const ParkedState*>(arg);
    ::sigprocmask(SIG_SETMASK, &state.mask, nullptr);
    ::close(state.go[1]);
    ::close(state.report[0]);
    char byte = 0;
    ssize_t n;
    while ((n = ::read(state.go[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) ::_exit(to_int(ExitCode::busy));
    if (state.searched) ::execve(state.found.data(), state.argv.data(), state.envp);
    ::execvpe(state.argv[0], state.argv.data(), state.envp);
    int error = errno;
    (void)!::write(state.report[1], &error, sizeof error);
    ::_exit(error == ENOENT ? 127 : 126);
}

}  // namespace

ParkedCommand::ParkedCommand(const std::vector<std::string>& argv, const sigset_t& mask) {
    // For overwrite, not zeroed: zeroing would write all 16 pages of the
    // stack (16 page faults), of which the parked process uses one or two.
    auto state = std::make_unique_for_overwrite<ParkedState>();
    state->words = argv;
    for (auto& word : state->words) state->argv.push_back(word.data());
    state->argv.push_back(nullptr);
    state->envp = environ;
    state->searched = find_in_path(state->argv[0], state->found);
    state->mask = mask;
    if (::pipe2(state->go, O_CLOEXEC) != 0)
        throw Failure(ExitCode::internal, fmt::format("pipe: {}", std::strerror(errno)));
    UniqueFd go_read(state->go[0]);
    go_.reset(state->go[1]);
    if (::pipe2(state->report, O_CLOEXEC) != 0)
        throw Failure(ExitCode::internal, fmt::format("pipe: {}", std::strerror(errno)));
    report_.reset(state->report[0]);
    UniqueFd report_write(state->report[1]);
    // SIGCHLD: an ordinary child to wait for. No CLONE_VFORK: the caller goes
    // on while the command waits.
    pid_ = ::clone(parked_main, state->stack.data() + state->stack.size(), CLONE_VM | SIGCHLD, state.get());
    if (pid_ < 0) throw Failure(ExitCode::internal, fmt::format("clone: {}", std::strerror(errno)));
    state_ = std::move(state);
    // go_read and report_write close here: the parked process has its own.
}

ParkedCommand::~ParkedCommand() { cancel(); }

pid_t ParkedCommand::pid() const { return pid_; }

int ParkedCommand::start() {
    if (settled_) throw Failure(ExitCode::internal, "the command was already started or cancelled");
    bool told = ::write(go_.get(), "x", 1) == 1;
    go_.reset();  // not told: the parked process sees EOF and exits
    if (!told) {
        cancel();
        throw Failure(ExitCode::internal, "cannot start the command");
    }
    int error = 0;
    ssize_t n;
    while ((n = ::read(report_.get(), &error, sizeof error)) < 0 && errno == EINTR) {
    }
    report_.reset();
    settled_ = true;
    return n == static_cast<ssize_t>(sizeof error) ? error : 0;
}

void ParkedCommand::cancel() noexcept {
    if (settled_ || pid_ < 0) return;
    go_.reset();
    report_.reset();
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    settled_ = true;
}

}  // namespace volwatch
