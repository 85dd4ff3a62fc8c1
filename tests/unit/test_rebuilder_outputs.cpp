#include <gtest/gtest.h>

#include "volwatch/rebuilder_outputs.hpp"

using namespace volwatch;

TEST(RebuilderOutputs, PatternProblems) {
    EXPECT_EQ(output_pattern_problem("usr/lib/modules/*/modules.*"), "");
    EXPECT_EQ(output_pattern_problem("usr/lib/modules/[0-9]*/modules.dep"), "");
    EXPECT_NE(output_pattern_problem("usr/./lib/x"), "");
    EXPECT_NE(output_pattern_problem("usr/lib/[abc"), "");
    EXPECT_NE(output_pattern_problem("/"), "");
}

TEST(RebuilderOutputs, LiesBeneathASourceComponentByComponent) {
    EXPECT_TRUE(output_lies_beneath("usr/lib/modules/*/modules.dep", "usr/lib/modules"));
    EXPECT_TRUE(output_lies_beneath("usr/lib/modules/*/modules.dep", "usr/lib/modules/6.1.0-18-amd64"));
    EXPECT_TRUE(output_lies_beneath("usr//lib/x", "usr/lib/"));
    EXPECT_FALSE(output_lies_beneath("usr/lib/modules", "usr/lib/modules"));
    EXPECT_FALSE(output_lies_beneath("usr/lib", "usr/lib/modules"));
    EXPECT_FALSE(output_lies_beneath("usr/libexec/x", "usr/lib"));
    EXPECT_FALSE(output_lies_beneath("etc/x", "usr"));
}

TEST(RebuilderOutputs, MatchesEntriesOfOneDirectoryOnly) {
    OutputMatcher matcher({"usr/lib/modules/*/modules.*.bin", "usr/lib/modules/*/modules.dep"});
    EXPECT_FALSE(matcher.empty());
    auto version = matcher.in_directory("usr/lib/modules/6.1");
    EXPECT_TRUE(version.holds_outputs());
    EXPECT_TRUE(version.matches("modules.dep"));
    EXPECT_TRUE(version.matches("modules.alias.bin"));
    EXPECT_FALSE(version.matches("modules.order"));
    EXPECT_FALSE(version.matches("modules.builtin.modinfo"));
    EXPECT_FALSE(matcher.in_directory("usr/lib/modules").holds_outputs());
    EXPECT_FALSE(matcher.in_directory("usr/lib/modules/6.1/kernel").holds_outputs());
    EXPECT_FALSE(matcher.in_directory("usr/lib/modules/6.1/kernel").matches("modules.dep"));
    EXPECT_TRUE(matcher.matches("usr/lib/modules/6.1/modules.dep"));
    EXPECT_FALSE(matcher.matches("usr/lib/modules/6.1/kernel/modules.dep"));
    EXPECT_TRUE(OutputMatcher({}).empty());
    EXPECT_FALSE(OutputMatcher({}).in_directory("usr").holds_outputs());
}
