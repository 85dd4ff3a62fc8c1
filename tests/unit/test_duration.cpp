#include <gtest/gtest.h>

#include "volwatch/duration.hpp"

using namespace volwatch;
using namespace std::chrono_literals;

TEST(Duration, ParsesEveryUnit) {
    EXPECT_EQ(*parse_duration("300ms"), 300ms);
    EXPECT_EQ(*parse_duration("5s"), 5s);
    EXPECT_EQ(*parse_duration("10m"), 10min);
    EXPECT_EQ(*parse_duration("1h"), 1h);
    EXPECT_EQ(*parse_duration("2d"), 48h);
    EXPECT_EQ(*parse_duration("0"), 0ms);
}

TEST(Duration, ParsesCompounds) {
    EXPECT_EQ(*parse_duration("1m30s"), 90s);
    EXPECT_EQ(*parse_duration("1h5m250ms"), 1h + 5min + 250ms);
}

TEST(Duration, RejectsBadForms) {
    for (const char* bad : {"", "5", "s", "5x", "-5s", "5 s", "1.5s", "5sec", "ms"}) {
        auto parsed = parse_duration(bad);
        ASSERT_FALSE(parsed.ok()) << bad;
        EXPECT_EQ(parsed.problem().code, ExitCode::usage);
        EXPECT_NE(parsed.problem().message.find("invalid duration"), std::string::npos);
    }
}

TEST(Duration, RejectsOverflow) {
    EXPECT_FALSE(parse_duration("99999999999999999999h").ok());
    EXPECT_FALSE(parse_duration("9223372036854775807d").ok());
}

TEST(Duration, FormatsRoundTrip) {
    for (const char* text : {"300ms", "5s", "10m", "1h", "1m30s", "1d2h"}) {
        EXPECT_EQ(format_duration(*parse_duration(text)), text);
    }
    EXPECT_EQ(format_duration(0ms), "0s");
}

TEST(Duration, FormatsSpansForPeople) {
    EXPECT_EQ(format_span(std::chrono::nanoseconds(1)), "1ns");
    EXPECT_EQ(format_span(192s), "3m12s");
    EXPECT_EQ(format_span(41ms), "41ms");
    EXPECT_EQ(format_span(2h + 5min + 3s), "2h5m");
    EXPECT_EQ(format_span(1500ms), "1.5s");
}
