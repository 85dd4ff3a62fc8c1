// vrebootgate: the shutdown gate (DESIGN §4). It waits until every volume is
// consistent (launching vrebuild for stale ones), then takes the reboot lock,
// which refuses new volume locks until its owner dies.
#pragma once

#include <chrono>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "volwatch/clock.hpp"
#include "volwatch/config.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/error.hpp"
#include "volwatch/exit_codes.hpp"
#include "volwatch/log.hpp"
#include "volwatch/process.hpp"
#include "volwatch/volume.hpp"

namespace volwatch {

struct GateOptions {
    std::optional<Duration> wait;   // --wait; Duration::max() = no bound; nullopt = answer at once
    std::optional<pid_t> owner;     // --owner; default: the caller's parent
    bool json = false;
    bool quiet = false;
    bool status = false;            // --status: report only
    bool release = false;           // --release: drop the reboot lock (root)
    HostOverrides host;
    std::string vrebuild;           // the program to launch; "" = locate it like vwatch does
};

/// Runs the gate. Returns 0 when the reboot lock was granted (or, with
/// --status, when it is held or nothing blocks), 6 when it was already held
/// (proceed), 75 when something still blocks at the end of the wait,
/// 3 for --release of a lock nobody holds, and the table's other codes.
[[nodiscard]] ExitCode run_vrebootgate(const GateOptions& options, std::ostream& out, std::ostream& err);

// ---- The gate's decisions over a small world, so that its waiting, back-off
// and bound are unit-tested with a fake clock (tests/unit/test_reboot_gate.cpp).

/// A volume that keeps the reboot lock from being granted now.
struct GateBlocker {
    Volume volume;
    std::string reason;                    // "vrebuild running, pid 4242, 42 s" or "initramfs: stale: ..."
    std::optional<ProcessIdentity> owner;  // a lock holder whose exit wakes the gate
    bool locked = false;
};

/// A volume that needs an update but does not delay shutdown (over its limits, bad config).
struct GateExcepted {
    Volume volume;
    std::string reason;
};

struct GateEvaluation {
    std::vector<GateBlocker> blockers;
    std::vector<GateExcepted> excepted;
};

enum class GrantOutcome { granted, already, blocked };

struct GrantAnswer {
    GrantOutcome outcome = GrantOutcome::blocked;
    std::vector<GateBlocker> held;  // blocked: the volume locks found held, as blockers
};

/// Between relaunches of a volume whose vrebuild ended without progress:
/// doubling from the first delay, up to the cap.
inline constexpr std::chrono::milliseconds gate_first_retry_delay{1000};
inline constexpr std::chrono::milliseconds gate_max_retry_delay{30'000};
/// How long, after the bound, the gate waits for the vrebuilds it stopped
/// (vrebuild gives its rebuilder 5 s between SIGTERM and SIGKILL).
inline constexpr std::chrono::milliseconds gate_stop_grace{10'000};

/// What the gate needs of the system: the lock directory, the volumes, its
/// vrebuild children and a way to sleep. Calls throw Failure on real failures.
class GateWorld {
public:
    virtual ~GateWorld() = default;
    /// The reboot lock's live owner, if it is held.
    [[nodiscard]] virtual std::optional<pid_t> reboot_holder() = 0;
    /// What blocks now; `launches` counts the rebuilds this run started per volume id.
    [[nodiscard]] virtual GateEvaluation evaluate(const std::map<std::string, int>& launches) = 0;
    /// Takes the reboot lock if it is free and no volume lock is held.
    [[nodiscard]] virtual GrantAnswer try_grant() = 0;
    /// Starts vrebuild for `volume`; its pid, or why it could not start.
    [[nodiscard]] virtual Result<pid_t> launch(const Volume& volume) = 0;
    /// The started vrebuilds that ended since the last call, with their exit
    /// status (128 + N after signal N).
    [[nodiscard]] virtual std::vector<std::pair<pid_t, int>> reap() = 0;
    /// Sleeps until a lock, a blocker's owner or a child may have changed, or
    /// until `wake` (TimePoint::max(): no bound).
    virtual void wait(const GateEvaluation& now, Clock::TimePoint wake) = 0;
    /// Sends SIGTERM to `pids` and waits up to `grace` for them; returns those still running.
    [[nodiscard]] virtual std::vector<pid_t> stop(const std::vector<pid_t>& pids, Clock::Duration grace) = 0;
};

/// The gate for `owner` (the process the reboot lock will belong to): waits
/// within options.wait for every blocker, relaunching vrebuild with back-off,
/// then takes the reboot lock. Returns as run_vrebootgate does; progress and
/// events go to `log`, the --json result to `out`, "reboot already in
/// progress" to `err`.
[[nodiscard]] ExitCode run_gate(const GateOptions& options, pid_t owner, GateWorld& world, const Clock& clock, Logger& log,
                                std::ostream& out, std::ostream& err);

}  // namespace volwatch
