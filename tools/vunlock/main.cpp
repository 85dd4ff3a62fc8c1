// vunlock: release a volume lock taken with vlock, recording the update's status.
#include <cstdio>

#include "cli.hpp"
#include "volwatch/vlock.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    VunlockOptions options;
    auto app = cli::make_app("vunlock", "Release a volume's lock and record how the update went.");
    app->add_option("VOLUME", options.volume, "A path inside a volume, or UUID=...")->type_name("VOLUME")->required();
    app->add_option("-s,--status", options.status,
                    "The update's exit status: 0 resets the failure count, 75 is not a failure, others count one")
        ->type_name("N")
        ->check(CLI::Validator(CLI::Range(0, 255)).description(""));
    app->add_flag("-f,--force", options.force, "Release the lock whoever owns it (root, or the lock directory's owner)");
    cli::add_host_options(*app, options.host);
    return cli::run(*app, argc, argv, [&] { return run_vunlock(options, stderr); });
}
