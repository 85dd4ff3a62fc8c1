// Output helpers: terminal escaping, the colour rule, times, and the
// Prometheus text writer; and the names of the exit-code table.
#include "test_support.hpp"
#include "volwatch/output.hpp"

#include <cmath>
#include <cstdlib>
#include <fcntl.h>
#include <optional>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>

#include "volwatch/exit_codes.hpp"

namespace volwatch {
namespace {

TEST(EscapeForTerminal, LeavesPrintableTextAlone) {
    EXPECT_EQ(escape_for_terminal(""), "");
    EXPECT_EQ(escape_for_terminal("usr/lib/modules/6.1.0 x.ko"), "usr/lib/modules/6.1.0 x.ko");
    EXPECT_EQ(escape_for_terminal("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT_EQ(escape_for_terminal("back\\slash \"quoted\""), "back\\slash \"quoted\"");
}

TEST(EscapeForTerminal, EscapesControlCharacters) {
    EXPECT_EQ(escape_for_terminal("a\033[2Jb\rc"), "a\\x1b[2Jb\\rc");
    EXPECT_EQ(escape_for_terminal("line\nnext\ttab"), "line\\nnext\\ttab");
    EXPECT_EQ(escape_for_terminal(std::string("nul\0bel\a del\x7f", 13)), "nul\\x00bel\\x07 del\\x7f");
    // C1 controls in UTF-8: U+009B is CSI on some terminals.
    EXPECT_EQ(escape_for_terminal("x\xc2\x9b" "31m"), "x\\u009b31m");
}

TEST(EscapeForTerminal, EscapesBytesThatAreNotUtf8) {
    EXPECT_EQ(escape_for_terminal("bad\xffname"), "bad\\xffname");
    EXPECT_EQ(escape_for_terminal("\xc3"), "\\xc3");                  // truncated sequence
    EXPECT_EQ(escape_for_terminal("\xc0\xaf"), "\\xc0\\xaf");         // overlong '/'
    EXPECT_EQ(escape_for_terminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
    EXPECT_EQ(escape_for_terminal("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    EXPECT_EQ(escape_for_terminal("\xe2\x82x"), "\\xe2\\x82x");
}

using volwatch::testing::ScopedEnv;

TEST(UseColor, OnlyOnATerminal) {
    ScopedEnv no_color("NO_COLOR", nullptr);
    ScopedEnv term("TERM", "xterm");
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    EXPECT_FALSE(use_color(fds[1]));
    ::close(fds[0]);
    ::close(fds[1]);
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) GTEST_SKIP() << "no pseudo-terminal";
    int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
    ASSERT_GE(slave, 0);
    EXPECT_TRUE(use_color(slave));
    {
        ScopedEnv set("NO_COLOR", "1");
        EXPECT_FALSE(use_color(slave));
    }
    {
        ScopedEnv empty("NO_COLOR", "");  // no-color.org: present and empty means colour
        EXPECT_TRUE(use_color(slave));
    }
    {
        ScopedEnv dumb("TERM", "dumb");
        EXPECT_FALSE(use_color(slave));
    }
    ::close(slave);
    ::close(master);
}

TEST(Paint, WrapsOnlyWhenEnabled) {
    EXPECT_EQ(paint("stale", Tone::warn, false), "stale");
    EXPECT_EQ(paint("stale", Tone::warn, true), "\033[33mstale\033[0m");
    EXPECT_EQ(paint("clean", Tone::good, true), "\033[32mclean\033[0m");
    EXPECT_EQ(paint("error", Tone::bad, true), "\033[31merror\033[0m");
}

TEST(FormatUtc, Rfc3339OrEmpty) {
    EXPECT_EQ(format_utc(0), "");
    EXPECT_EQ(format_utc(-5), "");
    EXPECT_EQ(format_utc(86400), "1970-01-02T00:00:00Z");
    EXPECT_EQ(format_utc(1795608184.75), "2026-11-25T12:03:04Z");
}

TEST(PrometheusLabels, EscapesBackslashQuoteAndNewline) {
    EXPECT_EQ(escape_label_value("/mnt/plain"), "/mnt/plain");
    EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    EXPECT_EQ(escape_label_value(""), "");
}

TEST(PrometheusWriter, GroupsSamplesByFamilyInDeclarationOrder) {
    PrometheusWriter w;
    w.family("volwatch_b", "Second declared first.");
    w.family("volwatch_a", "Declared second.");
    w.family("volwatch_b", "Declared again: ignored.");
    w.sample("volwatch_a", {{"volume", "/"}}, 1);
    w.sample("volwatch_b", {{"volume", "/"}, {"cache", "initramfs"}}, 0);
    w.sample("volwatch_a", {{"volume", "/mnt/\"x\""}}, 0);
    w.sample("volwatch_b", {}, 3);
    EXPECT_EQ(w.str(),
              "# HELP volwatch_b Second declared first.\n"
              "# TYPE volwatch_b gauge\n"
              "volwatch_b{volume=\"/\",cache=\"initramfs\"} 0\n"
              "volwatch_b 3\n"
              "# HELP volwatch_a Declared second.\n"
              "# TYPE volwatch_a gauge\n"
              "volwatch_a{volume=\"/\"} 1\n"
              "volwatch_a{volume=\"/mnt/\\\"x\\\"\"} 0\n");
}

TEST(PrometheusWriter, FormatsIntegersExactlyAndOtherNumbersAsFloats) {
    PrometheusWriter w;
    w.family("t", "t", "counter");
    w.sample("t", {}, 1795608184);
    w.sample("t", {}, -2);
    w.sample("t", {}, 0.25);
    w.sample("t", {}, std::nan(""));
    w.sample("t", {}, 1e20);
    EXPECT_EQ(w.str(), "# HELP t t\n# TYPE t counter\nt 1795608184\nt -2\nt 0.25\nt NaN\nt 1e+20\n");
}

TEST(PrometheusWriter, AnUndeclaredFamilyIsABug) {
    PrometheusWriter w;
    EXPECT_THROW(w.sample("volwatch_nope", {}, 1), std::logic_error);
    EXPECT_EQ(w.str(), "");
}

TEST(ExitCodes, StableNamesAndMeanings) {
    EXPECT_EQ(exit_code_name(ExitCode::ok), "ok");
    EXPECT_EQ(exit_code_name(ExitCode::stale), "stale");
    EXPECT_EQ(exit_code_name(ExitCode::bad_volume_config), "bad-volume-config");
    EXPECT_EQ(exit_code_name(ExitCode::unknown_volume), "unknown-volume");
    EXPECT_EQ(exit_code_name(ExitCode::bad_host_config), "bad-host-config");
    EXPECT_EQ(to_int(ExitCode::usage), 64);
    EXPECT_EQ(to_int(ExitCode::bad_volume_config), 65);
    EXPECT_EQ(to_int(ExitCode::unknown_volume), 66);
    EXPECT_EQ(to_int(ExitCode::bad_host_config), 78);
    for (ExitCode code : {ExitCode::ok, ExitCode::stale, ExitCode::usage, ExitCode::bad_volume_config,
                          ExitCode::unknown_volume, ExitCode::internal, ExitCode::busy, ExitCode::permission,
                          ExitCode::bad_host_config})
        EXPECT_FALSE(exit_code_meaning(code).empty()) << to_int(code);
}

}  // namespace
}  // namespace volwatch
