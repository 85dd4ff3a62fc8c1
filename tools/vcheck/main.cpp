// vcheck: read-only staleness and lock report for one, several or all volumes.
#include <iostream>

#include "cli.hpp"
#include "volwatch/error.hpp"
#include "volwatch/vcheck.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    VcheckOptions options;
    auto app = cli::make_app("vcheck", "Report whether each volume's boot caches and helpers match their sources.");
    app->add_option("VOLUME", options.volumes, "A path inside a volume, or UUID=...; none means every volume")->type_name("");
    app->add_flag("-a,--all", options.all, "Check every volume: discovered mounts and the host config's volumes");
    app->add_flag("--deep", options.deep, "Look at every file beneath every source, and hash helper copies");
    std::string format = "human";
    auto* format_option = app->add_option("--format", format, "Output format")
                              ->check(cli::one_of({"human", "json", "prometheus"}))
                              ->type_name("human|json|prometheus");
    bool json = false;
    app->add_flag("--json", json, "Same as --format=json");
    auto* list_option = app->add_flag("--list-helpers", options.list_helpers,
                                      "Print the host config's helper targets (VOLUME, TARGET, FSTYPE; tab-separated), check nothing");
    list_option->excludes("VOLUME")->excludes("--all")->excludes("--deep")->excludes(format_option)->excludes("--json");
    app->add_flag("-q,--quiet", options.quiet, "Print nothing on stdout; only the exit status tells");
    cli::add_host_options(*app, options.host);
    return cli::run(*app, argc, argv, [&] {
        if (json && format_option->count() > 0 && format != "json")
            throw Failure(ExitCode::usage, "--json conflicts with --format=" + format);
        if (json) format = "json";
        options.format = format == "json" ? OutputFormat::json
                         : format == "prometheus" ? OutputFormat::prometheus
                                                  : OutputFormat::human;
        return run_vcheck(options, std::cout, std::cerr);
    });
}
