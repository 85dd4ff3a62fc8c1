// vwatch: the watcher daemon; runs in the foreground until SIGTERM.
#include "cli.hpp"
#include "volwatch/error.hpp"
#include "volwatch/vwatch.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    VwatchOptions options;
    auto app = cli::make_app("vwatch", "Watch volumes and rebuild their boot caches when their sources change.");
    std::string settle, startup_delay, log_level = "info", log_target = "auto", backend;
    app->add_option("--settle", settle, "Quiet time after the last change before checking (host config: settle)")
        ->check(cli::duration_validator().description(""))
        ->type_name("DURATION");
    app->add_option("--startup-delay", startup_delay, "No automatic rebuilds this soon after start (host config: startup_delay)")
        ->check(cli::duration_validator().description(""))
        ->type_name("DURATION");
    app->add_flag("--no-discover", options.no_discover, "Watch only the host config's volumes, not every eligible mount");
    app->add_option("--backend", backend, "Watch backend (host config: watch_backend)")
        ->check(cli::one_of({"auto", "fanotify", "inotify"}))
        ->type_name("auto|fanotify|inotify");
    app->add_option("--log-level", log_level, "Least important messages logged")
        ->check(cli::one_of({"error", "warning", "notice", "info", "debug"}))
        ->type_name("LEVEL");
    app->add_option("--log", log_target, "Where messages go (auto: the journal under systemd, else stderr)")
        ->check(cli::one_of({"auto", "stderr", "syslog", "journal"}))
        ->type_name("auto|stderr|syslog|journal");
    cli::add_host_options(*app, options.host);
    return cli::run(*app, argc, argv, [&] {
        if (!settle.empty()) options.settle = parse_duration(settle).or_throw();
        if (!startup_delay.empty()) options.startup_delay = parse_duration(startup_delay).or_throw();
        if (backend == "fanotify") options.backend = WatchBackend::fanotify;
        else if (backend == "inotify") options.backend = WatchBackend::inotify;
        else if (backend == "auto") options.backend = WatchBackend::automatic;
        options.log_level = parse_log_level(log_level).or_throw();
        options.log_target = parse_log_target(log_target).or_throw();
        return run_vwatch(options);
    });
}
