// The vwatch daemon: one epoll loop, no threads. Every callback names its
// volume by a VolumeToken (id and generation), never by pointer, so a timer,
// watch event or child result that arrives after its volume vanished or was
// re-read finds nothing and is dropped with a debug line (seed 003).
#include "volwatch/vwatch.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/defer.hpp"
#include "volwatch/event_loop.hpp"
#include "volwatch/generation.hpp"
#include "volwatch/lockdir.hpp"
#include "volwatch/mount_monitor.hpp"
#include "volwatch/mountinfo.hpp"
#include "volwatch/notify.hpp"
#include "volwatch/process.hpp"
#include "volwatch/report.hpp"
#include "volwatch/settle.hpp"
#include "volwatch/volume.hpp"
#include "volwatch/watcher.hpp"

extern char** environ;

namespace volwatch {
namespace {

namespace fs = std::filesystem;
using Clock = EventLoop::Clock;
using std::chrono::milliseconds;

// A storm of mount events costs at most one mount-table re-read per
// interval; the interval doubles while re-reads find nothing that matters
// (bind mounts, tmpfs, ...), up to the maximum, and starts over after a quiet spell.
constexpr milliseconds mount_rescan_interval{100};
constexpr milliseconds max_mount_rescan_interval{1000};
// Mount events come in bursts (containers starting, a storm of bind mounts).
// With a monitor that queues them (fanotify), an event is read at once; one
// that follows within twice this interval of the previous read is part of a
// burst: the daemon stops listening this long and then reads the ones queued
// meanwhile in one go, so that a burst costs one wake-up per interval instead
// of one per mount. Nothing is lost: the kernel keeps the events (an overflow
// asks for a re-read).
constexpr milliseconds mount_event_batch{500};
// While a defer_while file is held by a process we could not name, look again this often.
constexpr milliseconds defer_recheck_interval{5000};
constexpr milliseconds max_retry_backoff = std::chrono::hours(1);

// A mount table read once, so discovery does not read /proc again.
class CachedMountTable final : public MountTable {
public:
    explicit CachedMountTable(std::vector<MountEntry> entries) : entries_(std::move(entries)) {}
    [[nodiscard]] std::vector<MountEntry> read() const override { return entries_; }

private:
    std::vector<MountEntry> entries_;
};

// A descriptor watched by the loop for as long as this object lives.
class LoopFd {
public:
    LoopFd() = default;
    LoopFd(EventLoop& loop, UniqueFd fd) : loop_(&loop), fd_(std::move(fd)) {}
    LoopFd(LoopFd&& other) noexcept : loop_(other.loop_), fd_(std::move(other.fd_)) {}
    LoopFd& operator=(LoopFd&& other) noexcept {
        if (this != &other) {
            reset();
            loop_ = other.loop_;
            fd_ = std::move(other.fd_);
        }
        return *this;
    }
    LoopFd(const LoopFd&) = delete;
    LoopFd& operator=(const LoopFd&) = delete;
    ~LoopFd() { reset(); }
    void reset() {
        if (loop_ != nullptr && fd_) loop_->unwatch(fd_.get());
        fd_.reset();
    }
    [[nodiscard]] int get() const { return fd_.get(); }

private:
    EventLoop* loop_ = nullptr;
    UniqueFd fd_;
};

enum class Mode { watching, config_error, absent };

struct WatchedVolume {
    explicit WatchedVolume(EventLoop& event_loop, Volume v, const HostConfig& host)
        : loop(&event_loop), volume(std::move(v)), settle(host.settle, host.settle_max) {}
    ~WatchedVolume() { cancel_timers(); }
    WatchedVolume(const WatchedVolume&) = delete;
    WatchedVolume& operator=(const WatchedVolume&) = delete;

    void cancel_timers() {
        for (EventLoop::TimerId* timer : {&settle_timer, &retry_timer, &periodic_timer, &defer_timer}) {
            loop->cancel_timer(*timer);
            *timer = 0;
        }
    }

    EventLoop* loop;
    Volume volume;
    Mode mode = Mode::absent;
    std::string config_digest;        // what the watch plan was built from
    std::string problem;              // the config problem last logged
    std::uint64_t mount_id = 0;       // the unique id of its mount, 0 if unknown
    std::size_t caches = 0;
    WatchKey key = 0;
    bool degraded = false;            // some paths unwatched: periodic re-checks
    SettleTimer settle;
    EventLoop::TimerId settle_timer = 0;
    EventLoop::TimerId retry_timer = 0;
    EventLoop::TimerId periodic_timer = 0;
    EventLoop::TimerId defer_timer = 0;
    bool dirty = false;               // changes not checked yet
    bool config_dirty = false;
    bool changed_during_rebuild = false;
    bool stale = false;               // the last check found work to do
    bool locked = false;
    bool check_after_unlock = false;
    bool gave_up_logged = false;
    bool deferring = false;
    int failures = 0;
    int attempts = 0;
    std::map<pid_t, LoopFd> owners;   // pidfds of live lock owners
    std::vector<LoopFd> deferrers;    // pidfds of defer_while holders
    UniqueFd hold;                    // open while busy: umount fails with EBUSY
    bool hold_logged = false;         // the hold was announced (not just changes pending)
};

struct Child {
    VolumeToken token;
    fs::path root;
    Clock::time_point started;
    LoopFd pidfd;
};

std::string describe_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
    return fmt::format("ended with wait status {}", status);
}

std::string seconds_text(Clock::duration d) {
    return fmt::format("{:.1f}s", std::chrono::duration<double>(d).count());
}

std::string config_fingerprint(const VolumeConfig& config, const HostConfig& host) {
    std::string text;
    for (const auto& cache : config.caches) text += config_digest(cache, host) + ";";
    for (const auto& file : config.helper_files) text += file + ";";
    return text;
}

class Daemon {
public:
    Daemon(const VwatchOptions& options, HostConfig host)
        : options_(options), host_(std::move(host)), log_("vwatch", options.log_level, options.log_target),
          notifier_(ServiceNotifier::from_environment()) {}

    ExitCode run() {
        vrebuild_ = locate_vrebuild(options_.vrebuild);
        setup_signals();
        open_lock_dir();
        make_watcher();
        setup_mount_monitor();
        if (host_.startup_delay.count() > 0) {
            startup_timer_ = loop_.add_timer(host_.startup_delay, [this] { end_startup_delay(); });
            log_.log(LogLevel::info, fmt::format("no automatic rebuilds for {} (start-up delay)", format_duration(host_.startup_delay)));
        }
        rescan(true);
        (void)notifier_.send(fmt::format("READY=1\nMAINPID={}", ::getpid()));
        log_.log(LogLevel::info, fmt::format("ready: watching {} volume{} with {}; following mounts through {}", volumes_.size(),
                                             volumes_.size() == 1 ? "" : "s", watcher_->name(), mounts_->name()));
        update_status();
        while (!loop_.stopping()) {
            loop_.run_once(std::nullopt);
            update_status();
        }
        std::size_t running = children_.size();
        log_.log(LogLevel::info, running == 0 ? std::string("exiting")
                                              : fmt::format("exiting; {} rebuild{} left running", running, running == 1 ? "" : "s"));
        (void)notifier_.send("STOPPING=1");
        return ExitCode::ok;
    }

private:
    // ---- set-up

    void setup_signals() {
        sigset_t set;
        sigemptyset(&set);
        for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, sig);
        if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0)
            throw Failure(ExitCode::internal, fmt::format("sigprocmask: {}", std::strerror(errno)));
        ::signal(SIGPIPE, SIG_IGN);
        signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!signal_fd_) throw Failure(ExitCode::internal, fmt::format("signalfd: {}", std::strerror(errno)));
        loop_.watch(signal_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_signal(); });
    }

    void open_lock_dir() {
        lock_dir_.reset();
        lock_watch_.reset();
        auto dir = LockDir::open(host_.lock_dir, LockDirAccess::write);
        if (!dir) throw Failure(dir.problem());
        lock_dir_.emplace(std::move(*dir));
        // Lock records change whenever a lock is taken or released: watch them,
        // so owners' pidfds are picked up and unlocks lead to a check.
        UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (!fd) throw Failure(ExitCode::internal, fmt::format("inotify_init1: {}", std::strerror(errno)));
        fs::path volumes = host_.lock_dir / "volumes";
        if (::inotify_add_watch(fd.get(), volumes.c_str(), IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0)
            throw Failure(ExitCode::internal, fmt::format("{}: cannot watch: {}", volumes.string(), std::strerror(errno)));
        int raw = fd.get();
        lock_watch_ = LoopFd(loop_, std::move(fd));
        loop_.watch(raw, EPOLLIN, [this](std::uint32_t) { on_lock_events(); });
    }

    void make_watcher() {
        WatchBackend want = options_.backend.value_or(host_.watch_backend);
        std::string why_not;
        if (want != WatchBackend::inotify) {
            auto fan = make_fanotify_watcher();
            if (fan) {
                install_watcher(std::move(*fan));
                return;
            }
            if (want == WatchBackend::fanotify) throw Failure(fan.problem());
            why_not = fan.problem().message;
        }
        install_watcher(make_inotify_watcher());
        if (!why_not.empty()) log_.log(LogLevel::info, fmt::format("using inotify: {}", why_not));
    }

    void install_watcher(std::unique_ptr<Watcher> watcher) {
        if (watcher_) loop_.unwatch(watcher_->fd());
        watcher_ = std::move(watcher);
        loop_.watch(watcher_->fd(), EPOLLIN, [this](std::uint32_t) { on_watch_events(); });
    }

    void setup_mount_monitor() {
        std::string why_not;
        mounts_ = make_mount_monitor(::geteuid() == 0, &why_not);
        if (!why_not.empty()) log_.log(LogLevel::debug, fmt::format("following mounts through {}: {}", mounts_->name(), why_not));
        listen_for_mounts();
    }

    void listen_for_mounts() {
        loop_.watch(mounts_->fd(), mounts_->poll_events(), [this](std::uint32_t) { on_mount_events(); });
    }

    // Reads what is pending; within a burst, then rests for mount_event_batch
    // (see there): listening again reports at once whatever came meanwhile.
    void on_mount_events() {
        if (mounts_->drain(mount_interest())) schedule_rescan();
        Clock::time_point now = Clock::now();
        // Events found as a rest ends come one interval after the read before
        // it: still the same burst.
        bool burst = now - last_mount_read_ <= 2 * mount_event_batch;
        last_mount_read_ = now;
        if (!burst || !mounts_->queues_events()) return;
        loop_.unwatch(mounts_->fd());
        loop_.add_timer(mount_event_batch, [this] { listen_for_mounts(); });
    }

    MountInterest mount_interest() const {
        MountInterest interest;
        volumes_.for_each([&](const std::string&, const WatchedVolume& vol) {
            if (vol.mount_id != 0) interest.mount_ids.insert(vol.mount_id);
            interest.roots.insert(vol.volume.root.string());
        });
        return interest;
    }

    // ---- signals

    void on_signal() {
        signalfd_siginfo info{};
        while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            int sig = static_cast<int>(info.ssi_signo);
            if (sig == SIGHUP) {
                reload();
            } else {
                log_.log(LogLevel::info, fmt::format("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
                loop_.stop();
            }
        }
    }

    void reload() {
        log_.log(LogLevel::info, "SIGHUP: re-reading the configs and re-scanning mounts");
        auto fresh = load_host_config(options_.host);
        if (!fresh) {
            log_.log(LogLevel::error, fmt::format("{}; keeping the previous host config", fresh.problem().message));
            return;
        }
        HostConfig old = std::move(host_);
        host_ = apply_overrides(std::move(*fresh), options_);
        std::vector<std::string> ids;
        volumes_.for_each([&](const std::string& id, const WatchedVolume&) { ids.push_back(id); });
        for (const auto& id : ids) disappear(id, "re-reading");
        if (old.lock_dir != host_.lock_dir) open_lock_dir();
        if (old.watch_backend != host_.watch_backend && !options_.backend) make_watcher();
        rescan(true);
    }

    // ---- volumes coming and going

    void schedule_rescan() {
        if (rescan_timer_ != 0) return;
        Clock::time_point now = Clock::now();
        if (now - last_rescan_ > 2 * max_mount_rescan_interval) rescan_interval_ = mount_rescan_interval;
        Clock::time_point at = std::max(now, last_rescan_ + rescan_interval_);
        rescan_timer_ = loop_.add_timer(at, [this] {
            rescan_timer_ = 0;
            rescan(false);
        });
    }

    // Re-reads the mount table and reconciles the volume set with it. Without
    // `force`, nothing happens unless the mounts that can be volumes changed.
    void rescan(bool force) {
        last_rescan_ = Clock::now();
        std::vector<MountEntry> entries = ProcMountTable().read();
        std::string fingerprint;
        for (const auto& entry : entries)
            if (entry.root == "/" && mount_ineligibility(entry).empty())
                fingerprint += fmt::format("{}:{}:{}:{}\n", entry.mount_id, entry.device, entry.mount_point, entry.options);
        if (!force && fingerprint == mount_fingerprint_ && mount_ids_ == mount_ids(entries)) {
            rescan_interval_ = std::min(rescan_interval_ * 2, max_mount_rescan_interval);
            return;
        }
        rescan_interval_ = mount_rescan_interval;
        mount_fingerprint_ = std::move(fingerprint);
        mount_ids_ = mount_ids(entries);

        std::vector<Volume> found = discover_volumes(host_, CachedMountTable(std::move(entries)));
        std::vector<std::string> gone;
        volumes_.for_each([&](const std::string& id, const WatchedVolume& vol) {
            auto it = std::find_if(found.begin(), found.end(), [&](const Volume& v) { return v.id.value == id; });
            if (it == found.end() || it->root != vol.volume.root || it->device != vol.volume.device || it->mounted != vol.volume.mounted)
                gone.push_back(id);
        });
        for (const auto& id : gone) disappear(id, "unmounted or moved");
        for (Volume& volume : found)
            if (volumes_.find(volume.id.value) == nullptr) appear(std::move(volume));
    }

    // The identities of the mounts over eligible volume roots, so that a
    // mount hiding one (or its removal) counts as a change.
    std::string mount_ids(const std::vector<MountEntry>& entries) const {
        std::string ids;
        volumes_.for_each([&](const std::string&, const WatchedVolume& vol) {
            for (const auto& entry : entries)
                if (entry.mount_point == vol.volume.root.string()) ids += fmt::format("{} ", entry.mount_id);
        });
        return ids;
    }

    void appear(Volume volume) {
        std::string id = volume.id.value;
        auto vol = std::make_unique<WatchedVolume>(loop_, std::move(volume), host_);
        if (vol->volume.mounted) vol->mount_id = unique_mount_id(vol->volume.root);
        VolumeToken token = volumes_.put(id, std::move(vol));
        configure(token);
        WatchedVolume* v = volumes_.find(token);
        if (v != nullptr && v->mode == Mode::watching) note_change(token, WatchRole::source, "appeared");
    }

    void disappear(const std::string& id, std::string_view why) {
        WatchedVolume* vol = volumes_.find(id);
        if (vol == nullptr) return;
        if (vol->mode == Mode::watching)
            log_.log(LogLevel::info, fmt::format("{}: stopped watching ({})", vol->volume.root.string(), why));
        else
            log_.log(LogLevel::debug, fmt::format("{}: forgotten ({})", vol->volume.root.string(), why));
        if (vol->key != 0) {
            watcher_->remove(vol->key);
            keys_.erase(vol->key);
        }
        volumes_.erase(id);  // cancels its timers, closes its pidfds and hold
    }

    // Loads the volume config and (re)registers the watches under a new key.
    void configure(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr) return;
        const std::string root = vol->volume.root.string();
        if (vol->key != 0) {
            watcher_->remove(vol->key);
            keys_.erase(vol->key);
            vol->key = 0;
        }
        WatchPlan plan;
        Mode previous = vol->mode;
        std::string digest;
        if (!vol->volume.mounted) {
            vol->mode = Mode::absent;
            plan = config_only_plan(vol->volume.root);
            log_.log(LogLevel::info, fmt::format("{}: does not exist yet; watching for it", root));
        } else {
            auto config = load_config(*vol);
            if (config) {
                vol->mode = Mode::watching;
                vol->caches = config->caches.size();
                digest = config_fingerprint(*config, host_);
                plan = watch_plan(vol->volume.root, *config);
                vol->problem.clear();
            } else {
                bool missing = config.problem().code == ExitCode::unknown_volume;
                vol->mode = missing ? Mode::absent : Mode::config_error;
                plan = config_only_plan(vol->volume.root);
                if (config.problem().message != vol->problem) {
                    vol->problem = config.problem().message;
                    log_.log(missing ? LogLevel::info : LogLevel::warning,
                             fmt::format("{}: not watching: {}", root, config.problem().message));
                }
            }
        }
        vol->config_digest = digest;
        vol->key = next_key_++;
        keys_[vol->key] = token;
        auto setup = watcher_->add(vol->key, plan);
        if (!setup) {
            log_.log(LogLevel::error, fmt::format("{}: cannot watch: {}; re-checking every {} instead", root,
                                                  setup.problem().message, format_duration(host_.settle_max)));
            degrade(token);
        } else if (!setup->complete) {
            log_.log(LogLevel::error, fmt::format("{}: {}: some paths are not watched; re-checking every {} instead", root,
                                                  setup->problem, format_duration(host_.settle_max)));
            degrade(token);
        }
        if (vol->mode == Mode::watching) {
            log_.log(LogLevel::info, fmt::format("{}: {} ({}, {} cache{}, {} {} watch{})", root,
                                                 previous == Mode::watching ? "re-read its config" : "watching",
                                                 vol->volume.id.value, vol->caches, vol->caches == 1 ? "" : "s",
                                                 setup ? setup->watches : 0, watcher_->name(),
                                                 setup && setup->watches == 1 ? "" : "es"));
            refresh_lock(token);
        } else {
            release_hold(*vol);
        }
    }

    Result<VolumeConfig> load_config(const WatchedVolume& vol) {
        UniqueFd root(::open(vol.volume.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!root) return Problem{ExitCode::unknown_volume, fmt::format("{}: {}", vol.volume.root.string(), std::strerror(errno))};
        return load_volume_config(root.get(), vol.volume.root, host_);
    }

    void degrade(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr || vol->periodic_timer != 0) return;
        vol->degraded = true;
        vol->periodic_timer = loop_.add_timer(host_.settle_max, [this, token] {
            WatchedVolume* v = find(token, "periodic re-check");
            if (v == nullptr) return;
            v->periodic_timer = 0;
            note_change(token, WatchRole::source, "periodic re-check");
            degrade(token);
        });
    }

    // The volume `token` names if it is still current; a late arrival for a
    // vanished or re-read volume is dropped here.
    WatchedVolume* find(const VolumeToken& token, std::string_view what) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr && log_.enabled(LogLevel::debug)) {
            std::uint64_t now = volumes_.generation(token.id);
            log_.log(LogLevel::debug, now == 0 ? fmt::format("dropped {} for {}: the volume is gone (generation {})", what,
                                                             token.id, token.generation)
                                               : fmt::format("dropped {} for {}: generation {} is stale, now {}", what,
                                                             token.id, token.generation, now));
        }
        return vol;
    }

    // ---- changes

    void on_watch_events() {
        events_.clear();
        watcher_->read_events(events_);
        for (const WatchEvent& event : events_) {
            if (event.kind == WatchEventKind::overflow && event.key == 0) {
                log_.log(LogLevel::warning, fmt::format("{} event queue overflowed; re-checking every volume", watcher_->name()));
                std::vector<VolumeToken> all;
                volumes_.for_each([&](const std::string& id, const WatchedVolume&) { all.push_back({id, volumes_.generation(id)}); });
                for (const auto& token : all) note_change(token, WatchRole::source, "queue overflow");
                continue;
            }
            auto key = keys_.find(event.key);
            if (key == keys_.end()) {
                log_.log(LogLevel::debug, fmt::format("dropped {} event for watch key {}: no longer registered",
                                                      to_string(event.role), event.key));
                continue;
            }
            VolumeToken token = key->second;
            WatchedVolume* vol = find(token, "a watch event");
            if (vol == nullptr) continue;
            switch (event.kind) {
            case WatchEventKind::unmounted:
                log_.log(LogLevel::debug, fmt::format("{}: file system unmounted", vol->volume.root.string()));
                schedule_rescan();
                break;
            case WatchEventKind::limit_reached:
                log_.log(LogLevel::error, fmt::format("{}: {}; re-checking every {} instead", vol->volume.root.string(),
                                                      event.path, format_duration(host_.settle_max)));
                degrade(token);
                note_change(token, event.role, "watch limit");
                break;
            case WatchEventKind::overflow:
                log_.log(LogLevel::warning, fmt::format("{}: events were lost; re-checking it", vol->volume.root.string()));
                note_change(token, WatchRole::source, "overflow");
                break;
            case WatchEventKind::changed:
                note_change(token, event.role, event.path);
                break;
            }
        }
    }

    bool rebuilding(const std::string& id) const {
        return std::any_of(children_.begin(), children_.end(), [&](const auto& c) { return c.second.token.id == id; });
    }

    void note_change(const VolumeToken& token, WatchRole role, std::string_view what) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr) return;
        if (vol->mode != Mode::watching && role != WatchRole::config) return;
        // A rebuild (ours or anyone's under the lock) writes products and
        // helpers: those writes are its work, not new changes.
        if ((role == WatchRole::product || role == WatchRole::helper) && (rebuilding(token.id) || vol->locked)) {
            log_.log(LogLevel::debug, fmt::format("{}: {} {} changed during a rebuild; ignored", vol->volume.root.string(),
                                                  to_string(role), what));
            // Someone else's rebuild: look once it unlocks (ours is checked when it ends).
            if (vol->locked && !rebuilding(token.id)) vol->check_after_unlock = true;
            return;
        }
        if (role == WatchRole::config) vol->config_dirty = true;
        vol->dirty = true;
        if (rebuilding(token.id)) vol->changed_during_rebuild = true;
        if (vol->mode == Mode::watching) hold(*vol, "changes pending");
        Clock::time_point due = vol->settle.note_change(Clock::now());
        loop_.cancel_timer(vol->settle_timer);
        vol->settle_timer = loop_.add_timer(due, [this, token] { on_settled(token); });
        if (log_.enabled(LogLevel::debug))
            log_.log(LogLevel::debug, fmt::format("{}: {} changed ({}); check in {}ms", vol->volume.root.string(), to_string(role), what,
                                                  std::chrono::duration_cast<milliseconds>(due - Clock::now()).count()));
    }

    void on_settled(const VolumeToken& token) {
        WatchedVolume* vol = find(token, "a settle timer");
        if (vol == nullptr) return;
        vol->settle_timer = 0;
        vol->settle.clear();
        if (vol->config_dirty || vol->mode != Mode::watching) {
            vol->config_dirty = false;
            if (!reload_config(token)) return;
        }
        check(VolumeToken{token.id, volumes_.generation(token.id)}, true);
    }

    // Re-reads the volume config after a change to it; re-registers the
    // watches (a new generation) when it changed. False when the volume is
    // not to be checked now.
    bool reload_config(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr) return false;
        if (!vol->volume.mounted || ::access(vol->volume.root.c_str(), F_OK) != 0) {
            // An explicit root that came or went: discovery decides what it is now.
            rescan(true);
            return false;
        }
        auto config = load_config(*vol);
        if (config && vol->mode == Mode::watching && config_fingerprint(*config, host_) == vol->config_digest) return true;
        Mode before = vol->mode;
        VolumeToken fresh = volumes_.bump(token.id);
        vol->cancel_timers();
        // Process handles are re-registered under the new generation (the
        // owners by refresh_lock in configure, the deferral by the next check).
        vol->owners.clear();
        vol->deferrers.clear();
        configure(fresh);
        vol = volumes_.find(fresh);
        if (vol == nullptr) return false;
        if (vol->mode == Mode::watching && before != Mode::watching)
            log_.log(LogLevel::info, fmt::format("{}: config is valid again; resumed watching", vol->volume.root.string()));
        if (vol->mode == Mode::watching) {
            vol->dirty = true;
            return true;
        }
        return false;
    }

    // ---- checks and rebuilds

    void check(const VolumeToken& token, bool may_launch) {
        WatchedVolume* vol = find(token, "a check");
        if (vol == nullptr) return;
        const std::string root = vol->volume.root.string();
        if (startup_timer_ != 0) {
            log_.log(LogLevel::debug, fmt::format("{}: check postponed until the start-up delay ends", root));
            return;
        }
        if (rebuilding(token.id)) {
            vol->changed_during_rebuild = true;
            return;
        }
        vol->dirty = false;
        struct stat st {};
        if (::stat(vol->volume.root.c_str(), &st) != 0 || (vol->volume.device != 0 && st.st_dev != vol->volume.device)) {
            // Vanished or lazily unmounted: never rebuild against it.
            log_.log(LogLevel::debug, fmt::format("{}: gone; not checking it", root));
            rescan(true);
            return;
        }
        VolumeReport report = inspect_volume(vol->volume, host_, InspectOptions{.locks = lock_dir_ ? &*lock_dir_ : nullptr});
        vol = volumes_.find(token);  // inspect does not touch the table, but be strict
        if (vol == nullptr) return;
        vol->failures = report.failures;
        vol->attempts = report.attempts;
        if (report.state == VolumeState::absent) {
            log_.log(LogLevel::debug, fmt::format("{}: {}; re-scanning", root, report.problem));
            rescan(true);
            return;
        }
        if (report.state == VolumeState::config_error && !report.problem.empty() && report.caches.empty()) {
            vol->config_dirty = true;
            reload_config(token);
            return;
        }
        if (report.lock) {
            vol->locked = true;
            vol->check_after_unlock = true;
            hold(*vol, "locked");
            log_.log(LogLevel::info, fmt::format("{}: locked by {}; checking again after it unlocks", root,
                                                 describe_process(report.lock->pid, report.lock->command)));
            refresh_lock(token);
            return;
        }
        if (!report.needs_update()) {
            if (vol->stale) log_.log(LogLevel::info, fmt::format("{}: clean", root));
            else log_.log(LogLevel::debug, fmt::format("{}: clean", root));
            vol->stale = false;
            vol->gave_up_logged = false;
            release_hold(*vol);
            return;
        }
        vol->stale = true;
        std::string reason = first_reason(report);
        if (report.gave_up) {
            if (!vol->gave_up_logged) {
                log_.event(LogLevel::warning, log_event::gave_up,
                           fmt::format("{}: gave up on volume: {} consecutive failures, {} attempts (limits {}, {}); no automatic "
                                       "rebuilds until a success or an explicit vrebuild; still stale: {}",
                                       root, report.failures, report.attempts, host_.max_failures, host_.max_attempts, reason),
                           EventFields::about(root, token.id).with_status("gave-up"));
                vol->gave_up_logged = true;
            }
            release_hold(*vol);
            return;
        }
        hold(*vol, "stale");
        if (!may_launch) {
            log_.log(LogLevel::warning, fmt::format("{}: still stale after an update: {}", root, reason));
            return;
        }
        if (deferred(token)) return;
        launch(token, reason);
    }

    static std::string first_reason(const VolumeReport& report) {
        for (const auto& cache : report.caches)
            if (cache.state != CacheState::clean) return fmt::format("{}: {}", cache.name, cache.reason);
        for (const auto& helper : report.helpers)
            if (helper.state != CacheState::clean) return fmt::format("helper {}: {}", helper.target.string(), helper.reason);
        return "stale";
    }

    // True (and a wake-up arranged) while a defer_while file is held.
    bool deferred(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        vol->deferrers.clear();
        loop_.cancel_timer(vol->defer_timer);
        vol->defer_timer = 0;
        auto holder = find_defer_holder(host_.defer_while, ::getpid());
        if (!holder) {
            if (vol->deferring) log_.log(LogLevel::info, fmt::format("{}: deferral over", vol->volume.root.string()));
            vol->deferring = false;
            return false;
        }
        std::string pids;
        for (pid_t pid : holder->pids) pids += fmt::format("{}{}", pids.empty() ? "" : ", ", pid);
        // Announced once per deferral; the re-checks while it lasts are debug.
        log_.log(vol->deferrers.empty() && vol->defer_timer == 0 && !vol->deferring ? LogLevel::info : LogLevel::debug,
                 fmt::format("{}: rebuild deferred: {} is held{}", vol->volume.root.string(), holder->path.string(),
                             pids.empty() ? "" : fmt::format(" by pid {}", pids)));
        vol->deferring = true;
        bool watched_all = !holder->pids.empty();
        for (pid_t pid : holder->pids) {
            auto who = identify_process(pid);
            UniqueFd fd = who ? open_process_handle(*who) : UniqueFd();
            if (!fd) {
                watched_all = false;
                continue;
            }
            int raw = fd.get();
            vol->deferrers.emplace_back(loop_, std::move(fd));
            loop_.watch(raw, EPOLLIN, [this, token](std::uint32_t) { retry_deferred(token); });
        }
        if (!watched_all)
            vol->defer_timer = loop_.add_timer(defer_recheck_interval, [this, token] { retry_deferred(token); });
        return true;
    }

    void retry_deferred(const VolumeToken& token) {
        WatchedVolume* vol = find(token, "a defer_while release");
        if (vol == nullptr) {
            // A pidfd stays readable: never leave one registered. Whatever is
            // registered under a stale token belongs to the current generation now.
            if (WatchedVolume* current = volumes_.find(token.id); current != nullptr && !current->deferrers.empty())
                retry_deferred(VolumeToken{token.id, volumes_.generation(token.id)});
            return;
        }
        vol->deferrers.clear();  // unwatches: this callback's own pidfd included
        loop_.cancel_timer(vol->defer_timer);
        vol->defer_timer = 0;
        check(token, true);
    }

    void launch(const VolumeToken& token, const std::string& reason) {
        WatchedVolume* vol = volumes_.find(token);
        const std::string root = vol->volume.root.string();
        auto record = record_attempt(*lock_dir_, token.id, lock_limits(host_), lock_logger(token.id, root));
        if (record) vol->attempts = record->attempts;
        else log_.log(LogLevel::warning, fmt::format("{}: cannot count the attempt: {}", root, record.problem().message));

        std::vector<std::string> args{vrebuild_, "--low-priority"};
        if (!host_.source.empty()) args.insert(args.end(), {"--config", host_.source.string()});
        args.insert(args.end(), {"--lock-dir", host_.lock_dir.string(), root});
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);

        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawnattr_init(&attr);
        sigset_t none, defaults;
        sigemptyset(&none);
        sigemptyset(&defaults);
        for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGPIPE}) sigaddset(&defaults, sig);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        // Its own session: a Ctrl-C or SIGTERM meant for vwatch leaves it to finish.
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
        pid_t pid = 0;
        int rc = vrebuild_.find('/') != std::string::npos
                     ? ::posix_spawn(&pid, vrebuild_.c_str(), &actions, &attr, argv.data(), environ)
                     : ::posix_spawnp(&pid, vrebuild_.c_str(), &actions, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) {
            log_.event(LogLevel::error, log_event::update_failed,
                       fmt::format("{}: update failed: cannot start {}: {}", root, vrebuild_, std::strerror(rc)),
                       EventFields::about(root, token.id).with_status("not started"));
            schedule_retry(token);
            return;
        }
        // The child is ours and unreaped, so its PID cannot be reused before
        // the pidfd is open.
        UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        Child child{token, vol->volume.root, Clock::now(), {}};
        if (pidfd) {
            int raw = pidfd.get();
            child.pidfd = LoopFd(loop_, std::move(pidfd));
            loop_.watch(raw, EPOLLIN, [this, pid](std::uint32_t) { on_child_exit(pid); });
        }
        children_.emplace(pid, std::move(child));
        vol->changed_during_rebuild = false;
        log_.log(LogLevel::info, fmt::format("{}: stale ({}); started {} (pid {}, attempt {}/{})", root, reason, args[0], pid,
                                             vol->attempts, host_.max_attempts));
    }

    void on_child_exit(pid_t pid) {
        auto it = children_.find(pid);
        if (it == children_.end()) return;
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return;
        Child child = std::move(it->second);
        children_.erase(it);
        child.pidfd.reset();
        int status = info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0) : info.si_status;
        const std::string root = child.root.string();
        std::string took = seconds_text(Clock::now() - child.started);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        EventFields fields = EventFields::about(root, child.token.id)
                                 .with_status(code >= 0 ? std::to_string(code) : fmt::format("signal {}", WTERMSIG(status)))
                                 .with_pid(pid)
                                 .with_seconds(std::chrono::duration<double>(Clock::now() - child.started).count());
        if (code == 0) {
            log_.event(LogLevel::info, log_event::cache_updated, fmt::format("{}: cache updated by vrebuild (pid {}, {})", root, pid, took),
                       fields);
        } else if (code == to_int(ExitCode::busy)) {
            log_.log(LogLevel::info, fmt::format("{}: vrebuild (pid {}) found the volume locked; checking again after it unlocks", root, pid));
        } else if (code == to_int(ExitCode::reboot_in_progress)) {
            log_.log(LogLevel::info, fmt::format("{}: vrebuild (pid {}) refused: reboot in progress", root, pid));
        } else {
            log_.event(LogLevel::warning, log_event::update_failed,
                       fmt::format("{}: update failed: vrebuild (pid {}) {} after {}", root, pid, describe_status(status), took),
                       fields);
        }
        WatchedVolume* vol = find(child.token, fmt::format("the result of vrebuild pid {}", pid));
        if (vol == nullptr) {
            // Re-read since: its own check is scheduled; a vanished volume needs none.
            if (WatchedVolume* current = volumes_.find(child.token.id)) {
                VolumeToken now{child.token.id, volumes_.generation(child.token.id)};
                if (current->mode == Mode::watching) note_change(now, WatchRole::source, "rebuild ended");
            }
            return;
        }
        if (vol->changed_during_rebuild || vol->dirty) {
            vol->changed_during_rebuild = false;
            note_change(child.token, WatchRole::source, "changed during the rebuild");
        } else if (code == to_int(ExitCode::busy)) {
            vol->check_after_unlock = true;
            refresh_lock(child.token);
        } else if (code == 0) {
            check(child.token, false);
        } else if (code == to_int(ExitCode::bad_volume_config)) {
            vol->config_dirty = true;
            note_change(child.token, WatchRole::config, "vrebuild found a bad config");
        } else if (code != to_int(ExitCode::reboot_in_progress)) {
            schedule_retry(child.token);
        }
    }

    // After a failure the volume stays stale: try again later, backing off,
    // until the failure or attempt limits make vwatch give up.
    void schedule_retry(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr) return;
        auto record = read_record(token.id);
        int failures = record ? record->failures : vol->failures + 1;
        milliseconds delay = host_.settle_max;
        for (int i = 1; i < failures && delay < max_retry_backoff; ++i) delay *= 2;
        delay = std::min(delay, milliseconds(max_retry_backoff));
        loop_.cancel_timer(vol->retry_timer);
        vol->retry_timer = loop_.add_timer(delay, [this, token] {
            WatchedVolume* v = find(token, "a retry timer");
            if (v == nullptr) return;
            v->retry_timer = 0;
            check(token, true);
        });
        log_.log(LogLevel::info, fmt::format("{}: trying again in {}", vol->volume.root.string(), format_duration(delay)));
    }

    void end_startup_delay() {
        startup_timer_ = 0;
        log_.log(LogLevel::info, "start-up delay over; checking every volume");
        std::vector<VolumeToken> all;
        volumes_.for_each([&](const std::string& id, const WatchedVolume& vol) {
            if (vol.mode == Mode::watching) all.push_back({id, volumes_.generation(id)});
        });
        for (const auto& token : all) {
            if (WatchedVolume* vol = volumes_.find(token)) {
                loop_.cancel_timer(vol->settle_timer);
                vol->settle_timer = 0;
                vol->settle.clear();
            }
            check(token, true);
        }
    }

    // ---- locks

    LockLog lock_logger(const std::string& id, const std::string& root) {
        return [this, id, root](const std::string& note) {
            bool failure = note.find("without unlocking") != std::string::npos;
            if (failure)
                log_.event(LogLevel::warning, log_event::update_failed, fmt::format("{}: {}", root, note),
                           EventFields::about(root, id).with_status("exited without unlocking"));
            else if (note.find("giving up") != std::string::npos || note.find("gave up") != std::string::npos)
                log_.event(LogLevel::warning, log_event::gave_up, fmt::format("{}: {}", root, note),
                           EventFields::about(root, id).with_status("gave-up"));
            else log_.log(LogLevel::info, fmt::format("{}: {}", root, note));
        };
    }

    std::optional<LockRecord> read_record(const std::string& id) {
        if (!lock_dir_) return std::nullopt;
        auto record = lock_dir_->peek_volume(id);
        if (!record) return std::nullopt;
        return *record;
    }

    void on_lock_events() {
        alignas(inotify_event) char buffer[16 * 1024];
        std::vector<std::string> ids;
        for (;;) {
            ssize_t n = ::read(lock_watch_.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            for (char* p = buffer; p < buffer + n;) {
                auto* ev = reinterpret_cast<inotify_event*>(p);
                p += sizeof(inotify_event) + ev->len;
                if (ev->len == 0) continue;
                std::string name(ev->name);
                if (name.size() > 5 && name.compare(name.size() - 5, 5, ".lock") == 0) {
                    name.resize(name.size() - 5);
                    if (std::find(ids.begin(), ids.end(), name) == ids.end()) ids.push_back(name);
                }
            }
        }
        for (const auto& id : ids)
            if (volumes_.find(id) != nullptr) refresh_lock(VolumeToken{id, volumes_.generation(id)});
    }

    // Re-reads the volume's lock record: follows live owners through pidfds
    // and notices an unlock.
    void refresh_lock(const VolumeToken& token) {
        WatchedVolume* vol = volumes_.find(token);
        if (vol == nullptr) return;
        auto record = read_record(token.id);
        std::vector<ProcessIdentity> live;
        bool dead_owner = false;
        if (record) {
            vol->failures = record->failures;
            vol->attempts = record->attempts;
            for (const auto& owner : record->owners) {
                if (is_alive(owner)) live.push_back(owner);
                else dead_owner = true;
            }
        }
        if (dead_owner && live.empty()) {
            // An owner died before we could follow it: account for it now.
            (void)tidy_volume_lock(*lock_dir_, token.id, lock_limits(host_), lock_logger(token.id, vol->volume.root.string()));
            return;  // the rewrite comes back through the lock watch
        }
        for (auto it = vol->owners.begin(); it != vol->owners.end();) {
            bool still = std::any_of(live.begin(), live.end(), [&](const ProcessIdentity& p) { return p.pid == it->first; });
            it = still ? std::next(it) : vol->owners.erase(it);
        }
        for (const auto& owner : live) {
            if (vol->owners.count(owner.pid) != 0) continue;
            UniqueFd fd = open_process_handle(owner);
            if (!fd) continue;
            int raw = fd.get();
            pid_t pid = owner.pid;
            vol->owners.emplace(pid, LoopFd(loop_, std::move(fd)));
            loop_.watch(raw, EPOLLIN, [this, token, pid](std::uint32_t) { on_owner_exit(token, pid); });
        }
        bool was_locked = vol->locked;
        vol->locked = !live.empty();
        if (vol->locked) {
            if (vol->mode == Mode::watching) hold(*vol, "locked");
        } else if (was_locked) {
            log_.log(LogLevel::debug, fmt::format("{}: unlocked", vol->volume.root.string()));
            if ((vol->check_after_unlock || vol->dirty || vol->stale) && vol->mode == Mode::watching && !rebuilding(token.id)) {
                vol->check_after_unlock = false;
                note_change(token, WatchRole::source, "unlocked");
            } else if (!vol->dirty && !vol->stale && !rebuilding(token.id)) {
                release_hold(*vol);
            }
        }
    }

    void on_owner_exit(const VolumeToken& token, pid_t pid) {
        WatchedVolume* vol = find(token, fmt::format("the exit of lock owner pid {}", pid));
        if (vol == nullptr) {
            // A pidfd stays readable: hand a stale registration to the current generation.
            if (WatchedVolume* current = volumes_.find(token.id); current != nullptr && current->owners.count(pid) != 0)
                on_owner_exit(VolumeToken{token.id, volumes_.generation(token.id)}, pid);
            return;
        }
        vol->owners.erase(pid);  // unwatches its pidfd
        auto record = tidy_volume_lock(*lock_dir_, token.id, lock_limits(host_), lock_logger(token.id, vol->volume.root.string()));
        if (!record) log_.log(LogLevel::warning, fmt::format("{}: {}", vol->volume.root.string(), record.problem().message));
        refresh_lock(token);
    }

    // ---- unmount refusal

    // Holds the volume busy. Changes merely pending are logged at debug
    // level (every package install has them); stale and locked at info.
    void hold(WatchedVolume& vol, std::string_view reason) {
        if (!host_.hold_unmount || !vol.volume.mounted) return;
        bool quiet = reason == "changes pending";
        if (!vol.hold) {
            vol.hold.reset(::open(vol.volume.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (!vol.hold) return;
            struct stat st {};
            if (::fstat(vol.hold.get(), &st) != 0 || (vol.volume.device != 0 && st.st_dev != vol.volume.device)) {
                vol.hold.reset();  // something else is mounted there now
                return;
            }
        } else if (vol.hold_logged || quiet) {
            return;
        }
        int left = std::max(0, host_.max_attempts - vol.attempts);
        vol.hold_logged = !quiet;
        log_.log(quiet ? LogLevel::debug : LogLevel::info,
                 fmt::format("{}: busy ({}); refusing unmount ({} {} left)", vol.volume.root.string(), reason, left,
                             left == 1 ? "try" : "tries"));
    }

    void release_hold(WatchedVolume& vol) {
        if (!vol.hold) return;
        vol.hold.reset();
        log_.log(vol.hold_logged ? LogLevel::info : LogLevel::debug,
                 fmt::format("{}: consistent; unmount allowed", vol.volume.root.string()));
        vol.hold_logged = false;
    }

    // ---- status

    void update_status() {
        if (!notifier_.active()) return;
        std::size_t watching = 0, stale = 0, locked = 0, problems = 0;
        volumes_.for_each([&](const std::string&, const WatchedVolume& vol) {
            if (vol.mode == Mode::watching) ++watching;
            if (vol.mode == Mode::config_error) ++problems;
            if (vol.stale || vol.dirty) ++stale;
            if (vol.locked) ++locked;
        });
        std::string text = fmt::format("watching {} volume{}: {} stale, {} locked, {} rebuilding", watching,
                                       watching == 1 ? "" : "s", stale, locked, children_.size());
        if (problems > 0) text += fmt::format(", {} with config errors", problems);
        if (startup_timer_ != 0) text += "; start-up delay";
        (void)notifier_.status(text);
    }

public:
    static HostConfig apply_overrides(HostConfig host, const VwatchOptions& options) {
        if (options.settle) {
            host.settle = *options.settle;
            host.settle_max = std::max(host.settle_max, host.settle);
        }
        if (options.startup_delay) host.startup_delay = *options.startup_delay;
        if (options.no_discover) host.discover = false;
        return host;
    }

private:
    const VwatchOptions& options_;
    HostConfig host_;
    Logger log_;
    ServiceNotifier notifier_;
    EventLoop loop_;
    std::unique_ptr<Watcher> watcher_;
    std::optional<LockDir> lock_dir_;
    LoopFd lock_watch_;
    UniqueFd signal_fd_;
    std::unique_ptr<MountMonitor> mounts_;
    std::string vrebuild_;
    GenerationTable<WatchedVolume> volumes_;
    std::map<WatchKey, VolumeToken> keys_;
    WatchKey next_key_ = 1;
    std::map<pid_t, Child> children_;
    std::vector<WatchEvent> events_;
    EventLoop::TimerId startup_timer_ = 0;
    EventLoop::TimerId rescan_timer_ = 0;
    Clock::time_point last_rescan_{};
    Clock::time_point last_mount_read_{};
    milliseconds rescan_interval_ = mount_rescan_interval;
    std::string mount_fingerprint_;
    std::string mount_ids_;
};

}  // namespace

std::string locate_vrebuild(const std::string& configured) {
    if (!configured.empty()) return configured;
    if (const char* env = std::getenv("VOLWATCH_VREBUILD"); env != nullptr && *env != '\0') return env;
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        // Beside vwatch (an install puts both in sbin; a build tree in tools/),
        // or in the sibling bin/sbin of an install prefix.
        fs::path dir = self.parent_path();
        for (const fs::path& candidate : {dir / "vrebuild", dir.parent_path() / "sbin" / "vrebuild", dir.parent_path() / "bin" / "vrebuild"})
            if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
    return "vrebuild";
}

ExitCode run_vwatch(const VwatchOptions& options) {
    HostConfig host = Daemon::apply_overrides(load_host_config(options.host).or_throw(), options);
    Daemon daemon(options, std::move(host));
    return daemon.run();
}

}  // namespace volwatch
