// vrebootgate: shutdown hook; waits until every volume is consistent, then takes the reboot lock.
#include <iostream>

#include "cli.hpp"
#include "volwatch/error.hpp"
#include "volwatch/reboot_gate.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    GateOptions options;
    auto app = cli::make_app("vrebootgate", "Wait until every volume is consistent, then take the reboot lock for the shutdown.");
    std::string wait;
    auto* wait_option = app->add_option("--wait", wait, "Rebuild stale volumes and wait for locked ones, at most DURATION (--wait alone: no bound)")
                            ->type_name("[=DURATION]")
                            ->expected(0, 1)
                            ->check(cli::wait_validator());
    pid_t owner = 0;
    auto* owner_option = app->add_option("--owner", owner, "The process that holds the reboot lock (default: the caller's parent)")
                             ->type_name("PID")
                             ->check(cli::positive_pid());
    app->add_flag("--status", options.status, "Report who holds the reboot lock, or what still blocks it; change nothing");
    app->add_flag("--release", options.release, "Drop the reboot lock, for an aborted shutdown (root)");
    app->add_flag("--json", options.json, "Print the outcome as JSON on stdout");
    app->add_flag("-q,--quiet", options.quiet, "Print only warnings and errors");
    cli::add_host_options(*app, options.host);
    return cli::run(*app, argc, argv, [&] {
        if (wait_option->count() > 0) options.wait = cli::parse_wait_value(wait).or_throw();
        if (owner_option->count() > 0) options.owner = owner;
        if (options.status && options.release)
            throw Failure(ExitCode::usage, "--status and --release exclude each other\nTry 'vrebootgate --help'.");
        if ((options.status || options.release) && (options.wait || options.owner))
            throw Failure(ExitCode::usage, "--wait and --owner apply only when taking the lock\nTry 'vrebootgate --help'.");
        return run_vrebootgate(options, std::cout, std::cerr);
    });
}
