#include "volwatch/vlock.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/lockdir.hpp"
#include "volwatch/output.hpp"
#include "volwatch/parked_command.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {
namespace {

using nlohmann::json;

// The signals vlock forwards to its command, and that end a wait cleanly
// (leaving the queue at once instead of being pruned later).
constexpr int forwarded_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

// Without pidfd_open (kernels before 5.3) nothing wakes vlock when its
// command exits, so it looks this often instead.
constexpr int no_pidfd_recheck_ms = 100;

struct Target {
    HostConfig host;
    Volume volume;
    std::string shown;  // the volume root, as messages name it
};

namespace fs = std::filesystem;

/// No mounts at all: for resolve_volume() once the kernel has shown that none
/// can change its answer.
class NoMounts final : public MountTable {
public:
    [[nodiscard]] std::vector<MountEntry> read() const override { return {}; }
};

// True if `dir` is known not to be the root of a mount; false if it is one or
// the kernel cannot tell (statx without STATX_ATTR_MOUNT_ROOT: before 5.8).
bool known_not_mount_root(const fs::path& dir) {
    struct statx stx {};
    if (::statx(AT_FDCWD, dir.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) != 0) return false;
    if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) == 0) return false;
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) == 0;
}

// resolve_volume() picks the deepest of the explicit roots and the visible
// mounts that hold the path. When the deepest explicit root holding it is not
// a mount point and neither is any directory below it on the way down to the
// path, no mount can be deeper or key that root differently: the answer is
// the same without the mount table. Asking the kernel about those few
// directories (one statx each, usually one in all) costs far less than reading
// /proc/self/mountinfo, with every mount on the host, and sorting out which
// mounts are visible, on every vlock and vunlock.
bool explicit_root_decides(std::string_view argument, const HostConfig& host) {
    if (argument.empty() || argument.rfind("UUID=", 0) == 0 || host.volumes.empty()) return false;
    std::error_code ec;
    fs::path path = fs::canonical(fs::path(argument), ec);
    if (ec) return false;
    std::optional<fs::path> deepest;
    for (const auto& configured : host.volumes) {
        fs::path root = fs::canonical(configured, ec);
        struct stat st {};
        if (ec || ::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        // `root` is `path` or one of its ancestors (both canonical).
        auto mismatch = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
        bool within = mismatch.first == root.end() || (std::next(mismatch.first) == root.end() && mismatch.first->empty());
        if (within && (!deepest || std::distance(root.begin(), root.end()) > std::distance(deepest->begin(), deepest->end())))
            deepest = std::move(root);
    }
    if (!deepest) return false;
    for (fs::path dir = path;; dir = dir.parent_path()) {
        if (!known_not_mount_root(dir)) return false;
        if (dir == *deepest) return true;
        if (!dir.has_relative_path()) return false;  // reached "/" without meeting the root: cannot happen
    }
}

Result<Volume> resolve_argument(std::string_view argument, const HostConfig& host) {
    if (explicit_root_decides(argument, host)) return resolve_volume(argument, host, NoMounts());
    return resolve_volume(argument, host, ProcMountTable());
}

Result<Target> resolve_target(const std::string& argument, const HostOverrides& overrides) {
    auto host = load_host_config(overrides);
    if (!host) return host.problem();
    auto volume = resolve_argument(argument, *host);
    if (!volume) return volume.problem();
    std::string shown = volume->root.string();
    return Target{std::move(*host), std::move(*volume), std::move(shown)};
}

/// Blocks the forwarded signals for the lifetime of the object and exposes
/// them as a signalfd; the old mask is what a child must restore.
class SignalCatcher {
public:
    SignalCatcher() {
        sigemptyset(&set_);
        for (int sig : forwarded_signals) sigaddset(&set_, sig);
        ::sigprocmask(SIG_BLOCK, &set_, &old_);
        fd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
    }
    ~SignalCatcher() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
    SignalCatcher(const SignalCatcher&) = delete;
    SignalCatcher& operator=(const SignalCatcher&) = delete;

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] const sigset_t& old_mask() const { return old_; }
    /// The next pending signal, or 0.
    int next() const {
        signalfd_siginfo info{};
        if (!fd_ || ::read(fd_.get(), &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return 0;
        return static_cast<int>(info.ssi_signo);
    }

private:
    sigset_t set_{};
    sigset_t old_{};
    UniqueFd fd_;
};

std::string join(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& word : words) out += (out.empty() ? "" : " ") + word;
    return out;
}

LockLog logger(std::FILE* err, const std::string& program, const std::string& shown) {
    return [err, program, shown](const std::string& note) { put_line(err, escape_for_terminal(fmt::format("{}: {}: {}", program, shown, note))); };
}

int status_of(int wait_status) {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return to_int(ExitCode::internal);
}

json identity_json(const ProcessIdentity& who) {
    return {{"pid", who.pid}, {"start_time", who.start_time}, {"boot_id", who.boot_id}, {"alive", is_alive(who)}};
}

json record_json(const std::string& id, const LockRecord& record, const LockLimits& limits) {
    json owners = json::array(), waiters = json::array();
    for (const auto& owner : record.owners) owners.push_back(identity_json(owner));
    int position = 0;
    for (const auto& waiter : record.waiters) {
        json entry = identity_json(waiter.who);
        entry["position"] = entry["alive"].get<bool>() ? json(++position) : json(nullptr);
        entry["ticket"] = waiter.ticket;
        waiters.push_back(entry);
    }
    auto holder = record.live_owner();
    json holder_json = nullptr;
    if (holder)
        holder_json = {{"pid", holder->pid}, {"command", record.command}, {"purpose", record.purpose},
                       {"since", format_utc(record.since)}, {"since_unix", record.since}};
    return {{"volume_id", id},
            {"volume", record.volume},
            {"state", holder ? "locked" : record.owners.empty() ? "free" : "abandoned"},
            {"holder", holder_json},
            {"owners", owners},
            {"waiters", waiters},
            {"failures", record.failures},
            {"max_failures", limits.max_failures},
            {"attempts", record.attempts},
            {"max_attempts", limits.max_attempts},
            {"last_status", record.last_status},
            {"last_success", format_utc(record.last_success)},
            {"last_success_unix", record.last_success},
            {"gave_up", over_limits(record, limits.max_failures, limits.max_attempts)}};
}

void render_record(const std::string& id, const LockRecord& record, const LockLimits& limits, std::FILE* out) {
    auto holder = record.live_owner();
    put_line(out, escape_for_terminal(fmt::format("{} {}", record.volume.empty() ? "-" : record.volume, id)));
    if (holder)
        put_line(out, escape_for_terminal(fmt::format("  locked by {} since {} ({})", describe_process(holder->pid, record.command),
                                               format_clock(record.since),
                                               record.purpose.empty() ? "no purpose given" : record.purpose)));
    else if (!record.owners.empty())
        put_line(out, escape_for_terminal(fmt::format("  abandoned: {} exited without unlocking", describe_process(record.owners.front().pid, record.command))));
    else
        put(out, "  free\n");
    for (const auto& owner : record.owners)
        put(out, fmt::format("  owner pid {} {}\n", owner.pid, is_alive(owner) ? "alive" : "dead"));
    int position = 0;  // live waiters only: a dead one ahead moves nobody back
    for (const auto& waiter : record.waiters) {
        if (is_alive(waiter.who)) put(out, fmt::format("  waiter {} pid {} alive\n", ++position, waiter.who.pid));
        else put(out, fmt::format("  waiter - pid {} dead\n", waiter.who.pid));
    }
    put(out, fmt::format("  failures {} of {}, attempts {} of {}, last status {}, last success {}{}\n", record.failures,
                       limits.max_failures, record.attempts, limits.max_attempts, record.last_status,
                       record.last_success > 0 ? format_clock(record.last_success) : "never",
                       over_limits(record, limits.max_failures, limits.max_attempts) ? ", gave up" : ""));
}

ExitCode list_locks(const VlockOptions& options, std::FILE* out, std::FILE* err) {
    auto host = load_host_config(options.host);
    if (!host) {
        put_line(err, "vlock: " + escape_for_terminal(host.problem().message));
        return host.problem().code;
    }
    std::optional<std::string> only;
    if (!options.volume.empty()) {
        auto volume = resolve_argument(options.volume, *host);
        if (!volume) throw Failure(volume.problem());
        only = volume->id.value;
    }
    auto dir = LockDir::open(host->lock_dir, LockDirAccess::read).or_throw();
    auto entries = list_volume_locks(dir).or_throw();
    auto reboot = dir.reboot_file().or_throw().read().or_throw();
    LockLimits limits = lock_limits(*host);
    std::erase_if(entries, [&](const VolumeLockEntry& e) { return only && e.volume_id != *only; });
    auto reboot_holder = reboot.live_owner();
    if (options.json) {
        json volumes = json::array();
        for (const auto& entry : entries) volumes.push_back(record_json(entry.volume_id, entry.record, limits));
        json reboot_json = nullptr;
        if (reboot_holder)
            reboot_json = {{"pid", reboot_holder->pid}, {"command", reboot.command}, {"since", format_utc(reboot.since)},
                           {"since_unix", reboot.since}};
        json document = {{"lock_dir", host->lock_dir.string()},
                         {"reboot", {{"held", reboot_holder.has_value()}, {"holder", reboot_json}}},
                         {"volumes", volumes}};
        put_line(out, json_text(document, 2));
        return ExitCode::ok;
    }
    for (const auto& entry : entries) render_record(entry.volume_id, entry.record, limits, out);
    if (reboot_holder)
        put_line(out, escape_for_terminal(fmt::format("reboot lock: held by {} since {}",
                                               describe_process(reboot_holder->pid, reboot.command),
                                               format_clock(reboot.since))));
    else
        put(out, "reboot lock: free\n");
    return ExitCode::ok;
}

ExitCode refuse(const Target& target, const Problem& problem, const VlockOptions& options, std::FILE* out,
                std::FILE* err) {
    put_line(err, escape_for_terminal(fmt::format("vlock: {}: {}", target.shown, problem.message)));
    ExitCode code = problem.code == ExitCode::busy ? static_cast<ExitCode>(options.conflict_exit_code) : problem.code;
    if (options.json)
        put_line(out, json_text(json{{"volume", target.shown}, {"volume_id", target.volume.id.value},
                              {"result", exit_code_name(problem.code)}, {"message", problem.message}, {"exit_code", to_int(code)}}));
    return code;
}

// vlock VOLUME -- CMD: the command is started first and parked just before
// its exec (ParkedCommand), so that its identity is written as an owner in
// the same rewrite that grants the lock; if vlock dies or gives up before
// the grant, the command never runs. It is parked before everything else
// vlock does, even before the host config is read, and with no copy of
// vlock's memory: a fork cost the lock about a millisecond of page copying
// on this VM (docs/benchmarks.md, issue 13).
ExitCode run_command(const VlockOptions& options, std::FILE* out, std::FILE* err) {
    SignalCatcher signals;
    std::fflush(out);
    std::fflush(err);
    ParkedCommand command(options.command, signals.old_mask());
    const pid_t child = command.pid();
    // The child is ours and not reaped, so its PID cannot name another
    // process yet: a plain pidfd_open needs no identity check afterwards.
#ifdef SYS_pidfd_open
    UniqueFd child_handle(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
#else
    UniqueFd child_handle;
#endif
    auto reap = [&] {
        int wait_status = 0;
        while (::waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
        }
        return status_of(wait_status);
    };
    // Until the grant, every way out cancels the command (~ParkedCommand
    // too), which then exits without running.
    const Target target = resolve_target(options.volume, options.host).or_throw();
    const LockDir dir = LockDir::open(target.host.lock_dir, LockDirAccess::write).or_throw();
    const ProcessIdentity me = self_identity();

    AcquireRequest request;
    request.volume = target.shown;
    if (auto me_child = identify_process(child)) request.owners.push_back(*me_child);
    request.owners.push_back(me);
    request.waiter = me;
    request.command = join(options.command);
    request.purpose = options.purpose;
    request.wait = options.wait;
    request.interrupt_fd = signals.fd();
    request.limits = lock_limits(target.host);
    LockLog log = logger(err, "vlock", target.shown);
    auto grant = acquire_volume_lock(dir, target.volume.id.value, request, log);
    if (!grant) {
        command.cancel();
        if (int sig = signals.next()) return static_cast<ExitCode>(128 + sig);
        return refuse(target, grant.problem(), options, out, err);
    }
    if (int error = command.start())
        put_line(err, escape_for_terminal(fmt::format("vlock: {}: {}", options.command.front(), std::strerror(error))));
    // A waiter's watch is closed after the release, not retired here
    // (retire_watch): retiring forks twice while the lock is held, and the
    // next waiter would wait for it. After the release, closing it costs
    // only this vlock's exit an SRCU grace period (0.1 to 4 ms here), no
    // CPU, where the two forks cost about 2 ms of CPU and 25 page faults:
    // with 8 clients contending on 2 CPUs, CPU is what the lock waits for.
    UniqueFd watch = std::move(grant->watch);

    int status = 0;
    for (;;) {
        pollfd fds[2] = {{signals.fd(), POLLIN, 0}, {child_handle.get(), POLLIN, 0}};
        int ready = ::poll(fds, child_handle ? 2 : 1, child_handle ? -1 : no_pidfd_recheck_ms);
        if (ready < 0 && errno != EINTR) throw Failure(ExitCode::internal, fmt::format("poll: {}", std::strerror(errno)));
        while (int sig = signals.next()) ::kill(child, sig);
        if (child_handle && (fds[1].revents & POLLIN) != 0) {
            status = reap();
            break;
        }
        if (!child_handle) {
            int wait_status = 0;
            pid_t done;
            while ((done = ::waitpid(child, &wait_status, WNOHANG)) < 0 && errno == EINTR) {
            }
            if (done != 0) {  // exited, or waitpid failed: as reap() would
                status = status_of(wait_status);
                break;
            }
        }
    }
    ReleaseRequest release;
    release.requesters = {me};
    release.status = status;
    release.limits = request.limits;
    auto released = release_volume_lock(dir, target.volume.id.value, release, log);
    watch.reset();
    // The command may have released the lock itself (vunlock from a script
    // run under vlock), or root forced it: nothing left to release then.
    if (!released && released.problem().code != ExitCode::not_locked && released.problem().code != ExitCode::not_owner)
        put_line(err, escape_for_terminal(fmt::format("vlock: {}: {}", target.shown, released.problem().message)));
    return static_cast<ExitCode>(status);
}

}  // namespace

Result<Duration> parse_wait(std::string_view text) {
    if (text == "forever" || text == "infinity") return Duration::max();
    return parse_duration(text);
}

SplitCommandLine split_command_line(int argc, const char* const* argv) {
    SplitCommandLine split;
    for (int i = 0; i < argc; ++i) {
        std::string_view word(argv[i]);
        if (i > 0 && !split.has_separator && word == "--") {
            split.has_separator = true;
            continue;
        }
        if (split.has_separator) split.command.emplace_back(word);
        else if (word == "--wait") split.options.emplace_back("--wait=forever");
        else split.options.emplace_back(word);
    }
    return split;
}

ExitCode run_vlock(const VlockOptions& options, std::FILE* out, std::FILE* err) {
    if (options.list) return list_locks(options, out, err);
    if (!options.command.empty()) return run_command(options, out, err);
    auto target = resolve_target(options.volume, options.host).or_throw();
    auto dir = LockDir::open(target.host.lock_dir, LockDirAccess::write).or_throw();

    AcquireRequest request;
    request.volume = target.shown;
    pid_t owner_pid = options.owner.value_or(::getppid());
    auto owner = identify_process(owner_pid);
    if (!owner) throw Failure(ExitCode::usage, fmt::format("--owner {}: no such process", owner_pid));
    request.owners = {*owner};
    request.command = process_command(owner_pid);
    request.purpose = options.purpose;
    request.wait = options.wait;
    request.limits = lock_limits(target.host);
    SignalCatcher signals;
    request.interrupt_fd = signals.fd();
    auto grant = acquire_volume_lock(dir, target.volume.id.value, request, logger(err, "vlock", target.shown));
    if (!grant) {
        if (int sig = signals.next()) return static_cast<ExitCode>(128 + sig);
        return refuse(target, grant.problem(), options, out, err);
    }
    retire_watch(std::move(grant->watch));
    if (options.json)
        put_line(out, json_text(json{{"volume", target.shown}, {"volume_id", target.volume.id.value}, {"result", "locked"},
                              {"owner", owner_pid}, {"waited_ms", grant->waited.count()}, {"exit_code", 0}}));
    return ExitCode::ok;
}

ExitCode run_vunlock(const VunlockOptions& options, std::FILE* err) {
    auto target = resolve_target(options.volume, options.host).or_throw();
    auto dir = LockDir::open(target.host.lock_dir, LockDirAccess::write).or_throw();
    ReleaseRequest request;
    // The caller and its ancestors, so the script that locked may release
    // through a wrapper (sudo, timeout) or from a subshell. Not pid 1 unless
    // it is the parent: everything descends from it.
    request.requesters.push_back(self_identity());
    pid_t pid = ::getppid();
    for (int depth = 0; pid > 0 && depth < 64; ++depth, pid = parent_of(pid)) {
        if (pid == 1 && depth > 0) break;
        if (auto ancestor = identify_process(pid)) request.requesters.push_back(*ancestor);
        if (pid == 1) break;
    }
    request.status = options.status;
    request.force = options.force;
    request.limits = lock_limits(target.host);
    auto released = release_volume_lock(dir, target.volume.id.value, request, logger(err, "vunlock", target.shown));
    if (!released) throw Failure(released.problem().code, fmt::format("{}: {}", target.shown, released.problem().message));
    return ExitCode::ok;
}

}  // namespace volwatch
