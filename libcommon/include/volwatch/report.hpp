// A volume's whole status, as vcheck, vrebootgate and vwatch see it: its
// caches, its helpers, its lock and its error accounting. Building a report
// only reads: it takes no lock and writes nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/helpers.hpp"
#include "volwatch/lock_record.hpp"
#include "volwatch/lockdir.hpp"
#include "volwatch/staleness.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {

enum class VolumeState { clean, stale, locked, config_error, gave_up, absent };

/// "clean", "stale", "locked", "config-error", "gave-up", "absent".
[[nodiscard]] std::string_view to_string(VolumeState state);

struct LockHolder {
    pid_t pid = 0;
    std::string command;
    std::string purpose;
    double since = 0;
};

/// A lock whose owners have all died and that nobody has tidied yet (as
/// `vlock --list` shows it): the next locker, or vwatch, records it as a
/// failed update ("exited without unlocking").
struct AbandonedLock {
    pid_t pid = 0;              // the first owner, as the tidy note names it
    std::string command;
    std::string purpose;
    double since = 0;
    std::vector<pid_t> owners;  // every dead owner, in record order
};

struct VolumeReport {
    Volume volume;
    VolumeState state = VolumeState::clean;
    std::string problem;                 // config error or why absent
    std::vector<CacheVerdict> caches;
    std::vector<HelperVerdict> helpers;
    std::optional<LockHolder> lock;
    std::optional<AbandonedLock> abandoned;
    std::vector<pid_t> waiters;          // live waiters in FIFO order
    int failures = 0;                    // consecutive failures, counting an abandoned lock's as recorded

    int attempts = 0;
    bool gave_up = false;
    std::string lock_problem;            // the lock record could not be read

    /// True if a cache or helper needs work (whatever the volume's state).
    [[nodiscard]] bool needs_update() const;
};

struct InspectOptions {
    bool deep = false;       // deep checks for every cache, and hash helper copies
    unsigned threads = 0;    // 0: pick from the machine
    const LockDir* locks = nullptr;  // where to read lock records; null: open host.lock_dir for reading
};

/// Inspects `volume` under `host`: loads its config, checks caches in config
/// order and helpers, reads its lock record. Never throws for a bad volume;
/// problems land in the report.
[[nodiscard]] VolumeReport inspect_volume(const Volume& volume, const HostConfig& host, const InspectOptions& options);

}  // namespace volwatch
