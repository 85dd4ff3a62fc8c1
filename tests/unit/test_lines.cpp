#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "volwatch/lines.hpp"

using volwatch::next_line;

namespace {

std::vector<std::string> split(std::string_view text) {
    std::vector<std::string> out;
    for (std::string_view rest = text, line; next_line(rest, line);) out.emplace_back(line);
    return out;
}

TEST(NextLine, SplitsOnNewlinesAndKeepsALastLineWithoutOne) {
    EXPECT_EQ(split(""), std::vector<std::string>{});
    EXPECT_EQ(split("a"), std::vector<std::string>{"a"});
    EXPECT_EQ(split("a\n"), std::vector<std::string>{"a"});
    EXPECT_EQ(split("a\nb"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(split("\n\nx\r\n"), (std::vector<std::string>{"", "", "x\r"}));
}

}  // namespace
