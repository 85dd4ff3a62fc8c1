#include "volwatch/reboot_gate.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <ostream>
#include <poll.h>
#include <set>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/fd.hpp"
#include "volwatch/lockdir.hpp"
#include "volwatch/log.hpp"
#include "volwatch/output.hpp"
#include "volwatch/process.hpp"
#include "volwatch/report.hpp"
#include "volwatch/volume.hpp"
#include "volwatch/vwatch.hpp"

namespace volwatch {
namespace {

using Clock = std::chrono::steady_clock;

// Between relaunches of a volume whose vrebuild ended without progress
// (75, 5, 127, a failure): doubling from the first, up to the cap.
constexpr std::chrono::milliseconds first_retry_delay{1000};
constexpr std::chrono::milliseconds max_retry_delay{30'000};
// How long, after the bound, the gate waits for the vrebuilds it stopped:
// vrebuild gives its rebuilder 5 s between SIGTERM and SIGKILL.
constexpr std::chrono::milliseconds stop_grace{10'000};
// vrebuild's answers that ask for a later retry rather than count a failure.
constexpr int status_tempfail = 75;
constexpr int status_reboot_in_progress = 5;

double unix_now() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Blocker {
    Volume volume;
    std::string reason;                  // "vrebuild running, pid 4242, 42 s" or "initramfs: stale: ..."
    std::optional<ProcessIdentity> owner;
    bool locked = false;
};

struct Excepted {
    Volume volume;
    std::string reason;
};

struct Evaluation {
    std::vector<Blocker> blockers;
    std::vector<Excepted> excepted;
};

std::string first_stale_reason(const VolumeReport& report) {
    for (const auto& cache : report.caches)
        if (cache.state != CacheState::clean) return fmt::format("{}: {}", cache.name, cache.reason);
    for (const auto& helper : report.helpers)
        if (helper.state != CacheState::clean) return fmt::format("helper {}: {}", helper.target.string(), helper.reason);
    return "stale";
}

// What keeps the reboot lock from being granted now. `launches` counts the
// rebuilds this run started per volume: past max_attempts a volume that
// rebuilds "successfully" yet stays stale stops blocking too.
Evaluation evaluate(const HostConfig& host, const LockDir& dir, const std::map<std::string, int>& launches) {
    Evaluation evaluation;
    for (const Volume& volume : discover_volumes(host, ProcMountTable())) {
        if (!volume.mounted) continue;
        VolumeReport report = inspect_volume(volume, host, InspectOptions{.locks = &dir});
        auto launched = launches.find(volume.id.value);
        bool over = report.gave_up || (launched != launches.end() && launched->second >= host.max_attempts);
        if (report.state == VolumeState::absent) continue;
        if (report.state == VolumeState::config_error) {
            evaluation.excepted.push_back({volume, fmt::format("config error: {}", report.problem)});
            continue;
        }
        if (report.lock) {
            // A live holder is work in progress, even on a volume we gave up
            // on: wait for it (within the bound) rather than reboot under it.
            Blocker blocker{volume, "", std::nullopt, true};
            double age = std::max(0.0, unix_now() - report.lock->since);
            blocker.reason = fmt::format("{} running, pid {}, {:.0f} s", report.lock->purpose.empty() ? report.lock->command : report.lock->purpose,
                                         report.lock->pid, age);
            // The owner's pidfd wakes the gate if it dies without unlocking.
            if (auto record = dir.peek_volume(volume.id.value)) blocker.owner = record->live_owner();
            evaluation.blockers.push_back(std::move(blocker));
            continue;
        }
        if (!report.needs_update()) continue;
        if (over) {
            int attempts = report.attempts + (launched != launches.end() ? launched->second : 0);
            evaluation.excepted.push_back(
                {volume, fmt::format("gave up after {} failures and {} attempts; not waiting for it ({})", report.failures,
                                     attempts, first_stale_reason(report))});
            continue;
        }
        evaluation.blockers.push_back({volume, first_stale_reason(report), std::nullopt, false});
    }
    return evaluation;
}

enum class GrantOutcome { granted, already, blocked };

struct GrantAnswer {
    GrantOutcome outcome = GrantOutcome::blocked;
    std::vector<std::pair<std::string, LockRecord>> held;  // volume locks that blocked it
};

// Under the reboot lock's exclusive flock (the order vlock shares: reboot
// first, then a volume), no volume lock can be granted meanwhile.
Result<GrantAnswer> try_grant(const LockDir& dir, const ProcessIdentity& owner, const std::string& command) {
    auto reboot = dir.reboot_file();
    if (!reboot) return reboot.problem();
    RecordLock guard(*reboot, true);
    auto record = reboot->read_held();
    if (!record) return record.problem();
    GrantAnswer answer;
    if (record->held()) {
        answer.outcome = GrantOutcome::already;
        return answer;
    }
    auto ids = dir.volume_ids();
    if (!ids) return ids.problem();
    for (const auto& id : *ids) {
        auto file = dir.volume_file(id);  // read under its guard: exact, never a torn read
        if (!file) return file.problem();
        auto volume_record = file->read();
        if (!volume_record) return volume_record.problem();
        if (volume_record->held()) answer.held.emplace_back(id, *volume_record);
    }
    // Any live volume lock blocks, watched volume or not (a script may lock
    // a volume vwatch does not follow).
    if (!answer.held.empty()) return answer;
    LockRecord granted = *record;
    granted.owners = {owner};
    granted.command = command;
    granted.purpose = "vrebootgate";
    granted.since = unix_now();
    granted.waiters.clear();
    if (auto written = reboot->write_held(granted); !written) return written.problem();
    answer.outcome = GrantOutcome::granted;
    return answer;
}

class Gate {
public:
    Gate(const GateOptions& options, const HostConfig& host, const LockDir& dir, std::ostream& out, std::ostream& err)
        : options_(options), host_(host), dir_(dir), out_(out), err_(err),
          logger_("vrebootgate", options.quiet ? LogLevel::warning : LogLevel::info, LogTarget::automatic) {}

    ExitCode run() {
        auto owner_pid = options_.owner.value_or(::getppid());
        auto owner = identify_process(owner_pid);
        if (!owner) throw Failure(ExitCode::usage, fmt::format("--owner {}: no such process", owner_pid));
        auto started = Clock::now();
        auto deadline = options_.wait ? (*options_.wait == Duration::max() ? Clock::time_point::max() : started + *options_.wait)
                                      : started;
        UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (inotify) {
            ::inotify_add_watch(inotify.get(), (dir_.path() / "volumes").c_str(),
                                IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_ATTRIB | IN_MOVED_TO);
            ::inotify_add_watch(inotify.get(), dir_.path().c_str(), IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE);
        }
        bool delayed = false;
        std::vector<std::string> delayed_by;  // the volumes that blocked when the delay began
        std::string last_progress;
        for (;;) {
            reap_children();
            // A reboot already under way is the answer whatever the volumes
            // say (as the seed's _kextmanager_lock_reboot): the shutdown that
            // holds the lock went through the gate, so there is nothing left
            // to wait for or rebuild.
            auto reboot_holder = reboot_lock_owner(dir_);
            if (!reboot_holder) throw Failure(reboot_holder.problem());
            if (*reboot_holder) return already();
            Evaluation now = evaluate(host_, dir_, launches_);
            report_exceptions(now);
            if (now.blockers.empty()) {
                std::string command = process_command(owner->pid);
                auto granted = try_grant(dir_, *owner, command.empty() ? process_command(::getpid()) : command);
                if (!granted) throw Failure(granted.problem());
                if (granted->outcome == GrantOutcome::already) return already();
                if (granted->outcome == GrantOutcome::granted) {
                    double waited = std::chrono::duration<double>(Clock::now() - started).count();
                    if (delayed)
                        logger_.event(LogLevel::notice, log_event::shutdown_delay_ends,
                                      fmt::format("shutdown delay ends after {:.1f} s", waited),
                                      EventFields::about(delayed_by).with_status("granted").with_pid(owner->pid).with_seconds(waited));
                    logger_.log(LogLevel::info, fmt::format("reboot lock granted to pid {}", owner->pid));
                    print_result(true, owner->pid, waited, now);
                    return ExitCode::ok;
                }
                // Volume locks the scan did not show (taken meanwhile, or on a
                // volume it does not follow) block like any other: wait for them.
                for (const auto& [id, record] : granted->held) {
                    Volume volume;
                    volume.root = record.volume.empty() ? id : record.volume;
                    volume.id = VolumeId{id};
                    auto holder = record.live_owner();
                    std::string what = record.purpose.empty() ? record.command : record.purpose;
                    now.blockers.push_back({volume,
                                            fmt::format("{} running, pid {}, {:.0f} s", what, holder ? holder->pid : 0,
                                                        std::max(0.0, unix_now() - record.since)),
                                            holder, true});
                }
            }
            if (!options_.wait) {
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::warning, fmt::format("{}: busy: {}", b.volume.root.string(), b.reason));
                print_result(false, 0, 0, now);
                return ExitCode::busy;
            }
            if (!delayed) {
                delayed = true;
                std::string names;
                for (const auto& b : now.blockers) {
                    names += (names.empty() ? "" : ", ") + b.volume.root.string();
                    delayed_by.push_back(b.volume.root.string());
                }
                logger_.event(LogLevel::notice, log_event::shutdown_delay_begins,
                              fmt::format("shutdown delay begins: waiting for {} ({} volume{})", names, now.blockers.size(),
                                          now.blockers.size() == 1 ? "" : "s"),
                              EventFields::about(delayed_by).with_status("waiting").with_pid(owner->pid));
            }
            launch_rebuilds(now);
            std::string progress = describe(now);
            if (progress != last_progress) {
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::info, fmt::format("waiting for {}: {}", b.volume.root.string(), describe_blocker(b)));
                last_progress = progress;
            }
            if (Clock::now() >= deadline) {
                double waited = std::chrono::duration<double>(Clock::now() - started).count();
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::error, fmt::format("{}: still blocking after {:.1f} s: {}", b.volume.root.string(), waited,
                                                             describe_blocker(b)));
                std::string stopped = stop_children();
                std::vector<std::string> blocking;
                for (const auto& b : now.blockers) blocking.push_back(b.volume.root.string());
                logger_.event(LogLevel::notice, log_event::shutdown_delay_ends,
                              fmt::format("shutdown delay ends after {:.1f} s without the reboot lock{}", waited, stopped),
                              EventFields::about(blocking).with_status("timed-out").with_pid(owner->pid).with_seconds(waited));
                print_result(false, 0, waited, now);
                return ExitCode::busy;
            }
            wait_for_change(inotify.get(), now, deadline);
        }
    }

private:
    ExitCode already() {
        auto holder = reboot_lock_owner(dir_);
        std::string who = holder && *holder ? fmt::format(" (held by pid {})", (*holder)->pid) : "";
        if (!options_.quiet) err_ << "vrebootgate: reboot already in progress" << who << "; proceed\n";
        if (options_.json)
            out_ << json_text(nlohmann::json({{"version", 1}, {"granted", false}, {"already", true},
                                              {"owner", holder && *holder ? nlohmann::json((*holder)->pid) : nlohmann::json(nullptr)},
                                              {"waited_seconds", 0}, {"blockers", nlohmann::json::array()},
                                              {"excepted", nlohmann::json::array()}, {"exit_code", to_int(ExitCode::reboot_already)}}), 2)
                 << '\n';
        return ExitCode::reboot_already;
    }

    std::string describe_blocker(const Blocker& b) const {
        auto child = children_.find(b.volume.id.value);
        if (!b.locked && child != children_.end())
            return fmt::format("{}; rebuilding, vrebuild pid {}", b.reason, child->second.pid);
        return b.reason;
    }

    std::string describe(const Evaluation& e) const {
        std::string text;
        // The age in seconds changes every second; a change of state is what counts.
        for (const auto& b : e.blockers) {
            auto child = children_.find(b.volume.id.value);
            text += fmt::format("{}|{}|{}|{};", b.volume.id.value, b.locked, b.owner ? b.owner->pid : 0,
                                child != children_.end() ? child->second.pid : 0);
        }
        return text;
    }

    void report_exceptions(const Evaluation& e) {
        for (const auto& x : e.excepted) {
            if (warned_.insert(x.volume.id.value).second)
                logger_.log(LogLevel::warning, fmt::format("{}: {}", x.volume.root.string(), x.reason));
        }
    }

    struct Child {
        pid_t pid = 0;
        UniqueFd pidfd;
        std::string root;
    };

    struct Retry {
        Clock::time_point not_before;
        std::chrono::milliseconds delay{0};
    };

    void launch_rebuilds(const Evaluation& e) {
        std::string program = locate_vrebuild(options_.vrebuild);
        auto now = Clock::now();
        for (const auto& b : e.blockers) {
            if (children_.contains(b.volume.id.value)) continue;
            // Someone else took the lock since our vrebuild gave up: its
            // unlock is the event to rebuild on, not our back-off.
            if (b.locked) {
                retries_.erase(b.volume.id.value);
                continue;
            }
            if (auto retry = retries_.find(b.volume.id.value); retry != retries_.end() && now < retry->second.not_before) continue;
            std::vector<std::string> args{program};
            if (!host_.source.empty()) args.insert(args.end(), {"--config", host_.source.string()});
            args.insert(args.end(), {"--lock-dir", host_.lock_dir.string(), b.volume.root.string()});
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            pid_t pid = ::fork();
            if (pid < 0) {
                logger_.log(LogLevel::error, fmt::format("cannot start vrebuild: {}", std::strerror(errno)));
                return;
            }
            if (pid == 0) {
                // Shutdown is when updates must happen: normal priority. Its
                // report goes to our stderr, never into our --json.
                ::dup2(2, 1);
                ::execvp(argv[0], argv.data());
                ::_exit(127);
            }
            ++launches_[b.volume.id.value];
            Child child;
            child.pid = pid;
            child.pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
            child.root = b.volume.root.string();
            children_.emplace(b.volume.id.value, std::move(child));
        }
    }

    void reap_children() {
        for (auto it = children_.begin(); it != children_.end();) {
            int status = 0;
            if (::waitpid(it->second.pid, &status, WNOHANG) == it->second.pid) {
                int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                const std::string& id = it->first;
                if (code == 0) {
                    retries_.erase(id);
                } else {
                    // No progress: relaunching at once would spin (a rebuilder
                    // that keeps answering 75 burned 25 launches in 2 s).
                    auto& retry = retries_[id];
                    retry.delay = retry.delay.count() == 0 ? first_retry_delay : std::min(retry.delay * 2, max_retry_delay);
                    retry.not_before = Clock::now() + retry.delay;
                    // "Try later" is not an attempt that failed: it must not
                    // use up max_attempts and make the gate stop waiting.
                    if (code == status_tempfail || code == status_reboot_in_progress) --launches_[id];
                    logger_.log(LogLevel::warning,
                                fmt::format("vrebuild (pid {}) exited with status {}; {} is retried in {} s at the earliest",
                                            it->second.pid, code, it->second.root, retry.delay.count() / 1000));
                }
                it = children_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void wait_for_change(int inotify_fd, const Evaluation& e, Clock::time_point deadline) {
        std::vector<struct pollfd> fds;
        if (inotify_fd >= 0) fds.push_back({inotify_fd, POLLIN, 0});
        std::vector<UniqueFd> owner_fds;
        for (const auto& b : e.blockers) {
            if (!b.owner) continue;
            UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, b.owner->pid, 0)));
            if (fd) {
                fds.push_back({fd.get(), POLLIN, 0});
                owner_fds.push_back(std::move(fd));
            }
        }
        for (const auto& [id, child] : children_)
            if (child.pidfd) fds.push_back({child.pidfd.get(), POLLIN, 0});
        // Wake at the bound, or when a backed-off volume may be relaunched,
        // whichever is first.
        auto now = Clock::now();
        auto wake = deadline;
        for (const auto& [id, retry] : retries_)
            if (retry.not_before > now && !children_.contains(id)) wake = std::min(wake, retry.not_before);
        int timeout = -1;
        if (wake != Clock::time_point::max()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
            timeout = static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
        }
        if (::poll(fds.data(), fds.size(), timeout) > 0 && inotify_fd >= 0 && (fds[0].revents & POLLIN)) {
            char buffer[4096];
            while (::read(inotify_fd, buffer, sizeof buffer) > 0) {
            }
        }
    }

    // At the bound: the shutdown goes on without us, so the rebuilds we
    // started must not keep writing to file systems about to be unmounted.
    // SIGTERM makes vrebuild stop its rebuilder's group, release its volume
    // lock and count nothing; we wait for that, within stop_grace. Returns
    // the end of the final line: "; stopped 1 vrebuild (pid 4250)" or
    // "; ... still running: pid 4250".
    std::string stop_children() {
        if (children_.empty()) return "";
        std::string pids;
        for (const auto& [id, child] : children_) {
            ::kill(child.pid, SIGTERM);
            pids += fmt::format("{}{}", pids.empty() ? "" : ", ", child.pid);
        }
        std::size_t count = children_.size();
        logger_.log(LogLevel::warning, fmt::format("stopping the vrebuild{} it started (pid {}): sent SIGTERM",
                                                   count == 1 ? "" : "s", pids));
        auto until = Clock::now() + stop_grace;
        for (;;) {
            for (auto it = children_.begin(); it != children_.end();) {
                int status = 0;
                if (::waitpid(it->second.pid, &status, WNOHANG) == it->second.pid) it = children_.erase(it);
                else ++it;
            }
            auto now = Clock::now();
            if (children_.empty() || now >= until) break;
            std::vector<struct pollfd> fds;
            for (const auto& [id, child] : children_)
                if (child.pidfd) fds.push_back({child.pidfd.get(), POLLIN, 0});
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
            // Without pidfds (old kernels) fall back to a short timed wait.
            int timeout = fds.empty() ? static_cast<int>(std::min<long long>(left, 100)) : static_cast<int>(left);
            ::poll(fds.data(), fds.size(), timeout);
        }
        if (children_.empty()) return fmt::format("; stopped {} vrebuild{} (pid {})", count, count == 1 ? "" : "s", pids);
        std::string running;
        for (const auto& [id, child] : children_) running += fmt::format("{}{}", running.empty() ? "" : ", ", child.pid);
        return fmt::format("; sent SIGTERM to {} vrebuild{}, still running: pid {}", count, count == 1 ? "" : "s", running);
    }

    void print_result(bool granted, pid_t owner, double waited, const Evaluation& e) {
        if (!options_.json) return;
        nlohmann::json blockers = nlohmann::json::array(), excepted = nlohmann::json::array();
        for (const auto& b : e.blockers)
            blockers.push_back({{"root", b.volume.root.string()}, {"id", b.volume.id.value}, {"reason", describe_blocker(b)},
                                {"locked", b.locked}});
        for (const auto& x : e.excepted)
            excepted.push_back({{"root", x.volume.root.string()}, {"id", x.volume.id.value}, {"reason", x.reason}});
        ExitCode code = granted ? ExitCode::ok : ExitCode::busy;
        out_ << json_text(nlohmann::json({{"version", 1}, {"granted", granted}, {"already", false},
                                          {"owner", granted ? nlohmann::json(owner) : nlohmann::json(nullptr)},
                                          {"waited_seconds", waited}, {"blockers", blockers}, {"excepted", excepted},
                                          {"exit_code", to_int(code)}}), 2)
             << '\n';
    }

    const GateOptions& options_;
    const HostConfig& host_;
    const LockDir& dir_;
    std::ostream& out_;
    std::ostream& err_;
    Logger logger_;
    std::map<std::string, Child> children_;
    std::map<std::string, int> launches_;
    std::map<std::string, Retry> retries_;
    std::set<std::string> warned_;
};

ExitCode gate_status(const GateOptions& options, const HostConfig& host, const LockDir& dir, std::ostream& out) {
    std::optional<LockRecord> held;
    if (dir.exists()) {
        auto file = dir.reboot_file();
        if (file) {
            auto record = file->read();
            if (record && record->held()) held = *record;
        }
    }
    Evaluation e = evaluate(host, dir, {});
    if (options.json) {
        nlohmann::json holder = nullptr;
        if (held) {
            auto owner = held->live_owner();
            holder = {{"pid", owner ? owner->pid : 0}, {"command", held->command}, {"since", format_utc(held->since)}};
        }
        nlohmann::json blockers = nlohmann::json::array(), excepted = nlohmann::json::array();
        for (const auto& b : e.blockers)
            blockers.push_back({{"root", b.volume.root.string()}, {"id", b.volume.id.value}, {"reason", b.reason}, {"locked", b.locked}});
        for (const auto& x : e.excepted)
            excepted.push_back({{"root", x.volume.root.string()}, {"id", x.volume.id.value}, {"reason", x.reason}});
        out << json_text(nlohmann::json({{"version", 1}, {"held", held.has_value()}, {"holder", holder}, {"blockers", blockers},
                                         {"excepted", excepted}}), 2)
            << '\n';
    } else if (!options.quiet) {
        if (held) {
            auto owner = held->live_owner();
            out << escape_for_terminal(fmt::format("reboot lock held by pid {} ({}) since {}", owner ? owner->pid : 0,
                                                   held->command, format_clock(held->since)))
                << '\n';
        } else if (e.blockers.empty()) {
            out << "reboot lock free; nothing blocks it\n";
        } else {
            out << "reboot lock free; blocked by:\n";
            for (const auto& b : e.blockers) out << escape_for_terminal(fmt::format("  {}: {}", b.volume.root.string(), b.reason)) << '\n';
        }
        for (const auto& x : e.excepted) out << escape_for_terminal(fmt::format("  excepted: {}: {}", x.volume.root.string(), x.reason)) << '\n';
    }
    return held || e.blockers.empty() ? ExitCode::ok : ExitCode::busy;
}

ExitCode gate_release(const LockDir& dir, bool quiet, std::ostream& err) {
    auto file = dir.reboot_file();
    if (!file) throw Failure(file.problem());
    std::optional<ProcessIdentity> was;
    auto updated = file->update([&](LockRecord& record) {
        was = record.live_owner();
        if (!was) return false;
        record.owners.clear();
        return true;
    });
    if (!updated) throw Failure(updated.problem());
    if (!was) {
        if (!quiet) err << "vrebootgate: the reboot lock is not held\n";
        return ExitCode::not_locked;
    }
    if (!quiet) err << escape_for_terminal(fmt::format("vrebootgate: released the reboot lock held by pid {}", was->pid)) << '\n';
    return ExitCode::ok;
}

}  // namespace

ExitCode run_vrebootgate(const GateOptions& options, std::ostream& out, std::ostream& err) {
    HostConfig host = load_host_config(options.host).or_throw();
    bool writes = !options.status;
    auto dir = LockDir::open(host.lock_dir, writes ? LockDirAccess::write : LockDirAccess::read);
    if (!dir) throw Failure(dir.problem());
    if (options.status) return gate_status(options, host, *dir, out);
    // Opening the lock directory for writing already required root, or
    // ownership of a sandbox lock directory (DESIGN §4).
    if (options.release) return gate_release(*dir, options.quiet, err);
    Gate gate(options, host, *dir, out, err);
    return gate.run();
}

}  // namespace volwatch
