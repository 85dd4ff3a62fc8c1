#include "volwatch/lockdir.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/output.hpp"

namespace volwatch {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t max_record_bytes = 256 * 1024;
// Without pidfd_open (kernels before 5.3) a waiter cannot sleep on a
// process's exit, so it re-checks liveness this often instead.
constexpr int no_pidfd_recheck_ms = 200;

double wall_now() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

Problem system_problem(const fs::path& path, std::string_view what, int error) {
    return Problem{error == EACCES || error == EPERM ? ExitCode::permission : ExitCode::internal,
                   fmt::format("{}: {}: {}", path.string(), what, std::strerror(error))};
}

Problem refusal(const fs::path& path, std::string_view what) {
    return Problem{ExitCode::permission, fmt::format("{}: refusing {}", path.string(), what)};
}

// Root's files, or the caller's own (the unprivileged test and demo setup).
bool trusted_owner(uid_t uid) { return uid == 0 || uid == ::geteuid(); }

Status check_directory(const struct stat& st, const fs::path& path) {
    if (!S_ISDIR(st.st_mode)) return refusal(path, "the lock directory: not a directory");
    if (!trusted_owner(st.st_uid))
        return refusal(path, fmt::format("the lock directory: owned by uid {}, not by root{}", st.st_uid,
                                         ::geteuid() == 0 ? "" : " or the caller"));
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return refusal(path, fmt::format("the lock directory: writable by group or others (mode {:04o})",
                                         st.st_mode & 07777));
    return success();
}

// Opens (and with `create`, makes) the directory `name` under `at` without
// following a symlink in its last component. ENOENT is returned as a
// Problem whose code is unknown_volume so callers can tell it apart.
// `st` receives the directory's stat.
Result<UniqueFd> open_directory(int at, const char* name, const fs::path& shown, bool create, struct stat& st,
                                mode_t mode = 0755) {
    constexpr int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    bool made = false;
    // Opened first: it exists on every run but the first.
    UniqueFd fd(::openat(at, name, flags));
    if (!fd && errno == ENOENT && create) {
        if (::mkdirat(at, name, mode) == 0) made = true;
        else if (errno != EEXIST) return system_problem(shown, "cannot create the lock directory", errno);
        fd.reset(::openat(at, name, flags));
    }
    if (!fd) {
        int error = errno;
        struct stat link{};
        if (::fstatat(at, name, &link, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(link.st_mode))
            return refusal(shown, "a symlinked lock directory");
        if (error == ENOENT) return Problem{ExitCode::unknown_volume, fmt::format("{}: does not exist", shown.string())};
        if (error == ENOTDIR) return refusal(shown, "the lock directory: not a directory");
        return system_problem(shown, "cannot open the lock directory", error);
    }
    // mkdir's mode passes through the umask; readers (vcheck) need 0755.
    if (made) ::fchmod(fd.get(), mode);
    if (::fstat(fd.get(), &st) != 0) return system_problem(shown, "stat", errno);
    if (auto checked = check_directory(st, shown); !checked) return checked.problem();
    // guard/ must be ours alone: tighten a readable one we own.
    if ((st.st_mode & ~mode & 0777) != 0) {
        if (st.st_uid != ::geteuid() || ::fchmod(fd.get(), mode) != 0)
            return refusal(shown, fmt::format("the lock directory: mode {:04o}, expected {:04o}", st.st_mode & 07777, mode));
    }
    return fd;
}

Result<std::string> read_all(int fd, const fs::path& path) {
    std::string text;
    char buffer[8192];
    for (;;) {
        ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(text.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return system_problem(path, "cannot read the lock record", errno);
        if (n == 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > max_record_bytes) break;
    }
    return text;
}

bool same_process(const ProcessIdentity& a, const ProcessIdentity& b) {
    return a.pid == b.pid && a.start_time == b.start_time && a.boot_id == b.boot_id;
}

bool remove_waiter(LockRecord& record, const ProcessIdentity& who) {
    auto before = record.waiters.size();
    std::erase_if(record.waiters, [&](const LockWaiter& w) { return same_process(w.who, who); });
    return record.waiters.size() != before;
}

void clear_owners(LockRecord& record) {
    record.owners.clear();
    record.command.clear();
    record.purpose.clear();
    record.since = 0;
}

std::string limit_text(const LockRecord& record, const LockLimits& limits) {
    return fmt::format("failures: {} of {}", record.failures, limits.max_failures);
}

void update_gave_up(LockRecord& record, const LockLimits& limits, std::vector<std::string>& notes) {
    bool over = record.failures >= limits.max_failures || record.attempts >= limits.max_attempts;
    if (over && !record.gave_up) {
        notes.push_back(record.failures >= limits.max_failures
                            ? fmt::format("gave up on the volume after {} consecutive failed updates", record.failures)
                            : fmt::format("gave up on the volume after {} automatic rebuild attempts", record.attempts));
    }
    record.gave_up = over;
}

void emit(const LockLog& log, const std::vector<std::string>& notes) {
    if (!log) return;
    for (const auto& note : notes) log(note);
}

}  // namespace

LockLimits lock_limits(const HostConfig& host) { return LockLimits{host.max_failures, host.max_attempts}; }

// ---- LockDir

Result<LockDir> LockDir::open(const fs::path& path, LockDirAccess access) {
    bool write = access == LockDirAccess::write;
    LockDir dir;
    dir.path_ = path;
    struct stat st{};
    auto top = open_directory(AT_FDCWD, path.c_str(), path, write, st);
    if (!top) {
        if (!write && top.problem().code == ExitCode::unknown_volume) return dir;
        if (top.problem().code == ExitCode::unknown_volume)
            return Problem{ExitCode::internal, top.problem().message};
        return top.problem();
    }
    dir.dir_ = std::move(*top);
    dir.owner_ = st.st_uid;
    if (write) {
        uid_t me = ::geteuid();
        if (me != 0 && me != dir.owner_)
            return Problem{ExitCode::permission,
                           fmt::format("{}: permission denied: locking needs root or the lock directory's owner",
                                       path.string())};
        dir.writable_ = true;
    }
    auto volumes = open_directory(dir.dir_.get(), "volumes", path / "volumes", write, st);
    if (volumes) dir.volumes_ = std::move(*volumes);
    else if (write || volumes.problem().code != ExitCode::unknown_volume) return volumes.problem();
    if (write) {
        auto guards = open_directory(dir.dir_.get(), "guard", path / "guard", true, st, 0700);
        if (!guards) return guards.problem();
        dir.guards_ = std::move(*guards);
    }
    return dir;
}

Result<UniqueFd> LockDir::open_checked(int dir_fd, const std::string& name, const fs::path& shown, mode_t mode,
                                       bool write) const {
    int flags = O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (write ? O_RDWR | O_CREAT : O_RDONLY);
    UniqueFd fd(::openat(dir_fd, name.c_str(), flags, mode));
    if (!fd) {
        if (errno == ELOOP) return refusal(shown, "a symlinked lock file");
        if (errno == ENOENT && !write) return UniqueFd();
        return system_problem(shown, "cannot open the lock file", errno);
    }
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return system_problem(shown, "stat", errno);
    if (!S_ISREG(st.st_mode)) return refusal(shown, "a lock file that is not a regular file");
    if (st.st_nlink != 1) return refusal(shown, fmt::format("a lock file with {} hard links", st.st_nlink));
    if (st.st_uid != 0 && st.st_uid != owner_) return refusal(shown, fmt::format("a lock file owned by uid {}", st.st_uid));
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return refusal(shown, fmt::format("a lock file writable by group or others (mode {:04o})", st.st_mode & 07777));
    // O_CREAT's mode passes through the umask; readers (vcheck) need a
    // record's 0644, and a guard must stay 0600.
    if (write && (st.st_mode & 0777) != mode) {
        if (st.st_uid == ::geteuid()) ::fchmod(fd.get(), mode);
        else if ((st.st_mode & ~mode & 0777) != 0)
            return refusal(shown, fmt::format("a lock file with mode {:04o}, expected {:04o}", st.st_mode & 07777, mode));
    }
    return fd;
}

Result<LockFile> LockDir::open_file(int dir_fd, const std::string& name, const std::string& guard_name,
                                    const fs::path& shown) const {
    if (dir_fd < 0) return LockFile(UniqueFd(), UniqueFd(), shown);
    bool write = writable_ && !guard_name.empty();
    auto record = open_checked(dir_fd, name, shown, 0644, write);
    if (!record) return record.problem();
    if (!write) return LockFile(std::move(*record), UniqueFd(), shown);
    auto guard = open_checked(guards_.get(), guard_name, path_ / "guard" / guard_name, 0600, true);
    if (!guard) return guard.problem();
    return LockFile(std::move(*record), std::move(*guard), shown);
}

Result<LockFile> LockDir::volume_file(std::string_view volume_id) const {
    std::string name = fmt::format("{}.lock", volume_id);
    if (volume_id.empty() || volume_id.find('/') != std::string_view::npos || volume_id[0] == '.')
        return Problem{ExitCode::internal, fmt::format("invalid volume id \"{}\"", volume_id)};
    return open_file(volumes_.get(), name, fmt::format("volume-{}", volume_id), path_ / "volumes" / name);
}

Result<LockRecord> LockDir::peek_volume(std::string_view volume_id) const {
    std::string name = fmt::format("{}.lock", volume_id);
    if (volume_id.empty() || volume_id.find('/') != std::string_view::npos || volume_id[0] == '.')
        return Problem{ExitCode::internal, fmt::format("invalid volume id \"{}\"", volume_id)};
    auto file = open_file(volumes_.get(), name, "", path_ / "volumes" / name);
    if (!file) return file.problem();
    return file->read();
}

Result<LockFile> LockDir::reboot_file() const {
    return open_file(dir_.get(), "reboot.lock", "reboot", path_ / "reboot.lock");
}

Result<std::vector<std::string>> LockDir::volume_ids() const {
    std::vector<std::string> ids;
    if (!volumes_) return ids;
    int copy = ::openat(volumes_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (copy < 0) return system_problem(path_ / "volumes", "cannot list", errno);
    DIR* stream = ::fdopendir(copy);
    if (stream == nullptr) {
        ::close(copy);
        return system_problem(path_ / "volumes", "cannot list", errno);
    }
    while (const dirent* entry = ::readdir(stream)) {
        std::string_view name(entry->d_name);
        if (name.size() > 5 && name.ends_with(".lock") && name[0] != '.')
            ids.emplace_back(name.substr(0, name.size() - 5));
    }
    ::closedir(stream);
    std::sort(ids.begin(), ids.end());
    return ids;
}

// ---- LockFile and RecordLock

RecordLock::RecordLock(const LockFile& file, bool exclusive) : fd_(file.guard()) {
    if (fd_ < 0) {
        if (file.fd() < 0) return;  // a record that does not exist, read-only: nothing to guard
        throw Failure(ExitCode::internal, fmt::format("{}: not open for writing", file.path().string()));
    }
    while (::flock(fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno != EINTR)
            throw Failure(ExitCode::internal, fmt::format("{}: flock: {}", file.path().string(), std::strerror(errno)));
    }
}

RecordLock::~RecordLock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
}

Result<LockRecord> LockFile::read() const {
    if (!fd_) return LockRecord{};
    if (!guard_) return read_lock_record(fd_.get(), path_);
    RecordLock shared(*this, false);
    return read_held();
}

Result<LockRecord> LockFile::read_held() const {
    if (!fd_) return LockRecord{};
    auto text = read_all(fd_.get(), path_);
    if (!text) return text.problem();
    return parse_lock_record(*text);
}

Status LockFile::write_held(const LockRecord& record) const {
    if (!fd_) return Problem{ExitCode::internal, fmt::format("{}: not open for writing", path_.string())};
    std::string text = format_lock_record(record);
    // ftruncate() is a metadata change (journalled on ext4, a second
    // IN_MODIFY for every waiter): only when the record shrinks.
    struct stat st{};
    bool shrinks = ::fstat(fd_.get(), &st) != 0 || st.st_size > static_cast<off_t>(text.size());
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::pwrite(fd_.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return system_problem(path_, "cannot write the lock record", errno);
        done += static_cast<std::size_t>(n);
    }
    if (shrinks && ::ftruncate(fd_.get(), static_cast<off_t>(text.size())) != 0)
        return system_problem(path_, "cannot truncate the lock record", errno);
    return success();
}

Result<LockRecord> LockFile::update(const std::function<bool(LockRecord&)>& change) const {
    if (!fd_) return Problem{ExitCode::internal, fmt::format("{}: not open for writing", path_.string())};
    RecordLock exclusive(*this, true);
    auto record = read_held();
    if (!record) return record.problem();
    if (change(*record)) {
        if (auto written = write_held(*record); !written) return written.problem();
    }
    return record;
}

// ---- The protocol

bool tidy_record(LockRecord& record, const Liveness& alive, const LockLimits& limits,
                 std::vector<std::string>& notes) {
    bool changed = false;
    if (record.damaged) {
        notes.push_back("the lock record was damaged (a rewrite was cut short) and has been reset");
        record = LockRecord{};
        changed = true;
    }
    if (!record.owners.empty() && std::none_of(record.owners.begin(), record.owners.end(), alive)) {
        record.failures += 1;
        record.last_status = -1;
        notes.push_back(fmt::format("{} exited without unlocking; counted as a failed update ({})",
                                    describe_process(record.owners.front().pid, record.command),
                                    limit_text(record, limits)));
        update_gave_up(record, limits, notes);
        clear_owners(record);
        changed = true;
    }
    auto before = record.waiters.size();
    std::erase_if(record.waiters, [&](const LockWaiter& w) { return !alive(w.who); });
    return changed || record.waiters.size() != before;
}

void account_status(LockRecord& record, int status, double now, const LockLimits& limits,
                    std::vector<std::string>& notes) {
    record.last_status = status;
    if (status == 0) {
        if (record.failures > 0)
            notes.push_back(fmt::format("recovered after {} failed update{}", record.failures, record.failures == 1 ? "" : "s"));
        record.failures = 0;
        record.attempts = 0;
        record.gave_up = false;
        record.last_success = now;
        return;
    }
    if (status == to_int(ExitCode::busy)) return;  // EX_TEMPFAIL: try again later, not a failure
    record.failures += 1;
    notes.push_back(fmt::format("update failed with status {} ({})", status, limit_text(record, limits)));
    update_gave_up(record, limits, notes);
}

std::string busy_message(const LockRecord& record, const Liveness& alive, const std::optional<ProcessIdentity>& self) {
    std::size_t waiting = 0;
    for (const auto& waiter : record.waiters)
        if (!(self && same_process(waiter.who, *self)) && alive(waiter.who)) ++waiting;
    std::string waiting_text = waiting > 0 ? fmt::format(", {} waiting", waiting) : "";
    for (const auto& owner : record.owners) {
        if (alive(owner))
            return fmt::format("busy: held by {} since {}{}", describe_process(owner.pid, record.command),
                               format_clock(record.since), waiting_text);
    }
    return fmt::format("busy: {} waiting ahead", waiting);
}

bool may_take(const LockRecord& record, const ProcessIdentity& waiter, const Liveness& alive) {
    if (std::any_of(record.owners.begin(), record.owners.end(), alive)) return false;
    for (const auto& queued : record.waiters) {
        if (same_process(queued.who, waiter)) return true;
        if (alive(queued.who)) return false;
    }
    return true;
}

// ---- Acquire

namespace {

enum class Outcome { granted, queued, busy, reboot, owners_gone };

struct Attempt {
    Outcome outcome = Outcome::busy;
    std::string message;
    LockRecord record;
};

// One critical section: under the reboot lock's shared flock (so a reboot
// grant cannot slip in between the check and the grant) and the volume
// record's exclusive flock.
Result<Attempt> attempt_once(const LockFile& file, const LockFile& reboot, const AcquireRequest& request,
                             const ProcessIdentity& me, bool may_wait, const LockLog& log) {
    Attempt attempt;
    RecordLock reboot_guard(reboot, false);
    auto reboot_record = reboot.read_held();
    if (!reboot_record) return reboot_record.problem();
    bool reboot_held = reboot_record->held();
    std::vector<std::string> notes;
    double now = wall_now();
    auto written = file.update([&](LockRecord& record) {
        bool changed = tidy_record(record, is_alive, request.limits, notes);
        if (reboot_held) {
            attempt.outcome = Outcome::reboot;
            attempt.message = "reboot in progress";
            return remove_waiter(record, me) || changed;
        }
        if (may_take(record, me, is_alive)) {
            remove_waiter(record, me);
            if (std::none_of(request.owners.begin(), request.owners.end(), is_alive)) {
                attempt.outcome = Outcome::owners_gone;
                attempt.message = fmt::format("the owner ({}) exited before the lock was granted",
                                              describe_process(request.owners.empty() ? 0 : request.owners.front().pid, ""));
                return true;
            }
            record.volume = request.volume;
            record.owners = request.owners;
            record.command = request.command;
            record.purpose = request.purpose;
            record.since = now;
            attempt.outcome = Outcome::granted;
            return true;
        }
        if (!may_wait) {
            attempt.outcome = Outcome::busy;
            attempt.message = busy_message(record, is_alive, me);
            return remove_waiter(record, me) || changed;
        }
        attempt.outcome = Outcome::queued;
        bool queued = std::any_of(record.waiters.begin(), record.waiters.end(),
                                  [&](const LockWaiter& w) { return same_process(w.who, me); });
        if (!queued) {
            record.volume = request.volume;
            record.waiters.push_back(LockWaiter{record.next_ticket++, me});
            changed = true;
        }
        return changed;
    });
    emit(log, notes);
    if (!written) return written.problem();
    attempt.record = *written;
    return attempt;
}

// The processes whose exit may let `me` move: the nearest live waiter ahead
// (each waiter watches its predecessor, so a chain of deaths wakes one
// waiter at a time), else the live owners.
struct Watched {
    std::vector<ProcessIdentity> processes;
    bool waiter_ahead = false;  // a live waiter is ahead of `me`: the owners cannot matter yet
};
Watched watched_processes(const LockRecord& record, const ProcessIdentity& me) {
    std::optional<ProcessIdentity> ahead;
    for (const auto& waiter : record.waiters) {
        if (same_process(waiter.who, me)) break;
        if (is_alive(waiter.who)) ahead = waiter.who;
    }
    if (ahead) return {{*ahead}, true};
    Watched owners;
    for (const auto& owner : record.owners)
        if (is_alive(owner)) owners.processes.push_back(owner);
    return owners;
}

UniqueFd watch_record(const LockFile& file) {
    UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!inotify) return inotify;
    // Through /proc/self/fd the watch lands on the very inode we hold open.
    std::string self_path = fmt::format("/proc/self/fd/{}", file.fd());
    constexpr std::uint32_t mask = IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB;
    if (::inotify_add_watch(inotify.get(), self_path.c_str(), mask) < 0 &&
        ::inotify_add_watch(inotify.get(), file.path().c_str(), mask | IN_DONT_FOLLOW) < 0)
        return UniqueFd();
    return inotify;
}

// After a wake-up: whether the record now calls for a critical section
// (we may take the lock, or our queue entry is gone) rather than more sleep.
bool refresh_needs_attempt(const LockRecord& view, const ProcessIdentity& me) {
    bool queued = std::any_of(view.waiters.begin(), view.waiters.end(),
                              [&](const LockWaiter& w) { return same_process(w.who, me); });
    return !queued || view.damaged || may_take(view, me, is_alive);
}

// True when nothing that decides `me`'s turn differs between two looks at
// the record: the same waiters ahead, `me` still queued, and the same owners
// unless `waiter_ahead` (a live waiter ahead, whose exit the caller watches,
// goes first whoever owns the lock: then a grant or a release to someone
// else wakes the queue behind it for one cheap read, not a new look at
// every process ahead).
bool same_prospects(const LockRecord& before, const LockRecord& after, const ProcessIdentity& me, bool waiter_ahead) {
    if (before.damaged || after.damaged || (!waiter_ahead && before.owners != after.owners)) return false;
    auto ahead = [&](const LockRecord& record) {
        std::vector<std::uint64_t> tickets;
        for (const auto& waiter : record.waiters) {
            if (same_process(waiter.who, me)) return std::optional(tickets);
            tickets.push_back(waiter.ticket);
        }
        return std::optional<std::vector<std::uint64_t>>();
    };
    auto first = ahead(before), second = ahead(after);
    return first && second && *first == *second;
}

void drain(int fd) {
    char buffer[4096];
    while (::read(fd, buffer, sizeof buffer) > 0) {
    }
}

}  // namespace

Result<Grant> acquire_volume_lock(const LockDir& dir, std::string_view volume_id, const AcquireRequest& request,
                                  const LockLog& log) {
    using Clock = std::chrono::steady_clock;
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    auto reboot = dir.reboot_file();
    if (!reboot) return reboot.problem();
    const ProcessIdentity me = request.waiter ? *request.waiter : self_identity();  // not value_or: it reads /proc
    const auto start = Clock::now();
    const bool may_wait = request.wait.has_value();
    const bool forever = may_wait && *request.wait == Duration::max();
    const auto deadline = may_wait && !forever ? start + *request.wait : start;

    // Created only once queued (an uncontended lock never pays for it), and
    // followed by a fresh look, so no change between the two slips by unseen.
    UniqueFd inotify;
    auto give_up = [&](std::string message) -> Result<Grant> {
        auto removed = file->update([&](LockRecord& record) { return remove_waiter(record, me); });
        if (!removed) return removed.problem();
        if (message.empty()) message = busy_message(*removed, is_alive, me);
        return Problem{ExitCode::busy, message};
    };

    auto owners_gone = [&] {
        return !request.owners.empty() && std::none_of(request.owners.begin(), request.owners.end(), is_alive);
    };
    auto owners_gone_message = [&] {
        return fmt::format("the owner ({}) exited while waiting; left the queue",
                           describe_process(request.owners.front().pid, ""));
    };
    std::map<std::pair<pid_t, std::uint64_t>, UniqueFd> handles;
    std::vector<pollfd> fds;
    bool rewatch = true;
    bool pidfd_missing = false;
    bool need_attempt = true;
    bool waiter_ahead = false;  // as of the last look at the processes ahead
    LockRecord view;
    for (;;) {
        if (need_attempt) {
            auto attempt = attempt_once(*file, *reboot, request, me, may_wait, log);
            if (!attempt) return attempt.problem();
            switch (attempt->outcome) {
            case Outcome::granted:
                return Grant{attempt->record,
                             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start),
                             std::move(inotify)};
            case Outcome::busy: return Problem{ExitCode::busy, attempt->message};
            case Outcome::reboot: return Problem{ExitCode::reboot_in_progress, attempt->message};
            case Outcome::owners_gone: return Problem{ExitCode::busy, attempt->message};
            case Outcome::queued: break;
            }
            view = std::move(attempt->record);
            rewatch = true;
            if (!inotify) {
                inotify = watch_record(*file);
                if (!inotify) return system_problem(file->path(), "inotify", errno);
                auto current = file->read();
                if (!current) return current.problem();
                view = std::move(*current);
                if (refresh_needs_attempt(view, me)) continue;
            }
        }

        // Sleep until the record changes, a watched process exits, the
        // wait ends or we are interrupted; never a polling loop.
        if (rewatch) {
            fds.assign({{inotify.get(), POLLIN, 0}});
            if (request.interrupt_fd >= 0) fds.push_back({request.interrupt_fd, POLLIN, 0});
            std::map<std::pair<pid_t, std::uint64_t>, UniqueFd> keep;
            bool vanished = false;
            // Also the owners-to-be: a script that dies while its vlock waits
            // must not keep a place in the queue until its turn comes.
            if (owners_gone()) return give_up(owners_gone_message());
            auto [watched, ahead] = watched_processes(view, me);
            waiter_ahead = ahead;
            const std::size_t queue_side = watched.size();
            for (const auto& owner : request.owners)
                if (!same_process(owner, me)) watched.push_back(owner);
            for (std::size_t i = 0; i < watched.size(); ++i) {
                const auto& who = watched[i];
                auto key = std::make_pair(who.pid, who.start_time);
                if (keep.contains(key)) continue;
                auto found = handles.find(key);
                UniqueFd handle = found != handles.end() ? std::move(found->second) : open_process_handle(who);
                if (!handle) {
                    if (errno == ENOSYS) pidfd_missing = true;
                    else if (i < queue_side) vanished = true;  // an owner-to-be that died was checked above
                    continue;
                }
                fds.push_back({handle.get(), POLLIN, 0});
                keep.emplace(key, std::move(handle));
            }
            handles = std::move(keep);
            if (vanished) {
                need_attempt = true;
                continue;
            }
        }
        const std::size_t first_process = request.interrupt_fd >= 0 ? 2 : 1;
        int timeout = -1;
        if (!forever) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return give_up("");
            timeout = static_cast<int>(std::min<long long>(left, 1LL << 30));
        }
        if (pidfd_missing) timeout = timeout < 0 ? no_pidfd_recheck_ms : std::min(timeout, no_pidfd_recheck_ms);
        int ready = ::poll(fds.data(), fds.size(), timeout);
        if (ready < 0 && errno != EINTR) return system_problem(file->path(), "poll", errno);
        if (request.interrupt_fd >= 0 && (fds[1].revents & POLLIN) != 0) return give_up("interrupted");
        if (!forever && ready == 0 && Clock::now() >= deadline) return give_up("");
        drain(inotify.get());
        bool process_exited = std::any_of(fds.begin() + static_cast<std::ptrdiff_t>(first_process), fds.end(),
                                          [](const pollfd& fd) { return fd.revents != 0; });
        if (process_exited && owners_gone()) return give_up(owners_gone_message());
        // A cheap shared read first: most wake-ups are other waiters joining
        // or leaving behind us, which change nothing for us; then neither
        // liveness nor the watched processes need a new look.
        auto current = file->read();
        if (!current) return current.problem();
        bool unchanged = !process_exited && !pidfd_missing && same_prospects(view, *current, me, waiter_ahead);
        view = std::move(*current);
        rewatch = !unchanged;
        need_attempt = !unchanged && refresh_needs_attempt(view, me);
    }
}

void retire_watch(UniqueFd watch) {
    if (!watch) return;
    int gate[2];
    if (::pipe2(gate, O_CLOEXEC) != 0) return;  // watch closes here, slowly
    pid_t child = ::fork();
    if (child == 0) {
        if (::fork() == 0) {
            // Keep only the watch and the gate: holding the caller's stdout
            // or another inherited pipe would hold up whoever reads it.
            unsigned low = static_cast<unsigned>(std::min(watch.get(), gate[0]));
            unsigned high = static_cast<unsigned>(std::max(watch.get(), gate[0]));
            if (low > 0) ::close_range(0, low - 1, 0);
            if (high > low + 1) ::close_range(low + 1, high - 1, 0);
            ::close_range(high + 1, ~0U, 0);
            char byte;
            while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {
            }
            ::_exit(0);  // closes the last reference to the watch
        }
        ::_exit(0);
    }
    ::close(gate[0]);
    if (child > 0) {
        while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    watch.reset();  // cheap while the grandchild still holds a reference
    ::close(gate[1]);
}

// ---- Release and accounting

Result<LockRecord> release_volume_lock(const LockDir& dir, std::string_view volume_id, const ReleaseRequest& request,
                                       const LockLog& log) {
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    std::optional<Problem> refused;
    std::vector<std::string> notes;
    double now = wall_now();
    auto written = file->update([&](LockRecord& record) {
        bool changed = tidy_record(record, is_alive, request.limits, notes);
        if (record.owners.empty()) {
            refused = Problem{ExitCode::not_locked, "not locked"};
            return changed;
        }
        bool mine = std::any_of(record.owners.begin(), record.owners.end(), [&](const ProcessIdentity& owner) {
            return std::any_of(request.requesters.begin(), request.requesters.end(),
                               [&](const ProcessIdentity& r) { return same_process(owner, r); });
        });
        if (!mine && !request.force) {
            auto holder = record.live_owner().value_or(record.owners.front());
            refused = Problem{ExitCode::not_owner,
                              fmt::format("locked by {} since {}, not by this process or an ancestor of it (root may use --force)",
                                          describe_process(holder.pid, record.command), format_clock(record.since))};
            return changed;
        }
        account_status(record, request.status, now, request.limits, notes);
        clear_owners(record);
        return true;
    });
    emit(log, notes);
    if (!written) return written.problem();
    if (refused) return *refused;
    return *written;
}

Result<LockRecord> add_lock_owner(const LockDir& dir, std::string_view volume_id, const ProcessIdentity& holder,
                                  const ProcessIdentity& owner) {
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    std::optional<Problem> refused;
    auto written = file->update([&](LockRecord& record) {
        if (record.owners.empty()) {
            refused = Problem{ExitCode::not_locked, "not locked"};
            return false;
        }
        if (std::none_of(record.owners.begin(), record.owners.end(), [&](const ProcessIdentity& o) { return same_process(o, holder); })) {
            refused = Problem{ExitCode::not_owner, fmt::format("locked by pid {}, not by pid {}", record.owners.front().pid, holder.pid)};
            return false;
        }
        if (std::any_of(record.owners.begin(), record.owners.end(), [&](const ProcessIdentity& o) { return same_process(o, owner); }))
            return false;
        record.owners.push_back(owner);  // after the holder, who stays the one named
        return true;
    });
    if (!written) return written.problem();
    if (refused) return *refused;
    return *written;
}

Result<LockRecord> remove_lock_owner(const LockDir& dir, std::string_view volume_id, const ProcessIdentity& owner) {
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    return file->update([&](LockRecord& record) {
        auto is_owner = [&](const ProcessIdentity& o) { return same_process(o, owner); };
        // The last owner leaves only through release_volume_lock, which accounts.
        if (record.owners.size() < 2 || std::none_of(record.owners.begin(), record.owners.end(), is_owner)) return false;
        std::erase_if(record.owners, is_owner);
        return true;
    });
}

Result<LockRecord> record_attempt(const LockDir& dir, std::string_view volume_id, const LockLimits& limits,
                                  const LockLog& log) {
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    std::vector<std::string> notes;
    auto written = file->update([&](LockRecord& record) {
        tidy_record(record, is_alive, limits, notes);
        record.attempts += 1;
        update_gave_up(record, limits, notes);
        return true;
    });
    emit(log, notes);
    return written;
}

Result<LockRecord> tidy_volume_lock(const LockDir& dir, std::string_view volume_id, const LockLimits& limits,
                                    const LockLog& log) {
    auto file = dir.volume_file(volume_id);
    if (!file) return file.problem();
    std::vector<std::string> notes;
    auto written = file->update([&](LockRecord& record) { return tidy_record(record, is_alive, limits, notes); });
    emit(log, notes);
    return written;
}

Result<std::optional<ProcessIdentity>> reboot_lock_owner(const LockDir& dir) {
    auto file = dir.reboot_file();
    if (!file) return file.problem();
    auto record = file->read();
    if (!record) return record.problem();
    return record->live_owner();
}

Result<std::vector<VolumeLockEntry>> list_volume_locks(const LockDir& dir) {
    std::vector<VolumeLockEntry> entries;
    auto ids = dir.volume_ids();
    if (!ids) return ids.problem();
    for (const auto& id : *ids) {
        auto record = dir.peek_volume(id);
        if (!record) return record.problem();
        entries.push_back(VolumeLockEntry{id, std::move(*record)});
    }
    return entries;
}

}  // namespace volwatch
