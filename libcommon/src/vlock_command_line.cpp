#include "volwatch/vlock_command_line.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace volwatch {
namespace {

// Laid out as CLI11 lays out the other programs' help (tools/shared/cli.cpp):
// tests/cli/docs.bats reads the options from these lines.
constexpr std::string_view help_text = R"(Take a volume's lock for the calling script, or run a command under it:
  vlock VOLUME [OPTIONS] [-- CMD [ARG...]]
  vlock --list [VOLUME]
Usage: vlock [OPTIONS] [VOLUME]

Positionals:
  VOLUME VOLUME                   A path inside a volume, or UUID=...

Options:
  -V,--version                    Display program version information and exit
  -h,--help                       Print this help and exit
  --wait [=DURATION]              Wait for the lock, at most DURATION (--wait alone: no bound)
  --owner PID                     The process that holds the lock (default: the caller's parent)
  --purpose TEXT                  Why the lock is taken, shown to others (default: vlock)
  -E,--conflict-exit-code N       Exit with N instead of 75 when busy or the wait times out
  -l,--list                       List every lock: owners and liveness, waiters in order, counters
  --json                          Print the outcome (or the --list) as JSON on stdout
  -c,--config FILE                Host config file (default $VOLWATCH_CONFIG, else /etc/volwatch/volwatch.toml)
  --lock-dir DIR                  Lock directory (default from the host config, else /run/volwatch)

Exit codes, files and examples: man vlock
)";

Problem usage(std::string message) { return Problem{ExitCode::usage, std::move(message)}; }

Problem not_expected(std::string_view word) {
    return usage(fmt::format("The following argument was not expected: {}", word));
}

// The options that take a value, by their long name; -E and -c are the
// short spellings of two of them.
enum class Valued { none, owner, purpose, conflict_exit_code, config, lock_dir };

Valued valued_option(std::string_view name) {
    if (name == "--owner") return Valued::owner;
    if (name == "--purpose") return Valued::purpose;
    if (name == "--conflict-exit-code" || name == "-E") return Valued::conflict_exit_code;
    if (name == "--config" || name == "-c") return Valued::config;
    if (name == "--lock-dir") return Valued::lock_dir;
    return Valued::none;
}

// The name messages use for an option: its long spelling.
std::string_view long_name(Valued option) {
    switch (option) {
    case Valued::owner: return "--owner";
    case Valued::purpose: return "--purpose";
    case Valued::conflict_exit_code: return "--conflict-exit-code";
    case Valued::config: return "--config";
    case Valued::lock_dir: return "--lock-dir";
    case Valued::none: break;
    }
    return "";
}

template <class Int>
std::optional<Int> whole_number(std::string_view text) {
    Int value{};
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

Status set_value(VlockOptions& options, Valued option, std::string_view value) {
    switch (option) {
    case Valued::owner: {
        auto pid = whole_number<pid_t>(value);
        if (!pid || *pid <= 0) return usage("--owner: expected a process id");
        options.owner = *pid;
        break;
    }
    case Valued::purpose: options.purpose = value; break;
    case Valued::conflict_exit_code: {
        auto code = whole_number<int>(value);
        if (!code || *code < 1 || *code > 255)
            return usage(fmt::format("--conflict-exit-code: Value {} not in range 1 to 255", value));
        options.conflict_exit_code = *code;
        break;
    }
    case Valued::config: options.host.config = std::string(value); break;
    case Valued::lock_dir: options.host.lock_dir = std::string(value); break;
    case Valued::none: break;
    }
    return success();
}

}  // namespace

std::string_view vlock_help() { return help_text; }

std::string_view vlock_version() { return "vlock (volwatch) " VOLWATCH_VERSION; }

Result<VlockCommandLine> parse_vlock_command_line(int argc, const char* const* argv) {
    VlockCommandLine line;
    VlockOptions& options = line.options;
    // A bare "--wait" comes back as "--wait=forever": it never takes the next word.
    SplitCommandLine split = split_command_line(argc, argv);
    const std::vector<std::string>& words = split.options;
    // Help and version win over anything else on the line, as with CLI11.
    for (std::size_t i = 1; i < words.size(); ++i) {
        if (words[i] == "-h" || words[i] == "--help") line.action = VlockCommandLine::Action::help;
        else if ((words[i] == "-V" || words[i] == "--version") && line.action == VlockCommandLine::Action::run)
            line.action = VlockCommandLine::Action::version;
    }
    if (line.action != VlockCommandLine::Action::run) return line;

    std::vector<Valued> given;
    bool has_volume = false;
    for (std::size_t i = 1; i < words.size(); ++i) {
        std::string_view word = words[i];
        if (word.size() < 2 || word[0] != '-') {
            if (has_volume) return not_expected(word);
            options.volume = word;
            has_volume = true;
            continue;
        }
        // "--name=value"; "-Evalue" and "-cvalue" for the short spellings.
        std::string_view name = word;
        std::optional<std::string_view> value;
        if (word.starts_with("--")) {
            if (auto equals = word.find('='); equals != std::string_view::npos) {
                name = word.substr(0, equals);
                value = word.substr(equals + 1);
            }
        } else if (word.size() > 2) {
            name = word.substr(0, 2);
            value = word.substr(2);
        }
        if (name == "--wait") {
            if (!value) return not_expected(word);
            if (options.wait) return usage("--wait: given more than once");
            auto wait = parse_wait(*value);
            if (!wait) return usage(fmt::format("--wait: {}", wait.problem().message));
            options.wait = *wait;
            continue;
        }
        if (name == "-l" || name == "--list" || name == "--json") {
            if (value) return usage(fmt::format("{}: takes no value", name == "-l" ? "--list" : name));
            (name == "--json" ? options.json : options.list) = true;
            continue;
        }
        Valued option = valued_option(name);
        if (option == Valued::none) return not_expected(word);
        if (std::find(given.begin(), given.end(), option) != given.end())
            return usage(fmt::format("{}: given more than once", long_name(option)));
        given.push_back(option);
        if (!value) {
            // As with CLI11: the next word, unless it is an option itself.
            if (i + 1 >= words.size() || (words[i + 1].size() > 1 && words[i + 1][0] == '-'))
                return usage(fmt::format("{}: needs a value", long_name(option)));
            value = words[++i];
        }
        if (auto set = set_value(options, option, *value); !set) return set.problem();
    }

    options.command = std::move(split.command);
    if (options.list && (split.has_separator || options.wait || options.owner))
        return usage("--list takes no command, --wait or --owner");
    if (!options.list && options.volume.empty()) return usage("a VOLUME is required");
    if (split.has_separator && options.command.empty()) return usage("no command after \"--\"");
    if (!options.command.empty() && (options.owner || options.json))
        return usage("--owner and --json do not apply with a command");
    return line;
}

}  // namespace volwatch
