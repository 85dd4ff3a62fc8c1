// The reboot gate's decisions (waiting, back-off, bound, grant) over a fake
// world and a fake clock: time moves only when the gate sleeps, straight to
// the next thing that would wake it, so every figure below is exact.
// tests/cli/vrebootgate.bats drives the real program end to end.
#include "volwatch/reboot_gate.hpp"

#include <algorithm>
#include <sstream>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace volwatch {
namespace {

using namespace std::chrono_literals;
using TimePoint = Clock::TimePoint;

class FakeClock final : public Clock {
public:
    [[nodiscard]] TimePoint now() const override { return now_; }
    void set(TimePoint t) { now_ = t; }

private:
    TimePoint now_ = TimePoint{} + 1000h;
};

struct FakeVolume {
    Volume volume;
    bool stale = false;
    bool gave_up = false;                   // over its limits before the gate ran
    std::optional<TimePoint> locked_until;  // a vlock holder until then
    int rebuild_status = 0;                 // what each vrebuild of it exits with
    Clock::Duration rebuild_takes = 0s;
    bool rebuild_hangs = false;
};

FakeVolume volume_at(const std::string& root) {
    FakeVolume v;
    v.volume.root = root;
    v.volume.id = VolumeId{"path-" + root.substr(1)};
    return v;
}

// Volumes, locks and vrebuilds as plain state; wait() moves the clock to the
// first moment anything changes, or to the wake time the gate asked for.
class FakeWorld final : public GateWorld {
public:
    explicit FakeWorld(FakeClock& clock) : clock_(clock) {}

    std::vector<FakeVolume> volumes;
    int max_attempts = 25;
    std::optional<pid_t> reboot_held;
    std::vector<std::pair<std::string, Clock::Duration>> launched;  // volume id, when (from the start)
    std::vector<pid_t> stopped;
    int waits = 0;

    std::optional<pid_t> reboot_holder() override { return reboot_held; }

    GateEvaluation evaluate(const std::map<std::string, int>& launches) override {
        GateEvaluation e;
        for (const FakeVolume& v : volumes) {
            if (locked(v)) {
                e.blockers.push_back({v.volume, "vlock running, pid 777, 0 s", ProcessIdentity{777, 1, "boot"}, true});
                continue;
            }
            if (!v.stale) continue;
            auto n = launches.find(v.volume.id.value);
            if (v.gave_up || (n != launches.end() && n->second >= max_attempts)) {
                e.excepted.push_back({v.volume, "gave up; not waiting for it (pack: product missing)"});
                continue;
            }
            e.blockers.push_back({v.volume, "pack: product missing (out/pack.tgz)", std::nullopt, false});
        }
        return e;
    }

    GrantAnswer try_grant() override {
        GrantAnswer answer;
        if (reboot_held) {
            answer.outcome = GrantOutcome::already;
            return answer;
        }
        for (const FakeVolume& v : volumes)
            if (locked(v)) answer.held.push_back({v.volume, "vlock running", std::nullopt, true});
        if (!answer.held.empty()) return answer;
        reboot_held = 4242;
        answer.outcome = GrantOutcome::granted;
        return answer;
    }

    Result<pid_t> launch(const Volume& volume) override {
        launched.emplace_back(volume.id.value, clock_.now() - start);
        const FakeVolume& v = find(volume.id.value);
        running_.push_back({next_pid_, volume.id.value, clock_.now() + v.rebuild_takes, v.rebuild_status, v.rebuild_hangs});
        return next_pid_++;
    }

    std::vector<std::pair<pid_t, int>> reap() override {
        std::vector<std::pair<pid_t, int>> ended;
        for (auto it = running_.begin(); it != running_.end();) {
            if (it->hangs || it->ends > clock_.now()) {
                ++it;
                continue;
            }
            if (it->status == 0) find(it->volume_id).stale = false;
            ended.emplace_back(it->pid, it->status);
            it = running_.erase(it);
        }
        return ended;
    }

    void wait(const GateEvaluation&, TimePoint wake) override {
        ++waits;
        TimePoint next = wake;
        for (const Run& run : running_)
            if (!run.hangs) next = std::min(next, run.ends);
        for (const FakeVolume& v : volumes)
            if (locked(v)) next = std::min(next, *v.locked_until);
        if (next == TimePoint::max()) throw std::logic_error("the gate would sleep forever");
        clock_.set(std::max(next, clock_.now()));
    }

    std::vector<pid_t> stop(const std::vector<pid_t>& pids, Clock::Duration grace) override {
        EXPECT_EQ(grace, gate_stop_grace);
        stopped = pids;
        std::erase_if(running_, [&](const Run& run) { return std::ranges::count(pids, run.pid) != 0; });
        return {};
    }

    TimePoint start;

private:
    struct Run {
        pid_t pid;
        std::string volume_id;
        TimePoint ends;
        int status;
        bool hangs;
    };

    bool locked(const FakeVolume& v) const { return v.locked_until && clock_.now() < *v.locked_until; }
    FakeVolume& find(const std::string& id) {
        return *std::ranges::find_if(volumes, [&](const FakeVolume& v) { return v.volume.id.value == id; });
    }

    FakeClock& clock_;
    std::vector<Run> running_;
    pid_t next_pid_ = 1000;
};

class GateTest : public ::testing::Test {
protected:
    GateTest() { world.start = clock.now(); }

    ExitCode run(std::optional<Duration> wait) {
        options.wait = wait;
        Logger log(LogLevel::debug, std::make_unique<testing::RecordingSink>("vrebootgate", records));
        return run_gate(options, 4242, world, clock, log, out, err);
    }

    [[nodiscard]] Clock::Duration elapsed() const { return clock.now() - world.start; }

    [[nodiscard]] std::vector<const testing::LoggedRecord*> events(Event event) const {
        std::vector<const testing::LoggedRecord*> found;
        for (const auto& r : records)
            if (r.event == event) found.push_back(&r);
        return found;
    }

    [[nodiscard]] bool logged(const std::string& text) const {
        return std::ranges::any_of(records, [&](const auto& r) { return r.line.find(text) != std::string::npos; });
    }

    FakeClock clock;
    FakeWorld world{clock};
    GateOptions options;
    std::vector<testing::LoggedRecord> records;
    std::ostringstream out, err;
};

TEST_F(GateTest, EverythingCleanIsGrantedAtOnceWithoutWaiting) {
    world.volumes = {volume_at("/"), volume_at("/srv/img")};
    EXPECT_EQ(run(Duration(10min)), ExitCode::ok);
    EXPECT_EQ(elapsed(), 0s);
    EXPECT_EQ(world.waits, 0);
    EXPECT_TRUE(world.launched.empty());
    EXPECT_EQ(world.reboot_held, 4242);
    EXPECT_TRUE(logged("reboot lock granted to pid 4242"));
    EXPECT_TRUE(events(Event::shutdown_delay_begins).empty());
    EXPECT_TRUE(events(Event::shutdown_delay_ends).empty());
}

TEST_F(GateTest, WaitsForALockedVolumeAndProceedsTheMomentItFrees) {
    world.volumes = {volume_at("/")};
    world.volumes[0].locked_until = clock.now() + 7s;
    EXPECT_EQ(run(Duration(10min)), ExitCode::ok);
    EXPECT_EQ(elapsed(), 7s);
    EXPECT_TRUE(world.launched.empty()) << "a locked volume is someone else's rebuild: never launch over it";
    EXPECT_TRUE(logged("waiting for /: vlock running, pid 777"));
    auto begins = events(Event::shutdown_delay_begins);
    ASSERT_EQ(begins.size(), 1u);
    EXPECT_EQ(begins[0]->line, "shutdown delay begins: waiting for / (1 volume) event=shutdown-delay-begins");
    EXPECT_EQ(begins[0]->fields.volumes, std::vector<std::string>{"/"});
    EXPECT_EQ(begins[0]->fields.status, "waiting");
    auto ends = events(Event::shutdown_delay_ends);
    ASSERT_EQ(ends.size(), 1u);
    EXPECT_EQ(ends[0]->line, "shutdown delay ends after 7.0 s event=shutdown-delay-ends");
    EXPECT_EQ(ends[0]->fields.status, "granted");
    EXPECT_EQ(ends[0]->fields.seconds, 7.0);
    EXPECT_EQ(ends[0]->fields.pid, 4242);
}

TEST_F(GateTest, WithoutWaitALockedVolumeIsBusyAtOnce) {
    world.volumes = {volume_at("/")};
    world.volumes[0].locked_until = clock.now() + 7s;
    EXPECT_EQ(run(std::nullopt), ExitCode::busy);
    EXPECT_EQ(elapsed(), 0s);
    EXPECT_EQ(world.waits, 0);
    EXPECT_FALSE(world.reboot_held);
    EXPECT_TRUE(logged("/: busy: vlock running, pid 777"));
    EXPECT_TRUE(events(Event::shutdown_delay_begins).empty());
}

TEST_F(GateTest, AStaleVolumeIsRebuiltThenGranted) {
    world.volumes = {volume_at("/")};
    world.volumes[0].stale = true;
    world.volumes[0].rebuild_takes = 5s;
    EXPECT_EQ(run(Duration(10min)), ExitCode::ok);
    EXPECT_EQ(elapsed(), 5s);
    ASSERT_EQ(world.launched.size(), 1u);
    EXPECT_EQ(world.launched[0].second, 0s);
    EXPECT_TRUE(logged("waiting for /: pack: product missing (out/pack.tgz); rebuilding, vrebuild pid 1000"));
}

TEST_F(GateTest, TheBoundEndsTheWaitExactlyThereAndStopsTheRebuildItStarted) {
    world.volumes = {volume_at("/"), volume_at("/srv/img")};
    world.volumes[1].stale = true;
    world.volumes[1].rebuild_hangs = true;
    options.json = true;
    EXPECT_EQ(run(Duration(30s)), ExitCode::busy);
    EXPECT_EQ(elapsed(), 30s);
    EXPECT_EQ(world.stopped, std::vector<pid_t>{1000});
    EXPECT_FALSE(world.reboot_held);
    EXPECT_TRUE(logged("/srv/img: still blocking after 30.0 s: pack: product missing (out/pack.tgz); rebuilding, vrebuild pid 1000"));
    auto ends = events(Event::shutdown_delay_ends);
    ASSERT_EQ(ends.size(), 1u);
    EXPECT_EQ(ends[0]->line,
              "shutdown delay ends after 30.0 s without the reboot lock; stopped 1 vrebuild (pid 1000) event=shutdown-delay-ends");
    EXPECT_EQ(ends[0]->fields.status, "timed-out");
    EXPECT_EQ(ends[0]->fields.volumes, std::vector<std::string>{"/srv/img"});
    EXPECT_EQ(ends[0]->fields.seconds, 30.0);
    EXPECT_NE(out.str().find("\"waited_seconds\": 30.0"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("\"exit_code\": 75"), std::string::npos) << out.str();
}

TEST_F(GateTest, BackOffBetweenRelaunchesDoublesUpToItsCapAndTryLaterNeverUsesUpAttempts) {
    world.max_attempts = 3;
    world.volumes = {volume_at("/")};
    world.volumes[0].stale = true;
    world.volumes[0].rebuild_status = 75;  // "busy, try later", at once, every time
    EXPECT_EQ(run(Duration(150s)), ExitCode::busy);
    EXPECT_EQ(elapsed(), 150s);
    std::vector<Clock::Duration> at;
    for (const auto& [id, when] : world.launched) at.push_back(when);
    // Gaps 1, 2, 4, 8, 16 s, then the 30 s cap; 9 launches although max_attempts is 3.
    EXPECT_EQ(at, (std::vector<Clock::Duration>{0s, 1s, 3s, 7s, 15s, 31s, 61s, 91s, 121s}));
    EXPECT_EQ(gate_first_retry_delay, 1s);
    EXPECT_EQ(gate_max_retry_delay, 30s);
    EXPECT_TRUE(logged("vrebuild (pid 1000) exited with status 75; / is retried in 1 s at the earliest"));
    EXPECT_TRUE(logged("vrebuild (pid 1006) exited with status 75; / is retried in 30 s at the earliest"));
}

TEST_F(GateTest, FailedRebuildsUseUpMaxAttemptsAndThenTheVolumeStopsDelaying) {
    world.max_attempts = 3;
    world.volumes = {volume_at("/")};
    world.volumes[0].stale = true;
    world.volumes[0].rebuild_status = 70;
    world.volumes[0].rebuild_takes = 2s;
    EXPECT_EQ(run(Duration(10min)), ExitCode::ok);
    std::vector<Clock::Duration> at;
    for (const auto& [id, when] : world.launched) at.push_back(when);
    EXPECT_EQ(at, (std::vector<Clock::Duration>{0s, 3s, 7s}));  // each failure ends 2 s in; then 1 s, 2 s of back-off
    EXPECT_EQ(elapsed(), 9s);
    EXPECT_TRUE(logged("/: gave up; not waiting for it"));
    ASSERT_EQ(events(Event::shutdown_delay_ends).size(), 1u);
    EXPECT_EQ(events(Event::shutdown_delay_ends)[0]->fields.status, "granted");
}

TEST_F(GateTest, VolumesOverTheirLimitsDoNotDelayAtAll) {
    world.volumes = {volume_at("/"), volume_at("/srv/img")};
    world.volumes[1].stale = true;
    world.volumes[1].gave_up = true;
    EXPECT_EQ(run(Duration(10min)), ExitCode::ok);
    EXPECT_EQ(elapsed(), 0s);
    EXPECT_EQ(world.waits, 0);
    EXPECT_TRUE(world.launched.empty());
    EXPECT_TRUE(logged("/srv/img: gave up; not waiting for it (pack: product missing)"));
    EXPECT_TRUE(events(Event::shutdown_delay_begins).empty());
}

TEST_F(GateTest, ARebootAlreadyInProgressIsTheAnswerWhateverTheVolumesSay) {
    world.volumes = {volume_at("/")};
    world.volumes[0].stale = true;
    world.reboot_held = 1;
    options.json = true;
    EXPECT_EQ(run(Duration(10min)), ExitCode::reboot_already);
    EXPECT_EQ(elapsed(), 0s);
    EXPECT_TRUE(world.launched.empty());
    EXPECT_EQ(err.str(), "vrebootgate: reboot already in progress (held by pid 1); proceed\n");
    EXPECT_NE(out.str().find("\"already\": true"), std::string::npos) << out.str();
    EXPECT_TRUE(events(Event::shutdown_delay_begins).empty());
}

}  // namespace
}  // namespace volwatch
