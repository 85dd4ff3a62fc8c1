// The lock directory and its protocol (DESIGN §4, docs/locking.md): FIFO
// volume locks kept as record files under flock(2), held while an owner
// process lives, with per-volume error accounting and the reboot lock.
//
// Every change is a short read-modify-write under LOCK_EX on the record's
// guard file that never waits for anything but another such section. Guards
// live in guard/ (0700) and are 0600: only writers can open them, so no
// other user can hold a flock that stalls a writer (flock(2) needs only a
// read-only descriptor). Records stay 0644 and are read without a lock.
// Waiting for a lock happens outside any flock, on inotify (the record
// changed) and pidfds (a process the waiter depends on exited).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/lock_record.hpp"
#include "volwatch/process.hpp"

namespace volwatch {

/// Whether a process still runs; the protocol takes it as a parameter so
/// unit tests can decide liveness without real processes.
using Liveness = std::function<bool(const ProcessIdentity&)>;

/// Receives one line per notable event ("pid 4242 (...) exited without
/// unlocking; ..."), without program name or volume; may be empty.
using LockLog = std::function<void(const std::string&)>;

/// When volwatch gives up on a volume (from the host config).
struct LockLimits {
    int max_failures = 5;
    int max_attempts = 25;
};
[[nodiscard]] LockLimits lock_limits(const HostConfig& host);

class LockFile;

enum class LockDirAccess { read, write };

/// An open lock directory whose ownership and mode were checked.
class LockDir {
public:
    /// Opens the lock directory at `path`. Refuses (permission) a symlink, a
    /// non-directory, one owned by anyone but root or the caller, and one
    /// writable by group or others. With write access it creates the
    /// directory and volumes/ (0755) when missing and fails with permission
    /// ("permission denied") unless the caller is root or owns the directory.
    /// With write access it also creates and checks guard/ (0700), refusing
    /// one that others can write; one that others can read is made 0700.
    /// With read access a missing directory is not an error: exists() is false.
    [[nodiscard]] static Result<LockDir> open(const std::filesystem::path& path, LockDirAccess access);

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] bool exists() const noexcept { return dir_.valid(); }
    [[nodiscard]] bool writable() const noexcept { return writable_; }

    /// The record file of volume `volume_id` ("uuid-...", a file-name-safe
    /// id), created 0644 when missing with write access, with its guard
    /// (0600). Refuses a symlink, a hard link, a non-regular file and a file
    /// writable by group or others, for the record and the guard alike.
    [[nodiscard]] Result<LockFile> volume_file(std::string_view volume_id) const;
    /// The record of volume `volume_id` as it is now, read-only whatever the
    /// access (nothing is created; a missing record reads as free).
    [[nodiscard]] Result<LockRecord> peek_volume(std::string_view volume_id) const;
    /// The reboot lock's record file, created like volume_file's.
    [[nodiscard]] Result<LockFile> reboot_file() const;
    /// The ids of every volume record present, sorted.
    [[nodiscard]] Result<std::vector<std::string>> volume_ids() const;

private:
    // An empty guard_name opens the record read-only, without its guard.
    [[nodiscard]] Result<LockFile> open_file(int dir_fd, const std::string& name, const std::string& guard_name,
                                             const std::filesystem::path& shown) const;
    [[nodiscard]] Result<UniqueFd> open_checked(int dir_fd, const std::string& name, const std::filesystem::path& shown,
                                                mode_t mode, bool write) const;
    std::filesystem::path path_;
    UniqueFd dir_;
    UniqueFd volumes_;
    UniqueFd guards_;
    bool writable_ = false;
    uid_t owner_ = 0;
};

/// One record file. A default-constructed or missing one reads as free.
class LockFile {
public:
    LockFile() = default;
    LockFile(UniqueFd fd, UniqueFd guard, std::filesystem::path path)
        : fd_(std::move(fd)), guard_(std::move(guard)), path_(std::move(path)) {}

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    /// The guard file that RecordLock flocks; -1 when opened for reading.
    [[nodiscard]] int guard() const noexcept { return guard_.get(); }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    /// The record: under the guard's LOCK_SH when open for writing, else
    /// without a lock (see read_lock_record).
    [[nodiscard]] Result<LockRecord> read() const;
    /// The record, read while the caller holds a RecordLock on this file.
    [[nodiscard]] Result<LockRecord> read_held() const;
    /// Rewrites the record in place while the caller holds an exclusive
    /// RecordLock: pwrite at offset 0, then truncate (see lock_record.hpp).
    [[nodiscard]] Status write_held(const LockRecord& record) const;
    /// One read-modify-write under LOCK_EX: `change` edits the record and
    /// returns true if it must be written back. `change` must never wait.
    [[nodiscard]] Result<LockRecord> update(const std::function<bool(LockRecord&)>& change) const;

private:
    UniqueFd fd_;
    UniqueFd guard_;
    std::filesystem::path path_;
};

/// flock(2) on a record's guard file for one short critical section;
/// released on destruction. Take the reboot lock's before any volume's (the
/// one order vlock and vrebootgate share, so neither can deadlock the
/// other). Throws Failure (internal) on a record opened only for reading.
class RecordLock {
public:
    RecordLock(const LockFile& file, bool exclusive);
    ~RecordLock();
    RecordLock(const RecordLock&) = delete;
    RecordLock& operator=(const RecordLock&) = delete;

private:
    int fd_;
};

// ---- The protocol on a record, free of I/O (unit-tested with fake liveness).

/// Clears an owner list in which nobody lives (a failed update, noted as
/// "... exited without unlocking") and drops waiters that died. Returns true
/// if the record changed.
bool tidy_record(LockRecord& record, const Liveness& alive, const LockLimits& limits,
                 std::vector<std::string>& notes);

/// Applies the exit `status` of an update to the accounting: 0 resets
/// failures and attempts (noting "recovered" after failures), 75 changes
/// nothing but last_status, anything else counts a consecutive failure.
/// Sets gave_up (noting it once) when a limit is reached.
void account_status(LockRecord& record, int status, double now, const LockLimits& limits,
                    std::vector<std::string>& notes);

/// "busy: held by pid 4242 (update-initramfs -u) since 12:03:04, 2 waiting";
/// waiters counted are the live ones other than `self`.
[[nodiscard]] std::string busy_message(const LockRecord& record, const Liveness& alive,
                                       const std::optional<ProcessIdentity>& self = std::nullopt);

/// True when `waiter` may take the lock now: nobody alive owns it and no live
/// waiter is ahead of `waiter` (a waiter not in the queue counts as last).
[[nodiscard]] bool may_take(const LockRecord& record, const ProcessIdentity& waiter, const Liveness& alive);

// ---- Operations on a lock directory.

struct AcquireRequest {
    std::string volume;                  // shown in the record: the volume root
    std::vector<ProcessIdentity> owners; // hold the lock once granted; the first is named as the holder
    std::string command;                 // the holder's command line
    std::string purpose;                 // "vlock", "vrebuild", ...
    std::optional<Duration> wait;        // nullopt: answer busy at once; Duration::max(): no bound
    std::optional<ProcessIdentity> waiter;  // the process that queues; default: the caller
    int interrupt_fd = -1;               // readable (a signalfd): stop waiting, fail as interrupted
    LockLimits limits;
};

struct Grant {
    LockRecord record;                   // as written when the lock was granted
    std::chrono::milliseconds waited{0};
    UniqueFd watch;                      // the inotify instance of a waiter that slept; see retire_watch
};

/// Closes a waiter's inotify instance off the caller's path. The kernel
/// tears one down only after an SRCU grace period (about 10 ms, measured on
/// 6.x), which a plain close() or the process's exit would wait for: a
/// detached grandchild holding the last reference pays it instead.
void retire_watch(UniqueFd watch);

/// Takes the lock of volume `volume_id` for `request.owners`, in FIFO order
/// with other waiters. Fails with busy ("busy: held by ...") when not
/// waiting or when the wait ends, reboot_in_progress ("reboot in progress")
/// while reboot.lock has a live owner, busy ("interrupted") when
/// interrupt_fd became readable, internal for I/O errors.
[[nodiscard]] Result<Grant> acquire_volume_lock(const LockDir& dir, std::string_view volume_id,
                                                const AcquireRequest& request, const LockLog& log = {});

struct ReleaseRequest {
    std::vector<ProcessIdentity> requesters;  // an owner among them may release (the caller, its ancestors)
    int status = 0;                           // the update's exit status
    bool force = false;                       // release whoever owns it
    LockLimits limits;
};

/// Releases the lock of `volume_id` and accounts `status`; the next FIFO
/// waiter wakes on the rewrite. Fails with not_locked or not_owner (naming
/// the holder). Returns the record as written.
[[nodiscard]] Result<LockRecord> release_volume_lock(const LockDir& dir, std::string_view volume_id,
                                                     const ReleaseRequest& request, const LockLog& log = {});

/// Adds `owner` to the owners of the lock of `volume_id`, which `holder` must
/// own: a command the holder runs under the lock (vrebuild's rebuilder, as
/// vlock's CMD) then keeps it held if the holder dies. Fails with not_locked,
/// or not_owner when `holder` does not own it. Returns the record as written.
[[nodiscard]] Result<LockRecord> add_lock_owner(const LockDir& dir, std::string_view volume_id,
                                                const ProcessIdentity& holder, const ProcessIdentity& owner);

/// Removes `owner` (added by add_lock_owner) from the owners of the lock of
/// `volume_id` again, if it is there and another owner remains; never frees
/// the lock. Returns the record as it is afterwards.
[[nodiscard]] Result<LockRecord> remove_lock_owner(const LockDir& dir, std::string_view volume_id,
                                                   const ProcessIdentity& owner);

/// Counts one automatic rebuild launch (vwatch) and returns the record;
/// gave_up is set once max_attempts is reached.
[[nodiscard]] Result<LockRecord> record_attempt(const LockDir& dir, std::string_view volume_id,
                                                const LockLimits& limits, const LockLog& log = {});

/// Applies tidy_record to a volume's record now (vwatch calls it when an
/// owner's pidfd fires, so the failure is counted at once).
[[nodiscard]] Result<LockRecord> tidy_volume_lock(const LockDir& dir, std::string_view volume_id,
                                                  const LockLimits& limits, const LockLog& log = {});

/// The live owner of reboot.lock, if any. Read-only.
[[nodiscard]] Result<std::optional<ProcessIdentity>> reboot_lock_owner(const LockDir& dir);

struct VolumeLockEntry {
    std::string volume_id;
    LockRecord record;
};

/// Every volume record in the directory, sorted by id. Read-only: dead
/// owners are reported as they are, not cleared.
[[nodiscard]] Result<std::vector<VolumeLockEntry>> list_volume_locks(const LockDir& dir);

}  // namespace volwatch
