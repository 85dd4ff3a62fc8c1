#include "volwatch/vrebuild.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <csignal>
#include <ostream>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/fd.hpp"
#include "volwatch/helper_device.hpp"
#include "volwatch/helper_sync.hpp"
#include "volwatch/lockdir.hpp"
#include "volwatch/output.hpp"
#include "volwatch/process.hpp"
#include "volwatch/runner.hpp"
#include "volwatch/safe_path.hpp"
#include "volwatch/staleness.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {
namespace {

// The status vunlock and the accounting understand: 0 success, 75 "try
// later" (not a failure), anything else a failed update.
constexpr int status_tempfail = 75;

struct CacheOutcome {
    std::string name;
    std::string action;   // rebuilt, clean, failed, timed-out, tempfail, interrupted, would-rebuild
    std::string reason;   // why it was rebuilt, or why it failed
    std::vector<std::string> argv;
    int status = 0;
    std::chrono::milliseconds elapsed{0};
    int runs = 0;          // how often the rebuilder was started (2: a settle run)
    bool settled = true;   // false when the sources changed again during the settle run
};

struct VolumeOutcome {
    Volume volume;
    ExitCode code = ExitCode::ok;
    std::string problem;
    std::vector<CacheOutcome> caches;
    std::vector<HelperSyncResult> helpers;
};

// Precedence when several volumes end differently: the most serious wins.
int severity(ExitCode code) {
    switch (code) {
    case ExitCode::ok: return 0;
    case ExitCode::busy: return 1;
    case ExitCode::stale: return 2;
    case ExitCode::reboot_in_progress: return 3;
    case ExitCode::bad_volume_config: return 4;
    case ExitCode::unknown_volume: return 5;
    case ExitCode::permission: return 6;
    case ExitCode::bad_host_config: return 7;
    default: return 8;
    }
}

// The caches this run did not bring up to date, with why, for holding back
// the helper files that depend on them.
FailedCaches failed_caches(const std::vector<CacheOutcome>& caches) {
    FailedCaches failed;
    for (const auto& c : caches) {
        if (c.action == "failed") failed.emplace(c.name, fmt::format("failed ({})", c.reason));
        else if (c.action == "timed-out") failed.emplace(c.name, c.reason);  // "timed out after ..."
        else if (c.action == "tempfail") failed.emplace(c.name, fmt::format("was deferred ({})", c.reason));
    }
    return failed;
}

std::string shell_words(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& arg : argv) {
        if (!out.empty()) out += ' ';
        bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("@%+=:,./-_{}", c) != nullptr;
        });
        if (plain) {
            out += arg;
        } else {
            out += '\'';
            for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
            out += '\'';
        }
    }
    return out;
}

class Rebuild {
public:
    Rebuild(const VrebuildOptions& options, const HostConfig& host, std::ostream& err, int interrupt_fd)
        : options_(options), host_(host), err_(err), interrupt_fd_(interrupt_fd) {}

    /// True once SIGINT, SIGTERM or SIGHUP arrived; later steps are skipped.
    bool interrupted() {
        if (!interrupted_ && interrupt_fd_ >= 0) {
            struct signalfd_siginfo info {};
            if (::read(interrupt_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
                interrupted_ = true;
                signal_name_ = ::strsignal(static_cast<int>(info.ssi_signo));
            }
        }
        return interrupted_;
    }

    VolumeOutcome run(const Volume& volume, bool named) {
        named_ = named;
        VolumeOutcome outcome;
        outcome.volume = volume;
        std::string name = volume.root.string();
        UniqueFd root(::open(volume.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!root) return fail(outcome, ExitCode::unknown_volume, fmt::format("{}: {}", name, std::strerror(errno)));
        // Read the config once before locking, so a broken one costs no lock
        // and no failure count; it is read again under the lock.
        auto config = load_volume_config(root.get(), volume.root, host_);
        if (!config) return fail(outcome, config.problem().code, config.problem().message);
        if (!options_.cache.empty() && std::none_of(config->caches.begin(), config->caches.end(),
                                                    [&](const CacheSpec& c) { return c.name == options_.cache; })) {
            // With --all, volumes without that cache are simply not concerned.
            if (options_.all && !named_) {
                outcome.problem = "no such cache";
                outcome.code = ExitCode::ok;
                return outcome;
            }
            return fail(outcome, ExitCode::usage, fmt::format("{}: --cache {}: the volume has no such cache", name, options_.cache));
        }
        if (options_.dry_run) {
            plan(root.get(), volume, *config, outcome);
            // The plan already shows a failure: say so in the exit status too.
            bool doomed = std::any_of(outcome.caches.begin(), outcome.caches.end(), [](const CacheOutcome& c) { return c.action == "failed"; }) ||
                          std::any_of(outcome.helpers.begin(), outcome.helpers.end(),
                                      [](const HelperSyncResult& h) { return h.outcome == HelperOutcome::failed; });
            if (doomed) outcome.code = ExitCode::stale;
            return outcome;
        }

        auto dir = LockDir::open(host_.lock_dir, LockDirAccess::write);
        if (!dir) return fail(outcome, dir.problem().code, fmt::format("{}: {}", name, dir.problem().message));
        auto self = identify_process(::getpid());
        if (!self) return fail(outcome, ExitCode::internal, "cannot identify this process");
        AcquireRequest request;
        request.volume = name;
        request.owners = {*self};
        request.command = process_command(::getpid());
        request.purpose = "vrebuild";
        request.wait = options_.wait;
        request.limits = lock_limits(host_);
        request.interrupt_fd = interrupt_fd_;
        auto log = [&](const std::string& line) { err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}", name, line)) << '\n'; };
        auto grant = acquire_volume_lock(*dir, volume.id.value, request, log);
        if (!grant) return fail(outcome, grant.problem().code, fmt::format("{}: {}", name, grant.problem().message));
        lock_dir_ = &*dir;
        self_ = *self;

        int status = 0;
        auto locked_config = load_volume_config(root.get(), volume.root, host_);
        if (!locked_config) {
            fail(outcome, locked_config.problem().code, locked_config.problem().message);
            status = status_tempfail;  // the config changed under us: not a failed update
        } else {
            status = update(root.get(), volume, *locked_config, outcome);
        }
        ReleaseRequest release;
        release.requesters = {*self};
        release.status = status;
        release.limits = request.limits;
        auto released = release_volume_lock(*dir, volume.id.value, release, log);
        if (!released) log(fmt::format("cannot release the lock: {}", released.problem().message));
        lock_dir_ = nullptr;
        return outcome;
    }

private:
    VolumeOutcome& fail(VolumeOutcome& outcome, ExitCode code, std::string message) {
        outcome.code = code;
        outcome.problem = std::move(message);
        err_ << "vrebuild: " << escape_for_terminal(outcome.problem) << '\n';
        return outcome;
    }

    // A whole-disk lock held by another process (udev probing, a partitioning
    // tool) is waited for within --wait, else default_device_lock_wait.
    std::chrono::steady_clock::time_point device_lock_deadline() const {
        auto now = std::chrono::steady_clock::now();
        if (!options_.wait) return now + default_device_lock_wait;
        if (*options_.wait >= std::chrono::duration_cast<Duration>(std::chrono::hours(24 * 365)))
            return std::chrono::steady_clock::time_point::max();
        return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*options_.wait);
    }

    bool selected(const CacheSpec& cache) const { return options_.cache.empty() || options_.cache == cache.name; }

    std::vector<std::string> argv_for(const Volume& volume, const CacheSpec& cache) const {
        const Rebuilder& rebuilder = host_.rebuilders.at(cache.rebuild);
        return expand_argv(rebuilder.argv, {{"root", volume.root.string()},
                                            {"volume", volume.id.value},
                                            {"cache", cache.name},
                                            {"product", (volume.root / cache.product).string()}});
    }

    void plan(int root_fd, const Volume& volume, const VolumeConfig& config, VolumeOutcome& outcome) {
        if (!options_.helpers_only) {
            for (const auto& cache : config.caches) {
                if (!selected(cache)) continue;
                CacheOutcome c{cache.name, "clean", "", argv_for(volume, cache), 0, {}};
                CacheVerdict verdict = check_cache(root_fd, cache, host_);
                if (verdict.state == CacheState::error) {
                    c.action = "failed";
                    c.reason = verdict.reason;
                } else if (options_.force || verdict.state == CacheState::stale) {
                    c.action = "would-rebuild";
                    c.reason = options_.force ? "forced" : verdict.reason;
                }
                outcome.caches.push_back(std::move(c));
            }
        }
        bool rebuilds = std::any_of(outcome.caches.begin(), outcome.caches.end(),
                                    [](const CacheOutcome& c) { return c.action == "would-rebuild"; });
        HelperSyncOptions sync{options_.force, true, held_back_files(config, failed_caches(outcome.caches))};
        for (const auto& target : helper_targets_for(volume, host_)) {
            HelperSyncResult result = sync_helper_target(root_fd, volume, config, target, sync, device_lock_deadline());
            // A helper file the rebuild is about to produce cannot be measured yet.
            if (result.outcome == HelperOutcome::failed && rebuilds && result.message.find("helper file ") == 0) {
                result.outcome = HelperOutcome::would_update;
                result.message = "would copy the helper files after the rebuild";
                result.files = config.helper_files;
            } else if (rebuilds && result.outcome == HelperOutcome::unchanged) {
                result.outcome = HelperOutcome::would_update;
                result.message = "would copy rebuilt products if they changed";
            }
            outcome.helpers.push_back(std::move(result));
        }
    }

    // Rebuilds and syncs under the lock; returns the status to unlock with.
    int update(int root_fd, const Volume& volume, const VolumeConfig& config, VolumeOutcome& outcome) {
        std::string name = volume.root.string();
        bool failed = false, tempfail = false;
        if (!options_.helpers_only) {
            for (const auto& cache : config.caches) {
                if (!selected(cache) || interrupted()) continue;
                CacheOutcome c = rebuild_cache(root_fd, volume, cache);
                failed |= c.action == "failed" || c.action == "timed-out";
                tempfail |= c.action == "tempfail";
                outcome.caches.push_back(std::move(c));
            }
        }
        // Helpers carry copies of products: a file that depends on a cache
        // that failed keeps its last good copy (never a new kernel with an
        // old initramfs); the others are still brought up to date.
        if (!interrupted()) {
            HelperSyncOptions sync{options_.force, false, held_back_files(config, failed_caches(outcome.caches))};
            for (const auto& target : helper_targets_for(volume, host_)) {
                if (interrupted()) break;
                HelperSyncResult result = sync_helper_target(root_fd, volume, config, target, sync, device_lock_deadline());
                std::string helper = target.path.string();
                if (result.outcome == HelperOutcome::failed) {
                    failed = true;
                    err_ << escape_for_terminal(fmt::format("vrebuild: {}: helper {}: update failed: {}", name, helper, result.message)) << '\n';
                } else if (result.outcome == HelperOutcome::updated) {
                    err_ << escape_for_terminal(fmt::format("vrebuild: {}: helper {}: helper updated: {}", name, helper, result.message)) << '\n';
                } else if (result.outcome == HelperOutcome::held_back) {
                    err_ << escape_for_terminal(fmt::format("vrebuild: {}: helper {}: held back: {}", name, helper, result.message)) << '\n';
                }
                for (const auto& held : result.held_back)
                    err_ << escape_for_terminal(fmt::format("vrebuild: {}: helper {}: held back {}: {}", name, helper, held.file, held.reason)) << '\n';
                outcome.helpers.push_back(std::move(result));
            }
        }
        if (interrupted()) {
            // Stopped by an administrator or the init system: not the
            // rebuilder's failure, so "try again later" for the accounting.
            err_ << escape_for_terminal(fmt::format("vrebuild: {}: interrupted ({}); the lock is released and nothing is counted", name, signal_name_)) << '\n';
            outcome.code = ExitCode::busy;
            outcome.problem = fmt::format("interrupted ({})", signal_name_);
            return status_tempfail;
        }
        if (failed) {
            outcome.code = ExitCode::stale;
            return 1;
        }
        if (tempfail) {
            outcome.code = ExitCode::busy;
            return status_tempfail;
        }
        return 0;
    }

    CacheOutcome rebuild_cache(int root_fd, const Volume& volume, const CacheSpec& cache) {
        std::string name = volume.root.string();
        CacheOutcome c{cache.name, "clean", "", argv_for(volume, cache), 0, {}};
        CacheVerdict verdict = check_cache(root_fd, cache, host_);
        if (verdict.state == CacheState::error) {
            c.action = "failed";
            c.reason = verdict.reason;
            err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: update failed: {}", name, cache.name, verdict.reason)) << '\n';
            return c;
        }
        if (!options_.force && verdict.state == CacheState::clean) return c;
        c.reason = options_.force ? "forced" : verdict.reason;
        auto failed = [&](std::string reason) {
            c.action = "failed";
            c.reason = std::move(reason);
            err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: update failed: {}", name, cache.name, c.reason)) << '\n';
            return c;
        };
        auto record = begin_build_record(root_fd, cache, host_);
        if (!record) return failed(record.problem().message);
        err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: rebuilding ({}): {}", name, cache.name, c.reason, shell_words(c.argv))) << '\n';
        if (!run_once(root_fd, volume, cache, c)) return c;

        // Settle (DESIGN §5): a rebuilder that writes beside its sources
        // (ldconfig's soname links) changed them after the recorded start.
        // One more run sees everything up to its own start; when it leaves
        // the sources as it found them, its start is the build's, so the
        // first run's writes are older than it. Changes during the second
        // run, by anyone, still leave the cache stale: never more than one
        // extra run, and never a change lost.
        SourceState before_second;
        auto second = begin_build_record(root_fd, cache, host_, 0, &before_second);
        if (!second) return failed(second.problem().message);
        int runs = 1;
        if (second->source_digest != record->source_digest) {
            err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: the sources changed during the run ({}); running it once more to settle",
                                                    name, cache.name, describe_change(before_second, *record)))
                 << '\n';
            std::chrono::milliseconds first_elapsed = c.elapsed;
            bool ok = run_once(root_fd, volume, cache, c);
            c.elapsed += first_elapsed;
            if (!ok) return c;
            runs = 2;
            auto after = scan_sources(root_fd, cache);
            if (!after) return failed(after.problem().message);
            c.settled = after->digest == second->source_digest;
            if (!c.settled)
                err_ << escape_for_terminal(fmt::format(
                            "vrebuild: {}: {}: the sources changed again during the second run ({}); the cache stays stale "
                            "(if the rebuilder writes them itself, declare them in the cache's outputs)",
                            name, cache.name, describe_change(*after, *second)))
                     << '\n';
            record = std::move(second);
        }
        if (auto written = write_build_record(root_fd, cache.name, *record); !written) return failed(written.problem().message);
        c.action = "rebuilt";
        err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: cache updated in {}{}", name, cache.name,
                                                format_duration(std::chrono::duration_cast<Duration>(c.elapsed)),
                                                runs == 2 ? " (two runs)" : ""))
             << '\n';
        return c;
    }

    // Runs the cache's rebuilder once; true when it succeeded and the product
    // exists. Otherwise `c` says what went wrong (already reported).
    bool run_once(int root_fd, const Volume& volume, const CacheSpec& cache, CacheOutcome& c) {
        std::string name = volume.root.string();
        const Rebuilder& rebuilder = host_.rebuilders.at(cache.rebuild);
        RunSpec spec;
        spec.argv = c.argv;
        spec.cwd = volume.root;
        spec.timeout = rebuilder.timeout;
        spec.low_priority = options_.low_priority;
        spec.prefix = fmt::format("{}: ", cache.name);
        spec.output_fd = STDERR_FILENO;
        spec.interrupt_fd = interrupt_fd_;
        // The rebuilder runs in its own process group, so it outlives a kill -9
        // of vrebuild: as an owner of the lock (as vlock's CMD is), it keeps the
        // volume locked until it ends, and no second rebuild can race it.
        std::optional<ProcessIdentity> rebuilder_process;
        if (lock_dir_ != nullptr && self_) {
            spec.on_start = [&](pid_t pid) {
                rebuilder_process = identify_process(pid);
                auto added = rebuilder_process ? add_lock_owner(*lock_dir_, volume.id.value, *self_, *rebuilder_process)
                                       : Result<LockRecord>(Problem{ExitCode::internal, "cannot identify it"});
                if (!added) {
                    err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: warning: the rebuilder (pid {}) does not hold the lock itself: {}",
                                                            name, cache.name, pid, added.problem().message))
                         << '\n';
                    rebuilder_process.reset();
                }
            };
        }
        err_.flush();
        ++c.runs;
        auto ran = run_command(spec);
        if (rebuilder_process) (void)remove_lock_owner(*lock_dir_, volume.id.value, *rebuilder_process);
        if (!ran) {
            c.action = "failed";
            c.reason = ran.problem().message;
            err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: update failed: {}", name, cache.name, c.reason)) << '\n';
            return false;
        }
        c.status = ran->status;
        c.elapsed = ran->elapsed;
        if (ran->interrupted) {
            c.action = "interrupted";
            c.reason = "stopped by a signal; the product is as the rebuilder left it";
            return false;
        }
        if (ran->timed_out) {
            c.action = "timed-out";
            c.reason = fmt::format("timed out after {}", format_duration(rebuilder.timeout));
        } else if (ran->status == status_tempfail) {
            c.action = "tempfail";
            c.reason = "the rebuilder asked to be retried later (exit 75)";
        } else if (ran->status != 0) {
            c.action = "failed";
            c.reason = fmt::format("the rebuilder exited with status {}", ran->status);
        } else if (!open_beneath(root_fd, cache.product, O_PATH)) {
            c.action = "failed";
            c.reason = fmt::format("the rebuilder succeeded but {} does not exist", cache.product);
        } else {
            return true;
        }
        err_ << escape_for_terminal(fmt::format("vrebuild: {}: {}: {}: {}", name, cache.name,
                                                c.action == "tempfail" ? "update deferred" : "update failed", c.reason))
             << '\n';
        return false;
    }

    const VrebuildOptions& options_;
    const HostConfig& host_;
    std::ostream& err_;
    int interrupt_fd_;
    bool interrupted_ = false;
    bool named_ = false;
    const LockDir* lock_dir_ = nullptr;      // while this run holds the volume lock
    std::optional<ProcessIdentity> self_;
    std::string signal_name_;
};

void print_human(const std::vector<VolumeOutcome>& outcomes, std::ostream& out) {
    const bool dry_run = true;
    for (const auto& o : outcomes) {
        if (!o.problem.empty() && o.caches.empty() && o.helpers.empty()) continue;
        out << escape_for_terminal(fmt::format("{}: plan (--dry-run, nothing changed)", o.volume.root.string())) << '\n';
        for (const auto& c : o.caches) {
            out << fmt::format("  {}: {}", escape_for_terminal(c.name), c.action);
            if (c.action == "would-rebuild") out << escape_for_terminal(fmt::format(" ({}): {}", c.reason, shell_words(c.argv)));
            else if (!c.reason.empty() && c.action != "rebuilt") out << ": " << escape_for_terminal(c.reason);
            else if (c.action == "rebuilt") out << fmt::format(" in {}", format_duration(std::chrono::duration_cast<Duration>(c.elapsed)));
            out << '\n';
        }
        for (const auto& h : o.helpers) {
            out << fmt::format("  helper {}: {}", escape_for_terminal(h.target.string()), to_string(h.outcome));
            if (!h.message.empty()) out << ": " << escape_for_terminal(h.message);
            if (dry_run && !h.files.empty()) {
                std::string files;
                for (const auto& f : h.files) files += (files.empty() ? "" : ", ") + f;
                out << " (" << files << ")";
            }
            out << '\n';
            for (const auto& held : h.held_back)
                out << escape_for_terminal(fmt::format("    held back {}: {}", held.file, held.reason)) << '\n';
        }
    }
}

struct ArgumentError {
    std::string argument;
    std::string message;
};

void print_json(const std::vector<VolumeOutcome>& outcomes, const std::vector<ArgumentError>& errors, ExitCode code,
                bool dry_run, std::ostream& out) {
    nlohmann::json volumes = nlohmann::json::array();
    for (const auto& o : outcomes) {
        nlohmann::json caches = nlohmann::json::array();
        for (const auto& c : o.caches)
            caches.push_back({{"name", c.name}, {"action", c.action}, {"reason", c.reason}, {"argv", c.argv},
                              {"status", c.status}, {"seconds", static_cast<double>(c.elapsed.count()) / 1000.0},
                              {"runs", c.runs}, {"settled", c.settled}});
        nlohmann::json helpers = nlohmann::json::array();
        for (const auto& h : o.helpers) {
            nlohmann::json held = nlohmann::json::array();
            for (const auto& f : h.held_back) held.push_back({{"file", f.file}, {"caches", f.caches}, {"reason", f.reason}});
            helpers.push_back({{"target", h.target.string()}, {"outcome", std::string(to_string(h.outcome))},
                               {"message", h.message}, {"generation", h.generation}, {"bytes", h.bytes},
                               {"files", h.files}, {"held_back", held},
                               {"seconds", static_cast<double>(h.elapsed.count()) / 1000.0}});
        }
        volumes.push_back({{"root", o.volume.root.string()}, {"id", o.volume.id.value},
                           {"exit_code", to_int(o.code)}, {"exit_status", std::string(exit_code_name(o.code))},
                           {"problem", o.problem.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.problem)},
                           {"caches", caches}, {"helpers", helpers}});
    }
    nlohmann::json error_list = nlohmann::json::array();
    for (const auto& e : errors) error_list.push_back({{"argument", e.argument}, {"message", e.message}});
    nlohmann::json doc = {{"version", 1}, {"dry_run", dry_run}, {"volumes", volumes}, {"errors", error_list},
                          {"exit_code", to_int(code)}, {"exit_status", std::string(exit_code_name(code))}};
    out << json_text(doc, 2) << '\n';
}

}  // namespace

ExitCode run_vrebuild(const VrebuildOptions& options, std::ostream& out, std::ostream& err) {
    auto host = load_host_config(options.host);
    if (!host) {
        err << "vrebuild: " << escape_for_terminal(host.problem().message) << '\n';
        return host.problem().code;
    }
    ProcMountTable mounts;
    std::vector<Volume> volumes;
    ExitCode code = ExitCode::ok;
    auto worse = [&](ExitCode candidate) {
        if (severity(candidate) > severity(code)) code = candidate;
    };
    std::vector<VolumeOutcome> outcomes;
    std::vector<ArgumentError> errors;
    std::vector<bool> named;
    if (options.all) {
        for (auto& volume : discover_volumes(*host, mounts))
            if (volume.mounted) {
                volumes.push_back(std::move(volume));
                named.push_back(false);
            }
    }
    for (const auto& argument : options.volumes) {
        auto volume = resolve_volume(argument, *host, mounts);
        if (!volume) {
            err << "vrebuild: " << escape_for_terminal(volume.problem().message) << '\n';
            errors.push_back({argument, volume.problem().message});
            worse(volume.problem().code);
            continue;
        }
        auto known = std::find_if(volumes.begin(), volumes.end(), [&](const Volume& v) { return v.id == volume->id; });
        if (known == volumes.end()) {
            volumes.push_back(*volume);
            named.push_back(true);
        } else {
            named[static_cast<std::size_t>(known - volumes.begin())] = true;
        }
    }
    // SIGINT, SIGTERM and SIGHUP stop the running rebuilder's whole group and
    // release the lock, instead of orphaning a build that then races the next one.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop_signals, sig);
    UniqueFd interrupt;
    if (!options.dry_run && ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr) == 0)
        interrupt = UniqueFd(::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
    Rebuild rebuild(options, *host, err, interrupt.get());
    bool any_cache = options.cache.empty();
    for (std::size_t i = 0; i < volumes.size(); ++i) {
        if (rebuild.interrupted()) break;
        outcomes.push_back(rebuild.run(volumes[i], named[i]));
        any_cache |= outcomes.back().problem != "no such cache";
        worse(outcomes.back().code);
    }
    if (!any_cache && !volumes.empty()) {
        err << escape_for_terminal(fmt::format("vrebuild: --cache {}: no volume has such a cache", options.cache)) << '\n';
        worse(ExitCode::usage);
    }
    if (rebuild.interrupted()) worse(ExitCode::busy);
    // Without --dry-run the progress lines on stderr are the human report.
    if (options.json) print_json(outcomes, errors, code, options.dry_run, out);
    else if (options.dry_run) print_human(outcomes, out);
    return code;
}

}  // namespace volwatch
