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

// vrebuild's answers that ask for a later retry rather than count a failure.
constexpr int status_tempfail = 75;
constexpr int status_reboot_in_progress = 5;

double unix_now() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

using Blocker = GateBlocker;
using Evaluation = GateEvaluation;

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
        if (!volume_record->held()) continue;
        // Any live volume lock blocks, watched volume or not (a script may
        // lock a volume vwatch does not follow).
        Volume volume;
        volume.root = volume_record->volume.empty() ? id : volume_record->volume;
        volume.id = VolumeId{id};
        auto holder = volume_record->live_owner();
        std::string what = volume_record->purpose.empty() ? volume_record->command : volume_record->purpose;
        answer.held.push_back({volume,
                               fmt::format("{} running, pid {}, {:.0f} s", what, holder ? holder->pid : 0,
                                           std::max(0.0, unix_now() - volume_record->since)),
                               holder, true});
    }
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

// The gate's world on this machine: the lock directory, discovered volumes,
// forked vrebuilds followed by pidfds, poll(2) for sleeping.
class SystemGateWorld final : public GateWorld {
public:
    SystemGateWorld(const GateOptions& options, const HostConfig& host, const LockDir& dir, ProcessIdentity owner)
        : options_(options), host_(host), dir_(dir), owner_(std::move(owner)),
          inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
        if (inotify_) {
            ::inotify_add_watch(inotify_.get(), (dir_.path() / "volumes").c_str(),
                                IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_ATTRIB | IN_MOVED_TO);
            ::inotify_add_watch(inotify_.get(), dir_.path().c_str(), IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE);
        }
    }

    std::optional<pid_t> reboot_holder() override {
        auto holder = reboot_lock_owner(dir_);
        if (!holder) throw Failure(holder.problem());
        if (!*holder) return std::nullopt;
        return (*holder)->pid;
    }

    GateEvaluation evaluate(const std::map<std::string, int>& launches) override { return volwatch::evaluate(host_, dir_, launches); }

    GrantAnswer try_grant() override {
        std::string command = process_command(owner_.pid);
        auto granted = volwatch::try_grant(dir_, owner_, command.empty() ? process_command(::getpid()) : command);
        if (!granted) throw Failure(granted.problem());
        return std::move(*granted);
    }

    Result<pid_t> launch(const Volume& volume) override {
        std::vector<std::string> args{locate_vrebuild(options_.vrebuild)};
        if (!host_.source.empty()) args.insert(args.end(), {"--config", host_.source.string()});
        args.insert(args.end(), {"--lock-dir", host_.lock_dir.string(), volume.root.string()});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid = ::fork();
        if (pid < 0) return Problem{ExitCode::internal, fmt::format("cannot start vrebuild: {}", std::strerror(errno))};
        if (pid == 0) {
            // Shutdown is when updates must happen: normal priority. Its
            // report goes to our stderr, never into our --json.
            ::dup2(2, 1);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        children_.emplace(pid, UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))));
        return pid;
    }

    std::vector<std::pair<pid_t, int>> reap() override {
        std::vector<std::pair<pid_t, int>> ended;
        for (auto it = children_.begin(); it != children_.end();) {
            int status = 0;
            if (::waitpid(it->first, &status, WNOHANG) == it->first) {
                ended.emplace_back(it->first, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                it = children_.erase(it);
            } else {
                ++it;
            }
        }
        return ended;
    }

    void wait(const GateEvaluation& e, Clock::TimePoint wake) override {
        std::vector<struct pollfd> fds;
        if (inotify_) fds.push_back({inotify_.get(), POLLIN, 0});
        std::vector<UniqueFd> owner_fds;
        for (const auto& b : e.blockers) {
            if (!b.owner) continue;
            UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, b.owner->pid, 0)));
            if (fd) {
                fds.push_back({fd.get(), POLLIN, 0});
                owner_fds.push_back(std::move(fd));
            }
        }
        for (const auto& [pid, pidfd] : children_)
            if (pidfd) fds.push_back({pidfd.get(), POLLIN, 0});
        int timeout = -1;
        if (wake != Clock::TimePoint::max()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wake - clock_.now()).count() + 1;
            timeout = static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
        }
        if (::poll(fds.data(), fds.size(), timeout) > 0 && inotify_ && (fds[0].revents & POLLIN)) {
            char buffer[4096];
            while (::read(inotify_.get(), buffer, sizeof buffer) > 0) {
            }
        }
    }

    std::vector<pid_t> stop(const std::vector<pid_t>& pids, Clock::Duration grace) override {
        for (pid_t pid : pids) ::kill(pid, SIGTERM);
        auto until = clock_.now() + grace;
        std::set<pid_t> running(pids.begin(), pids.end());
        for (;;) {
            for (auto it = running.begin(); it != running.end();) {
                int status = 0;
                if (::waitpid(*it, &status, WNOHANG) == *it) {
                    children_.erase(*it);
                    it = running.erase(it);
                } else {
                    ++it;
                }
            }
            auto now = clock_.now();
            if (running.empty() || now >= until) break;
            std::vector<struct pollfd> fds;
            for (pid_t pid : running)
                if (auto child = children_.find(pid); child != children_.end() && child->second)
                    fds.push_back({child->second.get(), POLLIN, 0});
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
            // Without pidfds (old kernels) fall back to a short timed wait.
            int timeout = fds.empty() ? static_cast<int>(std::min<long long>(left, 100)) : static_cast<int>(left);
            ::poll(fds.data(), fds.size(), timeout);
        }
        return {running.begin(), running.end()};
    }

private:
    const GateOptions& options_;
    const HostConfig& host_;
    const LockDir& dir_;
    ProcessIdentity owner_;
    UniqueFd inotify_;
    SteadyClock clock_;
    std::map<pid_t, UniqueFd> children_;  // pidfds of the vrebuilds we started
};

class Gate {
public:
    Gate(const GateOptions& options, pid_t owner, GateWorld& world, const Clock& clock, Logger& logger, std::ostream& out,
         std::ostream& err)
        : options_(options), owner_(owner), world_(world), clock_(clock), logger_(logger), out_(out), err_(err) {}

    ExitCode run() {
        auto started = clock_.now();
        auto deadline = options_.wait ? (*options_.wait == Duration::max() ? Clock::TimePoint::max() : started + *options_.wait)
                                      : started;
        bool delayed = false;
        std::vector<std::string> delayed_by;  // the volumes that blocked when the delay began
        std::string last_progress;
        for (;;) {
            reap_children();
            // A reboot already under way is the answer whatever the volumes
            // say (as the seed's _kextmanager_lock_reboot): the shutdown that
            // holds the lock went through the gate, so there is nothing left
            // to wait for or rebuild.
            if (auto holder = world_.reboot_holder()) return already(holder);
            Evaluation now = world_.evaluate(launches_);
            report_exceptions(now);
            if (now.blockers.empty()) {
                GrantAnswer granted = world_.try_grant();
                if (granted.outcome == GrantOutcome::already) return already(world_.reboot_holder());
                if (granted.outcome == GrantOutcome::granted) {
                    double waited = std::chrono::duration<double>(clock_.now() - started).count();
                    if (delayed)
                        logger_.event(LogLevel::notice, log_event::shutdown_delay_ends,
                                      fmt::format("shutdown delay ends after {:.1f} s", waited),
                                      EventFields::about(delayed_by).with_status("granted").with_pid(owner_).with_seconds(waited));
                    logger_.log(LogLevel::info, fmt::format("reboot lock granted to pid {}", owner_));
                    print_result(true, waited, now);
                    return ExitCode::ok;
                }
                // Volume locks the scan did not show (taken meanwhile, or on a
                // volume it does not follow) block like any other: wait for them.
                for (auto& blocker : granted.held) now.blockers.push_back(std::move(blocker));
            }
            if (!options_.wait) {
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::warning, fmt::format("{}: busy: {}", b.volume.root.string(), b.reason));
                print_result(false, 0, now);
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
                              EventFields::about(delayed_by).with_status("waiting").with_pid(owner_));
            }
            launch_rebuilds(now);
            std::string progress = describe(now);
            if (progress != last_progress) {
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::info, fmt::format("waiting for {}: {}", b.volume.root.string(), describe_blocker(b)));
                last_progress = progress;
            }
            if (clock_.now() >= deadline) {
                double waited = std::chrono::duration<double>(clock_.now() - started).count();
                for (const auto& b : now.blockers)
                    logger_.log(LogLevel::error, fmt::format("{}: still blocking after {:.1f} s: {}", b.volume.root.string(), waited,
                                                             describe_blocker(b)));
                std::string stopped = stop_children();
                std::vector<std::string> blocking;
                for (const auto& b : now.blockers) blocking.push_back(b.volume.root.string());
                logger_.event(LogLevel::notice, log_event::shutdown_delay_ends,
                              fmt::format("shutdown delay ends after {:.1f} s without the reboot lock{}", waited, stopped),
                              EventFields::about(blocking).with_status("timed-out").with_pid(owner_).with_seconds(waited));
                print_result(false, waited, now);
                return ExitCode::busy;
            }
            // Wake at the bound, or when a backed-off volume may be
            // relaunched, whichever is first.
            auto wake = deadline;
            auto moment = clock_.now();
            for (const auto& [id, retry] : retries_)
                if (retry.not_before > moment && !children_.contains(id)) wake = std::min(wake, retry.not_before);
            world_.wait(now, wake);
        }
    }

private:
    ExitCode already(std::optional<pid_t> holder) {
        std::string who = holder ? fmt::format(" (held by pid {})", *holder) : "";
        if (!options_.quiet) err_ << "vrebootgate: reboot already in progress" << who << "; proceed\n";
        if (options_.json)
            out_ << json_text(nlohmann::json({{"version", 1}, {"granted", false}, {"already", true},
                                              {"owner", holder ? nlohmann::json(*holder) : nlohmann::json(nullptr)},
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
        std::string root;
    };

    struct Retry {
        Clock::TimePoint not_before;
        std::chrono::milliseconds delay{0};
    };

    void launch_rebuilds(const Evaluation& e) {
        auto now = clock_.now();
        for (const auto& b : e.blockers) {
            if (children_.contains(b.volume.id.value)) continue;
            // Someone else took the lock since our vrebuild gave up: its
            // unlock is the event to rebuild on, not our back-off.
            if (b.locked) {
                retries_.erase(b.volume.id.value);
                continue;
            }
            if (auto retry = retries_.find(b.volume.id.value); retry != retries_.end() && now < retry->second.not_before) continue;
            auto pid = world_.launch(b.volume);
            if (!pid) {
                logger_.log(LogLevel::error, pid.problem().message);
                return;
            }
            ++launches_[b.volume.id.value];
            children_.emplace(b.volume.id.value, Child{*pid, b.volume.root.string()});
        }
    }

    void reap_children() {
        for (auto [pid, code] : world_.reap()) {
            auto it = std::find_if(children_.begin(), children_.end(), [pid = pid](const auto& c) { return c.second.pid == pid; });
            if (it == children_.end()) continue;
            const std::string& id = it->first;
            if (code == 0) {
                retries_.erase(id);
            } else {
                // No progress: relaunching at once would spin (a rebuilder
                // that keeps answering 75 burned 25 launches in 2 s).
                auto& retry = retries_[id];
                retry.delay = retry.delay.count() == 0 ? gate_first_retry_delay : std::min(retry.delay * 2, gate_max_retry_delay);
                retry.not_before = clock_.now() + retry.delay;
                // "Try later" is not an attempt that failed: it must not
                // use up max_attempts and make the gate stop waiting.
                if (code == status_tempfail || code == status_reboot_in_progress) --launches_[id];
                logger_.log(LogLevel::warning,
                            fmt::format("vrebuild (pid {}) exited with status {}; {} is retried in {} s at the earliest",
                                        pid, code, it->second.root, retry.delay.count() / 1000));
            }
            children_.erase(it);
        }
    }

    // At the bound: the shutdown goes on without us, so the rebuilds we
    // started must not keep writing to file systems about to be unmounted.
    // SIGTERM makes vrebuild stop its rebuilder's group, release its volume
    // lock and count nothing; we wait for that, within gate_stop_grace. Returns
    // the end of the final line: "; stopped 1 vrebuild (pid 4250)" or
    // "; ... still running: pid 4250".
    std::string stop_children() {
        if (children_.empty()) return "";
        std::vector<pid_t> started;
        std::string pids;
        for (const auto& [id, child] : children_) {
            started.push_back(child.pid);
            pids += fmt::format("{}{}", pids.empty() ? "" : ", ", child.pid);
        }
        std::size_t count = started.size();
        logger_.log(LogLevel::warning, fmt::format("stopping the vrebuild{} it started (pid {}): sent SIGTERM",
                                                   count == 1 ? "" : "s", pids));
        std::vector<pid_t> still = world_.stop(started, gate_stop_grace);
        children_.clear();
        if (still.empty()) return fmt::format("; stopped {} vrebuild{} (pid {})", count, count == 1 ? "" : "s", pids);
        std::string running;
        for (pid_t pid : still) running += fmt::format("{}{}", running.empty() ? "" : ", ", pid);
        return fmt::format("; sent SIGTERM to {} vrebuild{}, still running: pid {}", count, count == 1 ? "" : "s", running);
    }

    void print_result(bool granted, double waited, const Evaluation& e) {
        if (!options_.json) return;
        nlohmann::json blockers = nlohmann::json::array(), excepted = nlohmann::json::array();
        for (const auto& b : e.blockers)
            blockers.push_back({{"root", b.volume.root.string()}, {"id", b.volume.id.value}, {"reason", describe_blocker(b)},
                                {"locked", b.locked}});
        for (const auto& x : e.excepted)
            excepted.push_back({{"root", x.volume.root.string()}, {"id", x.volume.id.value}, {"reason", x.reason}});
        ExitCode code = granted ? ExitCode::ok : ExitCode::busy;
        out_ << json_text(nlohmann::json({{"version", 1}, {"granted", granted}, {"already", false},
                                          {"owner", granted ? nlohmann::json(owner_) : nlohmann::json(nullptr)},
                                          {"waited_seconds", waited}, {"blockers", blockers}, {"excepted", excepted},
                                          {"exit_code", to_int(code)}}), 2)
             << '\n';
    }

    const GateOptions& options_;
    pid_t owner_;
    GateWorld& world_;
    const Clock& clock_;
    Logger& logger_;
    std::ostream& out_;
    std::ostream& err_;
    std::map<std::string, Child> children_;  // by volume id
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
    auto owner_pid = options.owner.value_or(::getppid());
    auto owner = identify_process(owner_pid);
    if (!owner) throw Failure(ExitCode::usage, fmt::format("--owner {}: no such process", owner_pid));
    SystemGateWorld world(options, host, *dir, *owner);
    SteadyClock clock;
    Logger logger("vrebootgate", options.quiet ? LogLevel::warning : LogLevel::info, LogTarget::automatic);
    return run_gate(options, owner->pid, world, clock, logger, out, err);
}

ExitCode run_gate(const GateOptions& options, pid_t owner, GateWorld& world, const Clock& clock, Logger& log, std::ostream& out,
                  std::ostream& err) {
    Gate gate(options, owner, world, clock, log, out, err);
    return gate.run();
}

}  // namespace volwatch
