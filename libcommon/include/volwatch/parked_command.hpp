// A command started ahead of time and held just before its exec until the
// caller lets it run: vlock starts its command before it queues, so that the
// command's process (named in the lock record as an owner) exists from the
// start, and the grant costs one pipe write.
#pragma once

#include <csignal>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "volwatch/fd.hpp"

namespace volwatch {

struct ParkedState;

/// The parked process shares the caller's memory (clone(2) with CLONE_VM, as
/// posix_spawn does, but without stopping the caller): it copies none of the
/// caller's page tables and none of its pages are copied on write, which a
/// fork would cost twice over, once as the caller writes on and once as the
/// command's exec throws the copy away. So the caller must be single-threaded
/// and must not change its environment while a command is parked.
class ParkedCommand {
public:
    /// Parks `argv` (searched in PATH as execvp(3) does, found now), to run
    /// with the signal mask `mask`. Throws Failure (internal) if it cannot.
    ParkedCommand(const std::vector<std::string>& argv, const sigset_t& mask);
    /// Cancels the command unless it was started.
    ~ParkedCommand();
    ParkedCommand(const ParkedCommand&) = delete;
    ParkedCommand& operator=(const ParkedCommand&) = delete;

    [[nodiscard]] pid_t pid() const;

    /// Lets the command run. Returns once its exec is done: 0 if the command
    /// runs, else the exec's errno (the process has then exited with 127 for
    /// ENOENT, else 126). Either way the process is the caller's to reap.
    /// Throws Failure (internal) if the parked process cannot be told.
    int start();

    /// Ends the parked process without running the command (it exits with
    /// the busy code, 75) and reaps it. Nothing once started.
    void cancel() noexcept;

private:
    std::unique_ptr<const ParkedState> state_;  // what the parked process reads: never written after the clone
    pid_t pid_ = -1;
    UniqueFd go_;      // one byte starts the command; closing it cancels the command
    UniqueFd report_;  // EOF once the exec is done, else the exec's errno
    bool settled_ = false;  // started or cancelled: the parked process no longer reads state_
};

}  // namespace volwatch
