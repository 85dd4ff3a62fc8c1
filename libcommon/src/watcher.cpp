#include "volwatch/watcher.hpp"

#include <algorithm>

#include "volwatch/staleness.hpp"

namespace volwatch {

std::string_view to_string(WatchRole role) {
    switch (role) {
    case WatchRole::source: return "source";
    case WatchRole::product: return "product";
    case WatchRole::helper: return "helper";
    case WatchRole::config: return "config";
    }
    return "source";
}

namespace {

void add_target(WatchPlan& plan, std::string relpath, WatchRole role, unsigned depth) {
    for (auto& target : plan.targets) {
        if (target.relpath == relpath && target.role == role) {
            target.depth = std::max(target.depth, depth);
            return;
        }
    }
    plan.targets.push_back(WatchTarget{std::move(relpath), role, depth});
}

}  // namespace

WatchPlan watch_plan(const std::filesystem::path& root, const VolumeConfig& config) {
    WatchPlan plan;
    plan.root = root;
    for (const CacheSpec& cache : config.caches) {
        // Shallow staleness looks at each source and the stat of its entries;
        // an entry directory's times change with its own entries, so it is
        // watched too (depth 2).
        for (const auto& source : cache.sources)
            add_target(plan, source, WatchRole::source, cache.depth == Depth::deep ? unlimited_depth : 2);
        add_target(plan, cache.product, WatchRole::product, 1);
    }
    for (const auto& file : config.helper_files) add_target(plan, file, WatchRole::helper, 0);
    add_target(plan, volume_config_relpath, WatchRole::config, 0);
    return plan;
}

WatchPlan config_only_plan(const std::filesystem::path& root) {
    WatchPlan plan;
    plan.root = root;
    plan.targets.push_back(WatchTarget{volume_config_relpath, WatchRole::config, 0});
    return plan;
}

}  // namespace volwatch
