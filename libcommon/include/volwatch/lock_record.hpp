// The lock record (DESIGN §4): the small text file volumes/<id>.lock (or
// reboot.lock) in the lock directory. It names the owners, the command, the
// purpose and the time taken, the FIFO of waiters, and the volume's error
// accounting. Records are rewritten in place by writers holding flock(2) on
// a private guard file (lockdir.hpp), and read by anyone without a lock.
//
// Format, one "key=value" per line, unknown keys ignored (newer writers):
//   volwatch-lock=1
//   volume=/srv/images/rootfs          root as the locker named it
//   owner=4242:123456:<boot-id>        pid:start-ticks:boot-id, repeatable
//   command=update-initramfs -u
//   purpose=vrebuild
//   since=1764042184.250               unix seconds
//   waiter=7:4250:123470:<boot-id>     ticket:pid:start-ticks:boot-id, FIFO order
//   next_ticket=8
//   failures=0   attempts=0   last_status=0   last_success=1764040000   gave_up=0
//   end=<16 hex digits>                FNV-1a of everything above; lines after it are ignored
//
// The end line makes a rewrite that was cut short detectable: the writer
// pwrite()s the new text at offset 0 and then truncates, so a writer killed
// between the two leaves the tail of the old text behind the end line, where
// it is ignored. Records without an end line (hand-written) are accepted whole.
// last_status is -1 when the owner exited without unlocking.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "volwatch/error.hpp"
#include "volwatch/process.hpp"

namespace volwatch {

struct LockWaiter {
    std::uint64_t ticket = 0;
    ProcessIdentity who;
};

struct LockRecord {
    std::string volume;
    std::vector<ProcessIdentity> owners;  // empty: not locked
    std::string command;
    std::string purpose;
    double since = 0;                     // unix time the lock was taken
    std::vector<LockWaiter> waiters;      // in arrival order
    std::uint64_t next_ticket = 1;
    int failures = 0;                     // consecutive failed updates
    int attempts = 0;                     // automatic launches since the last success
    int last_status = 0;
    double last_success = 0;              // unix time, 0 = never
    bool gave_up = false;
    bool damaged = false;                 // the end line did not match: nothing above is trusted

    /// True when an owner is listed and at least one of them is alive.
    [[nodiscard]] bool held() const;
    /// The first live owner, if any.
    [[nodiscard]] std::optional<ProcessIdentity> live_owner() const;
    /// Waiters whose processes are alive, in FIFO order.
    [[nodiscard]] std::vector<LockWaiter> live_waiters() const;
};

/// Serialises `record` in the format above.
[[nodiscard]] std::string format_lock_record(const LockRecord& record);

/// Parses record text. Garbage lines are ignored, so a damaged record reads as
/// free with zero counters rather than wedging a volume.
[[nodiscard]] LockRecord parse_lock_record(std::string_view text);

/// Reads the record from `fd` (a record file opened for reading) without
/// taking any lock, re-reading while a concurrent rewrite shows through;
/// fails (internal, permission) only on I/O errors.
[[nodiscard]] Result<LockRecord> read_lock_record(int fd, const std::filesystem::path& shown);

/// True when the error accounting says volwatch has given up on the volume.
[[nodiscard]] bool over_limits(const LockRecord& record, int max_failures, int max_attempts);

}  // namespace volwatch
