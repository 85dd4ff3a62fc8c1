// vlock: take a volume lock for a script, or run a command under it.
#include <iostream>

#include "cli.hpp"
#include "volwatch/error.hpp"
#include "volwatch/vlock.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    VlockOptions options;
    auto app = cli::make_app("vlock", "Take a volume's lock for the calling script, or run a command under it:\n"
                                      "  vlock VOLUME [OPTIONS] [-- CMD [ARG...]]\n  vlock --list [VOLUME]");
    app->add_option("VOLUME", options.volume, "A path inside a volume, or UUID=...")->type_name("VOLUME");
    std::string wait;
    app->add_option("--wait", wait, "Wait for the lock, at most DURATION (--wait alone: no bound)")
        ->type_name("[=DURATION]")
        ->check(CLI::Validator(
            [](const std::string& text) {
                auto parsed = parse_wait(text);
                return parsed ? std::string() : parsed.problem().message;
            },
            "", "wait"));
    pid_t owner = 0;
    auto* owner_option = app->add_option("--owner", owner, "The process that holds the lock (default: the caller's parent)")
                             ->type_name("PID");
    app->add_option("--purpose", options.purpose, "Why the lock is taken, shown to others (default: vlock)")
        ->type_name("TEXT");
    app->add_option("-E,--conflict-exit-code", options.conflict_exit_code,
                    "Exit with N instead of 75 when busy or the wait times out")
        ->type_name("N")
        ->check(CLI::Validator(CLI::Range(1, 255)).description(""));
    app->add_flag("-l,--list", options.list, "List every lock: owners and liveness, waiters in order, counters");
    app->add_flag("--json", options.json, "Print the outcome (or the --list) as JSON on stdout");
    cli::add_host_options(*app, options.host);

    auto split = split_command_line(argc, argv);
    options.command = split.command;
    std::vector<char*> parsed;
    for (auto& word : split.options) parsed.push_back(word.data());
    return cli::run(*app, static_cast<int>(parsed.size()), parsed.data(), [&] {
        if (!wait.empty()) options.wait = parse_wait(wait).or_throw();
        if (owner_option->count() > 0 && owner <= 0)
            throw Failure(ExitCode::usage, "--owner: expected a process id\nTry 'vlock --help'.");
        if (owner_option->count() > 0) options.owner = owner;
        if (options.list && (split.has_separator || options.wait || options.owner))
            throw Failure(ExitCode::usage, "--list takes no command, --wait or --owner\nTry 'vlock --help'.");
        if (!options.list && options.volume.empty()) throw Failure(ExitCode::usage, "a VOLUME is required\nTry 'vlock --help'.");
        if (split.has_separator && options.command.empty())
            throw Failure(ExitCode::usage, "no command after \"--\"\nTry 'vlock --help'.");
        if (!options.command.empty() && (options.owner || options.json))
            throw Failure(ExitCode::usage, "--owner and --json do not apply with a command\nTry 'vlock --help'.");
        return run_vlock(options, std::cout, std::cerr);
    });
}
