#include "cli.hpp"

#include <iostream>

#include <fmt/format.h>

#include "volwatch/error.hpp"
#include "volwatch/output.hpp"

namespace volwatch::cli {

std::unique_ptr<CLI::App> make_app(const std::string& name, const std::string& description) {
    auto app = std::make_unique<CLI::App>(description, name);
    app->set_version_flag("-V,--version", fmt::format("{} (volwatch) {}", name, VOLWATCH_VERSION));
    app->set_help_flag("-h,--help", "Print this help and exit");
    app->get_formatter()->column_width(34);
    app->footer(fmt::format("Exit codes, files and examples: man {}", name));
    return app;
}

void add_host_options(CLI::App& app, HostOverrides& overrides) {
    app.add_option("-c,--config", overrides.config, "Host config file (default $VOLWATCH_CONFIG, else /etc/volwatch/volwatch.toml)")
        ->type_name("FILE");
    app.add_option("--lock-dir", overrides.lock_dir, "Lock directory (default from the host config, else /run/volwatch)")
        ->type_name("DIR");
}

CLI::Validator one_of(std::vector<std::string> choices) {
    return CLI::Validator(
        [choices](const std::string& text) {
            for (const auto& choice : choices)
                if (text == choice) return std::string();
            std::string list;
            for (const auto& choice : choices) list += (list.empty() ? "" : ", ") + choice;
            return fmt::format("\"{}\" is not one of {}", text, list);
        },
        "", "one_of");
}

CLI::Validator duration_validator() {
    return CLI::Validator(
        [](const std::string& text) {
            auto parsed = parse_duration(text);
            return parsed ? std::string() : parsed.problem().message;
        },
        "DURATION", "DURATION");
}

CLI::Validator positive_pid() {
    return CLI::Validator(
        [](const std::string& text) {
            long long value = 0;
            std::size_t used = 0;
            try {
                value = std::stoll(text, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used != text.size() || value <= 0 || value > 4194304) return fmt::format("\"{}\" is not a process id", text);
            return std::string();
        },
        "", "pid");
}

Result<Duration> parse_wait_value(const std::string& text) {
    if (text.empty() || text == "forever" || text == "infinity") return Duration::max();
    return parse_duration(text);
}

CLI::Validator wait_validator() {
    return CLI::Validator(
        [](const std::string& text) {
            auto parsed = parse_wait_value(text);
            return parsed ? std::string() : parsed.problem().message;
        },
        "", "wait");
}

int run(CLI::App& app, int argc, char** argv, const std::function<ExitCode()>& body) {
    const std::string name = app.get_name();
    // "--wait" alone means no bound; it must never swallow the next word
    // (a volume, or "--") as its value. Only "--wait=VALUE" carries one.
    std::vector<std::string> args;
    bool has_wait = app.get_option_no_throw("--wait") != nullptr;
    for (int i = argc - 1; i >= 1; --i) {
        std::string arg = argv[i];
        if (has_wait && arg == "--wait") arg = "--wait=forever";
        args.push_back(std::move(arg));
    }
    try {
        app.parse(args);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        std::cout << e.what() << '\n';
        return 0;
    } catch (const CLI::ParseError& e) {
        return usage_error(name, e.what());
    }
    return run_guarded(name, body);
}

}  // namespace volwatch::cli
