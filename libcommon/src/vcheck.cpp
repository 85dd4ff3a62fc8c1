#include "volwatch/vcheck.hpp"

#include <algorithm>
#include <ostream>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/duration.hpp"
#include "volwatch/helpers.hpp"
#include "volwatch/process.hpp"
#include "volwatch/report.hpp"

namespace volwatch {
namespace {

struct Unknown {
    std::string argument;
    std::string message;
};

Tone tone_of(VolumeState state) {
    switch (state) {
    case VolumeState::clean: return Tone::good;
    case VolumeState::stale:
    case VolumeState::locked: return Tone::warn;
    case VolumeState::absent: return Tone::dim;
    default: return Tone::bad;
    }
}

Tone tone_of(CacheState state) {
    return state == CacheState::clean ? Tone::good : state == CacheState::stale ? Tone::warn : Tone::bad;
}

void render_human(const std::vector<VolumeReport>& reports, const HostConfig& host, std::ostream& out) {
    bool color = use_color(STDOUT_FILENO);
    for (const auto& report : reports) {
        out << fmt::format("{}: {} ({})\n", escape_for_terminal(report.volume.root.string()),
                           paint(to_string(report.state), tone_of(report.state), color), escape_for_terminal(report.volume.id.value));
        if (!report.problem.empty()) out << fmt::format("  {}\n", escape_for_terminal(report.problem));
        std::size_t width = 0;
        for (const auto& cache : report.caches) width = std::max(width, cache.name.size());
        for (const auto& cache : report.caches) {
            out << fmt::format("  {:<{}}  {}", escape_for_terminal(cache.name), width, paint(to_string(cache.state), tone_of(cache.state), color));
            if (!cache.reason.empty()) out << ": " << escape_for_terminal(cache.reason);
            out << '\n';
        }
        for (const auto& helper : report.helpers) {
            out << fmt::format("  helper {}  {}", escape_for_terminal(helper.target.string()), paint(to_string(helper.state), tone_of(helper.state), color));
            if (!helper.reason.empty()) out << ": " << escape_for_terminal(helper.reason);
            else if (helper.generation > 0) out << fmt::format(" (generation {})", helper.generation);
            out << '\n';
        }
        if (report.lock) {
            out << fmt::format("  rebuild in progress: held by pid {} ({}){} since {}", report.lock->pid,
                               report.lock->command.empty() ? "?" : escape_for_terminal(report.lock->command),
                               report.lock->purpose.empty() ? "" : ", " + escape_for_terminal(report.lock->purpose),
                               format_clock(report.lock->since));
            if (!report.waiters.empty()) out << fmt::format(", {} waiting", report.waiters.size());
            out << '\n';
        }
        if (report.abandoned)
            out << escape_for_terminal(fmt::format("  lock abandoned: {} exited without unlocking{}; not tidied yet, "
                                                   "counted below as the failed update it will be recorded as",
                                                   describe_process(report.abandoned->pid, report.abandoned->command),
                                                   report.abandoned->purpose.empty() ? "" : " (" + report.abandoned->purpose + ")"))
                << '\n';
        if (report.failures > 0 || report.attempts > 0 || report.gave_up)
            out << fmt::format("  failures {}/{}, attempts {}/{}{}\n", report.failures, host.max_failures, report.attempts,
                               host.max_attempts, report.gave_up ? "; gave up until a success or an explicit vrebuild" : "");
        if (!report.lock_problem.empty()) out << fmt::format("  lock record: {}\n", escape_for_terminal(report.lock_problem));
    }
}

nlohmann::json json_of(const VolumeReport& report) {
    nlohmann::json caches = nlohmann::json::array();
    for (const auto& cache : report.caches) {
        caches.push_back({{"name", cache.name},
                          {"state", std::string(to_string(cache.state))},
                          {"reason", cache.reason},
                          {"has_build_record", cache.has_record},
                          {"product_mtime_ns", cache.product_time},
                          {"newest_source_ns", cache.newest_source}});
    }
    nlohmann::json helpers = nlohmann::json::array();
    for (const auto& helper : report.helpers) {
        helpers.push_back({{"target", helper.target.string()},
                           {"state", std::string(to_string(helper.state))},
                           {"reason", helper.reason},
                           {"generation", helper.generation}});
    }
    nlohmann::json lock = nullptr;
    if (report.lock) {
        lock = {{"pid", report.lock->pid},
                {"command", report.lock->command},
                {"purpose", report.lock->purpose},
                {"since", format_utc(report.lock->since)},
                {"since_unix", report.lock->since}};
    }
    nlohmann::json abandoned = nullptr;
    if (report.abandoned) {
        abandoned = {{"pid", report.abandoned->pid},
                     {"command", report.abandoned->command},
                     {"purpose", report.abandoned->purpose},
                     {"since", format_utc(report.abandoned->since)},
                     {"since_unix", report.abandoned->since},
                     {"owners", report.abandoned->owners}};
    }
    return {{"root", report.volume.root.string()},
            {"id", report.volume.id.value},
            {"uuid", report.volume.id.uuid().empty() ? nlohmann::json(nullptr) : nlohmann::json(report.volume.id.uuid())},
            {"state", std::string(to_string(report.state))},
            {"problem", report.problem.empty() ? nlohmann::json(nullptr) : nlohmann::json(report.problem)},
            {"caches", caches},
            {"helpers", helpers},
            {"lock", lock},
            {"abandoned_lock", abandoned},
            {"waiters", report.waiters},
            {"failures", report.failures},
            {"attempts", report.attempts},
            {"gave_up", report.gave_up}};
}

void render_json(const std::vector<VolumeReport>& reports, const std::vector<Unknown>& unknown, ExitCode code,
                 std::ostream& out) {
    nlohmann::json volumes = nlohmann::json::array();
    for (const auto& report : reports) volumes.push_back(json_of(report));
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& u : unknown) errors.push_back({{"argument", u.argument}, {"message", u.message}});
    nlohmann::json doc = {{"version", 1},
                          {"volumes", volumes},
                          {"errors", errors},
                          {"exit_code", to_int(code)},
                          {"exit_status", std::string(exit_code_name(code))}};
    out << json_text(doc, 2) << '\n';
}

void render_prometheus(const std::vector<VolumeReport>& reports, std::ostream& out) {
    PrometheusWriter w;
    w.family("volwatch_volume_stale", "1 if a cache or helper of the volume needs a rebuild.");
    w.family("volwatch_volume_locked", "1 if the volume lock is held by a live process.");
    w.family("volwatch_volume_config_error", "1 if the volume config is invalid or a cache cannot be checked.");
    w.family("volwatch_volume_lock_abandoned",
             "1 if every owner of the volume lock died without unlocking and nobody has tidied it yet (counted in failures).");
    w.family("volwatch_volume_gave_up", "1 if volwatch gave up on the volume after too many failures or attempts.");
    w.family("volwatch_volume_absent", "1 if an explicitly configured volume is missing.");
    w.family("volwatch_volume_failures", "Consecutive failed updates of the volume.");
    w.family("volwatch_volume_attempts", "Automatic rebuild launches since the last success.");
    w.family("volwatch_volume_lock_waiters", "Processes waiting for the volume lock.");
    w.family("volwatch_cache_stale", "1 if the cache is stale, 0 if clean.");
    w.family("volwatch_cache_error", "1 if the cache could not be checked.");
    w.family("volwatch_cache_product_mtime_seconds", "Modification time of the cache's product (unix seconds; 0 if missing).");
    w.family("volwatch_cache_newest_source_seconds", "Newest change time among the cache's sources (unix seconds).");
    w.family("volwatch_helper_stale", "1 if the helper target is not up to date.");
    w.family("volwatch_helper_error", "1 if the helper target is missing or cannot be checked.");
    for (const auto& r : reports) {
        PrometheusWriter::Labels v{{"volume", r.volume.root.string()}, {"id", r.volume.id.value}};
        w.sample("volwatch_volume_stale", v, r.needs_update() ? 1 : 0);
        w.sample("volwatch_volume_locked", v, r.lock ? 1 : 0);
        w.sample("volwatch_volume_config_error", v, r.state == VolumeState::config_error ? 1 : 0);
        w.sample("volwatch_volume_lock_abandoned", v, r.abandoned ? 1 : 0);
        w.sample("volwatch_volume_gave_up", v, r.gave_up ? 1 : 0);
        w.sample("volwatch_volume_absent", v, r.state == VolumeState::absent ? 1 : 0);
        w.sample("volwatch_volume_failures", v, r.failures);
        w.sample("volwatch_volume_attempts", v, r.attempts);
        w.sample("volwatch_volume_lock_waiters", v, static_cast<double>(r.waiters.size()));
        for (const auto& c : r.caches) {
            auto labels = v;
            labels.emplace_back("cache", c.name);
            w.sample("volwatch_cache_stale", labels, c.state == CacheState::stale ? 1 : 0);
            w.sample("volwatch_cache_error", labels, c.state == CacheState::error ? 1 : 0);
            w.sample("volwatch_cache_product_mtime_seconds", labels, static_cast<double>(c.product_time / 1'000'000'000));
            w.sample("volwatch_cache_newest_source_seconds", labels, static_cast<double>(c.newest_source / 1'000'000'000));
        }
        for (const auto& h : r.helpers) {
            auto labels = v;
            labels.emplace_back("target", h.target.string());
            w.sample("volwatch_helper_stale", labels, h.state == CacheState::stale ? 1 : 0);
            w.sample("volwatch_helper_error", labels, h.state == CacheState::error ? 1 : 0);
        }
    }
    out << w.str();
}

// 66 > 65 > 77 > 1 > 0 (vcheck(1), EXIT STATUS). Taken from the caches, not
// from the volume's state, so a locked volume with a cache that cannot be
// checked is not reported as merely stale.
ExitCode exit_code_for(const std::vector<VolumeReport>& reports, const std::vector<Unknown>& unknown) {
    if (!unknown.empty()) return ExitCode::unknown_volume;
    bool bad = false, denied = false, stale = false;
    for (const auto& r : reports) {
        bool cache_error = false;
        for (const auto& cache : r.caches) {
            if (cache.state != CacheState::error) continue;
            cache_error = true;
            if (cache.unreadable) denied = true;
            else bad = true;
        }
        if (r.state == VolumeState::config_error && !cache_error) bad = true;  // the config itself
        stale |= r.needs_update() && !cache_error && r.state != VolumeState::config_error;
    }
    if (bad) return ExitCode::bad_volume_config;
    if (denied) return ExitCode::permission;
    if (stale) return ExitCode::stale;
    return ExitCode::ok;
}

}  // namespace

ExitCode run_vcheck(const VcheckOptions& options, std::ostream& out, std::ostream& err) {
    auto host = load_host_config(options.host);
    if (!host) {
        err << "vcheck: " << escape_for_terminal(host.problem().message) << '\n';
        return host.problem().code;
    }
    if (options.list_helpers) {
        auto list = format_helper_list(*host);
        if (!list) {
            err << "vcheck: " << escape_for_terminal(list.problem().message) << '\n';
            return list.problem().code;
        }
        if (!options.quiet) out << *list;
        return ExitCode::ok;
    }
    ProcMountTable mounts;
    std::vector<Volume> volumes;
    std::vector<Unknown> unknown;
    if (options.all || options.volumes.empty()) volumes = discover_volumes(*host, mounts);
    for (const auto& argument : options.volumes) {
        auto volume = resolve_volume(argument, *host, mounts);
        if (!volume) {
            unknown.push_back({argument, volume.problem().message});
            continue;
        }
        bool seen = std::any_of(volumes.begin(), volumes.end(), [&](const Volume& v) { return v.id == volume->id; });
        if (!seen) volumes.push_back(*volume);
    }
    InspectOptions inspect{options.deep, options.threads};
    auto locks = LockDir::open(host->lock_dir, LockDirAccess::read);
    if (locks) inspect.locks = &*locks;  // else each report names the refusal
    std::vector<VolumeReport> reports;
    reports.reserve(volumes.size());
    for (const auto& volume : volumes) reports.push_back(inspect_volume(volume, *host, inspect));

    ExitCode code = exit_code_for(reports, unknown);
    for (const auto& u : unknown) err << "vcheck: " << escape_for_terminal(u.message) << '\n';
    if (options.quiet) return code;
    switch (options.format) {
    case OutputFormat::human:
        render_human(reports, *host, out);
        if (reports.empty() && unknown.empty()) out << "no volumes found\n";
        break;
    case OutputFormat::json: render_json(reports, unknown, code, out); break;
    case OutputFormat::prometheus: render_prometheus(reports, out); break;
    }
    return code;
}

}  // namespace volwatch
