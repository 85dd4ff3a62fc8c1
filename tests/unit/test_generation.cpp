#include "volwatch/generation.hpp"

#include <gtest/gtest.h>

namespace volwatch {
namespace {

struct Entry {
    int value = 0;
};

TEST(GenerationTable, ATokenResolvesOnlyWhileItsGenerationIsCurrent) {
    GenerationTable<Entry> table;
    VolumeToken first = table.put("uuid-a", std::make_unique<Entry>(Entry{1}));
    ASSERT_NE(table.find(first), nullptr);
    EXPECT_EQ(table.find(first)->value, 1);

    // Re-read: the old token (a pending timer, say) no longer resolves.
    VolumeToken second = table.bump("uuid-a");
    EXPECT_NE(second.generation, first.generation);
    EXPECT_EQ(table.find(first), nullptr);
    EXPECT_NE(table.find(second), nullptr);
    EXPECT_NE(table.find(std::string("uuid-a")), nullptr);
}

TEST(GenerationTable, AVanishedVolumeResolvesNothingEvenIfItComesBack) {
    GenerationTable<Entry> table;
    VolumeToken old = table.put("uuid-a", std::make_unique<Entry>());
    table.erase("uuid-a");
    EXPECT_EQ(table.find(old), nullptr);
    EXPECT_EQ(table.generation("uuid-a"), 0U);
    // The same volume mounted again is a new generation: late events for the
    // old mount must not act on the new one.
    VolumeToken again = table.put("uuid-a", std::make_unique<Entry>());
    EXPECT_EQ(table.find(old), nullptr);
    EXPECT_NE(table.find(again), nullptr);
}

TEST(GenerationTable, GenerationsAreNeverReusedAcrossVolumes) {
    GenerationTable<Entry> table;
    VolumeToken a = table.put("a", std::make_unique<Entry>());
    VolumeToken b = table.put("b", std::make_unique<Entry>());
    EXPECT_NE(a.generation, b.generation);
    EXPECT_EQ(table.find(VolumeToken{"b", a.generation}), nullptr);
    EXPECT_EQ(table.bump("missing").generation, 0U);
    EXPECT_EQ(table.size(), 2U);
}

}  // namespace
}  // namespace volwatch
