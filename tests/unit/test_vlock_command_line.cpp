#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

#include "volwatch/vlock_command_line.hpp"

using namespace volwatch;
using namespace std::chrono_literals;

namespace {

Result<VlockCommandLine> parse(std::initializer_list<const char*> words) {
    std::vector<const char*> argv{"vlock"};
    argv.insert(argv.end(), words.begin(), words.end());
    return parse_vlock_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string usage_message(std::initializer_list<const char*> words) {
    auto parsed = parse(words);
    if (parsed) return "(accepted)";
    EXPECT_EQ(parsed.problem().code, ExitCode::usage);
    return parsed.problem().message;
}

}  // namespace

TEST(VlockCommandLine, TakesAVolumeAndTheCommandVerbatim) {
    auto line = parse({"/boot", "--", "make", "--wait", "--", "-E"});
    ASSERT_TRUE(line.ok()) << line.problem().message;
    EXPECT_EQ(line->action, VlockCommandLine::Action::run);
    EXPECT_EQ(line->options.volume, "/boot");
    EXPECT_EQ(line->options.command, (std::vector<std::string>{"make", "--wait", "--", "-E"}));
    EXPECT_FALSE(line->options.wait);
    EXPECT_EQ(line->options.conflict_exit_code, 75);
    EXPECT_EQ(line->options.purpose, "vlock");
}

TEST(VlockCommandLine, WaitTakesAValueOnlyAfterAnEqualsSign) {
    auto bare = parse({"--wait", "/boot"});
    ASSERT_TRUE(bare.ok()) << bare.problem().message;
    EXPECT_EQ(bare->options.volume, "/boot");
    EXPECT_EQ(*bare->options.wait, Duration::max());
    EXPECT_EQ(*parse({"/boot", "--wait=1m30s"})->options.wait, 90s);
    EXPECT_EQ(*parse({"/boot", "--wait=infinity"})->options.wait, Duration::max());
    EXPECT_EQ(usage_message({"/boot", "--wait=soon"}).rfind("--wait: invalid duration \"soon\"", 0), 0U);
    EXPECT_EQ(usage_message({"/boot", "--wait", "5s"}), "The following argument was not expected: 5s");
}

TEST(VlockCommandLine, ValuesJoinedOrSeparate) {
    auto line = parse({"UUID=1234", "--owner", "42", "--purpose=update grub", "-E7", "-c", "/etc/h.toml",
                       "--lock-dir=/run/l", "--json"});
    ASSERT_TRUE(line.ok()) << line.problem().message;
    EXPECT_EQ(line->options.volume, "UUID=1234");
    EXPECT_EQ(line->options.owner, 42);
    EXPECT_EQ(line->options.purpose, "update grub");
    EXPECT_EQ(line->options.conflict_exit_code, 7);
    EXPECT_EQ(line->options.host.config, std::filesystem::path("/etc/h.toml"));
    EXPECT_EQ(line->options.host.lock_dir, std::filesystem::path("/run/l"));
    EXPECT_TRUE(line->options.json);
    EXPECT_EQ(parse({"/boot", "--conflict-exit-code=255"})->options.conflict_exit_code, 255);
    EXPECT_EQ(parse({"/boot", "-E", "1"})->options.conflict_exit_code, 1);
}

TEST(VlockCommandLine, ListTakesAnOptionalVolume) {
    auto all = parse({"-l"});
    ASSERT_TRUE(all.ok());
    EXPECT_TRUE(all->options.list);
    EXPECT_TRUE(all->options.volume.empty());
    auto one = parse({"--list", "--json", "/boot"});
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->options.volume, "/boot");
    EXPECT_TRUE(one->options.json);
}

TEST(VlockCommandLine, HelpAndVersionWinOverEverythingElse) {
    EXPECT_EQ(parse({"--bogus", "--help"})->action, VlockCommandLine::Action::help);
    EXPECT_EQ(parse({"-h", "-V"})->action, VlockCommandLine::Action::help);
    EXPECT_EQ(parse({"-V", "/boot", "-E", "0"})->action, VlockCommandLine::Action::version);
    // After "--" they belong to the command.
    EXPECT_EQ(parse({"/boot", "--", "cmd", "--help"})->action, VlockCommandLine::Action::run);
    EXPECT_EQ(vlock_version().rfind("vlock (volwatch) ", 0), 0U);
    for (const char* option : {"--wait", "--owner", "--purpose", "--conflict-exit-code", "--list", "--json",
                               "--config", "--lock-dir", "--help", "--version"})
        EXPECT_NE(vlock_help().find(option), std::string_view::npos) << option;
}

TEST(VlockCommandLine, RefusesBadValuesNamingTheOption) {
    EXPECT_EQ(usage_message({"/boot", "-E", "0"}), "--conflict-exit-code: Value 0 not in range 1 to 255");
    EXPECT_EQ(usage_message({"/boot", "-E256"}), "--conflict-exit-code: Value 256 not in range 1 to 255");
    EXPECT_EQ(usage_message({"/boot", "-E", "7x"}), "--conflict-exit-code: Value 7x not in range 1 to 255");
    EXPECT_EQ(usage_message({"/boot", "--owner", "0"}), "--owner: expected a process id");
    EXPECT_EQ(usage_message({"/boot", "--owner=x"}), "--owner: expected a process id");
    EXPECT_EQ(usage_message({"/boot", "--owner"}), "--owner: needs a value");
    EXPECT_EQ(usage_message({"/boot", "--purpose", "--json"}), "--purpose: needs a value");
    EXPECT_EQ(usage_message({"/boot", "--owner=1", "--owner=2"}), "--owner: given more than once");
    EXPECT_EQ(usage_message({"/boot", "--list=yes"}), "--list: takes no value");
}

TEST(VlockCommandLine, RefusesWhatDoesNotGoTogether) {
    EXPECT_EQ(usage_message({}), "a VOLUME is required");
    EXPECT_EQ(usage_message({"/boot", "/efi"}), "The following argument was not expected: /efi");
    EXPECT_EQ(usage_message({"/boot", "--bogus"}), "The following argument was not expected: --bogus");
    EXPECT_EQ(usage_message({"/boot", "-x"}), "The following argument was not expected: -x");
    EXPECT_EQ(usage_message({"/boot", "--"}), "no command after \"--\"");
    EXPECT_EQ(usage_message({"--list", "--", "true"}), "--list takes no command, --wait or --owner");
    EXPECT_EQ(usage_message({"--list", "--wait"}), "--list takes no command, --wait or --owner");
    EXPECT_EQ(usage_message({"--list", "--owner", "1"}), "--list takes no command, --wait or --owner");
    EXPECT_EQ(usage_message({"/boot", "--json", "--", "true"}), "--owner and --json do not apply with a command");
    EXPECT_EQ(usage_message({"/boot", "--owner", "1", "--", "true"}), "--owner and --json do not apply with a command");
}
