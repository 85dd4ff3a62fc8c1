#include "volwatch/report.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/fd.hpp"
#include "volwatch/helper_device.hpp"
#include "volwatch/process.hpp"

namespace volwatch {

std::string_view to_string(VolumeState state) {
    switch (state) {
    case VolumeState::clean: return "clean";
    case VolumeState::stale: return "stale";
    case VolumeState::locked: return "locked";
    case VolumeState::config_error: return "config-error";
    case VolumeState::gave_up: return "gave-up";
    case VolumeState::absent: return "absent";
    }
    return "config-error";
}

bool VolumeReport::needs_update() const {
    for (const auto& cache : caches)
        if (cache.state != CacheState::clean) return true;
    for (const auto& helper : helpers)
        if (helper.state != CacheState::clean) return true;
    return false;
}

VolumeReport inspect_volume(const Volume& volume, const HostConfig& host, const InspectOptions& options) {
    VolumeReport report;
    report.volume = volume;

    // Through LockDir, so a lock directory the lockers would refuse
    // (symlinked, writable by others) is not believed here either.
    std::optional<LockDir> opened;
    const LockDir* locks = options.locks;
    if (locks == nullptr) {
        auto dir = LockDir::open(host.lock_dir, LockDirAccess::read);
        if (dir) locks = &opened.emplace(std::move(*dir));
        else report.lock_problem = dir.problem().message;
    }
    auto record = locks != nullptr ? locks->peek_volume(volume.id.value) : Result<LockRecord>(LockRecord{});
    if (!record) {
        report.lock_problem = record.problem().message;
    } else {
        const LockRecord& lock = *record;
        // Counted as the locker that tidies it will record it, so the numbers
        // do not jump when that happens (tidy_record on a copy: read-only).
        LockRecord tidied = lock;
        std::vector<std::string> notes;
        if (auto owner = lock.live_owner()) {
            report.lock = LockHolder{owner->pid, lock.command, lock.purpose, lock.since};
        } else if (!lock.owners.empty()) {
            report.abandoned = AbandonedLock{lock.owners.front().pid, lock.command, lock.purpose, lock.since, {}};
            for (const auto& dead : lock.owners) report.abandoned->owners.push_back(dead.pid);
            tidy_record(tidied, is_alive, lock_limits(host), notes);
        }
        report.failures = tidied.failures;
        report.attempts = tidied.attempts;
        report.gave_up = over_limits(tidied, host.max_failures, host.max_attempts);
        for (const auto& waiter : lock.live_waiters()) report.waiters.push_back(waiter.who.pid);
    }

    if (!volume.mounted) {
        report.state = VolumeState::absent;
        report.problem = fmt::format("{} does not exist or is not mounted", volume.root.string());
        return report;
    }
    UniqueFd root(::open(volume.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
        report.state = VolumeState::absent;
        report.problem = fmt::format("{}: {}", volume.root.string(), std::strerror(errno));
        return report;
    }
    auto config = load_volume_config(root.get(), volume.root, host);
    if (!config) {
        bool missing = config.problem().code == ExitCode::unknown_volume;
        report.state = missing ? VolumeState::absent : VolumeState::config_error;
        report.problem = config.problem().message;
        return report;
    }
    for (const CacheSpec& spec : config->caches) {
        report.caches.push_back(check_cache(root.get(), spec, host, {options.threads, options.deep}));
    }
    if (!config->helper_files.empty()) {
        for (const auto& target : helper_targets_for(volume, host))
            report.helpers.push_back(check_helper_target(root.get(), *config, target, options.deep));
    }

    bool any_error = false;
    for (const auto& cache : report.caches) any_error |= cache.state == CacheState::error;
    if (report.lock) report.state = VolumeState::locked;
    else if (any_error) report.state = VolumeState::config_error;
    else if (report.needs_update() && report.gave_up) report.state = VolumeState::gave_up;
    else if (report.needs_update()) report.state = VolumeState::stale;
    else report.state = VolumeState::clean;
    if (any_error && report.problem.empty()) {
        for (const auto& cache : report.caches)
            if (cache.state == CacheState::error) {
                report.problem = fmt::format("{}: {}", cache.name, cache.reason);
                break;
            }
    }
    return report;
}

}  // namespace volwatch
