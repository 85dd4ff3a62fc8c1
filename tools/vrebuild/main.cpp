// vrebuild: rebuild a volume's stale caches under its lock, then update its helpers.
#include <iostream>

#include "cli.hpp"
#include "volwatch/error.hpp"
#include "volwatch/vrebuild.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    VrebuildOptions options;
    auto app = cli::make_app("vrebuild", "Rebuild the stale caches of volumes under their locks, then bring their helpers up to date.");
    app->add_option("VOLUME", options.volumes, "A path inside a volume, or UUID=...")->type_name("");
    app->add_flag("-a,--all", options.all, "Every volume: discovered mounts and the host config's volumes");
    app->add_flag("-f,--force", options.force, "Rebuild every cache and copy every helper file, stale or not");
    app->add_option("--cache", options.cache, "Rebuild only the cache called NAME")->type_name("NAME");
    app->add_flag("--helpers-only", options.helpers_only, "Skip the rebuild step; only bring helpers up to date");
    app->add_flag("-n,--dry-run", options.dry_run, "Print what would run and what would be copied; change nothing");
    std::string wait;
    auto* wait_option = app->add_option("--wait", wait, "Wait for the lock, at most DURATION (--wait alone: no bound)")
                            ->type_name("[=DURATION]")
                            ->expected(0, 1)
                            ->check(cli::wait_validator());
    app->add_flag("--low-priority", options.low_priority, "Run rebuilders niced with the idle I/O class (what vwatch uses)");
    app->add_flag("--json", options.json, "Report per cache and helper as JSON on stdout");
    cli::add_host_options(*app, options.host);
    return cli::run(*app, argc, argv, [&] {
        if (wait_option->count() > 0) {
            options.wait = cli::parse_wait_value(wait).or_throw();
        }
        if (options.volumes.empty() && !options.all)
            throw Failure(ExitCode::usage, "name a VOLUME or use --all\nTry 'vrebuild --help'.");
        if (options.helpers_only && !options.cache.empty())
            throw Failure(ExitCode::usage, "--helpers-only and --cache exclude each other\nTry 'vrebuild --help'.");
        return run_vrebuild(options, std::cout, std::cerr);
    });
}
