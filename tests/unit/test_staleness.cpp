#include <fcntl.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/staleness.hpp"

using namespace volwatch;
using volwatch::testing::TempDir;
using volwatch::testing::write_file;

namespace {

constexpr std::int64_t second = 1'000'000'000;

class Staleness : public ::testing::Test {
protected:
    void SetUp() override {
        std::filesystem::create_directories(root() / "src");
        host.rebuilders.emplace("pack", Rebuilder{"pack", {"tar", "-czf", "{product}", "src"}, std::chrono::minutes(1)});
        cache.name = "pack";
        cache.sources = {"src"};
        cache.product = "out/pack.tgz";
        cache.depth = Depth::deep;
        cache.rebuild = "pack";
    }

    std::filesystem::path root() const { return dir.path() / "vol"; }

    CacheVerdict check(const CheckOptions& options = {}) {
        UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        return check_cache(fd.get(), cache, host, options);
    }

    // Records a build as vrebuild will: start time and digest, then the product.
    void build() {
        UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        auto record = begin_build_record(fd.get(), cache, host);
        ASSERT_TRUE(record.ok()) << record.problem().message;
        write_file(root() / cache.product, "product");
        ASSERT_TRUE(write_build_record(fd.get(), cache.name, *record).ok());
    }

    // A product with no build record, its mtime just after every source's change.
    void product_after_sources() {
        write_file(root() / cache.product, "product");
        volwatch::testing::set_mtime_ns(root() / cache.product, volwatch::testing::now_ns() + second);
    }

    TempDir dir;
    HostConfig host;
    CacheSpec cache;
};

TEST_F(Staleness, MissingProductIsStale) {
    write_file(root() / "src/a", "a");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::stale);
    EXPECT_EQ(verdict.reason, "product missing (out/pack.tgz)");
}

TEST_F(Staleness, CleanAfterBuild) {
    write_file(root() / "src/a/b/c", "x");
    build();
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::clean) << verdict.reason;
    EXPECT_TRUE(verdict.has_record);
}

TEST_F(Staleness, DeepChangeAfterBuildIsStaleWithTheFileNamed) {
    write_file(root() / "src/a/b/c", "x");
    build();
    write_file(root() / "src/a/b/c", "changed");
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("src/a/b"), std::string::npos) << verdict.reason;
    EXPECT_NE(verdict.reason.find("newer than the last build of out/pack.tgz"), std::string::npos) << verdict.reason;
}

TEST_F(Staleness, ChangeDuringTheBuildLeavesTheCacheStale) {
    write_file(root() / "src/module.ko", "v1");
    UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto record = begin_build_record(fd.get(), cache, host);
    ASSERT_TRUE(record.ok());
    write_file(root() / "src/module.ko", "v2 written while the rebuilder ran");
    write_file(root() / cache.product, "product built from v1");
    ASSERT_TRUE(write_build_record(fd.get(), cache.name, *record).ok());
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, OldMtimeButNewCtimeIsCaught) {
    // A package manager installs a module with the mtime from its archive.
    write_file(root() / cache.product, "product");
    volwatch::testing::set_mtime_ns(root() / cache.product, volwatch::testing::now_ns() - 10 * second);
    write_file(root() / "src/new.ko", "module");
    volwatch::testing::set_mtime_ns(root() / "src/new.ko", 946684800LL * second);  // year 2000
    volwatch::testing::set_mtime_ns(root() / "src", 946684800LL * second);
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("no build record"), std::string::npos) << verdict.reason;
}

TEST_F(Staleness, OldMtimeButNewCtimeIsCaughtWithARecord) {
    write_file(root() / "src/old.ko", "module");
    build();
    write_file(root() / "src/new.ko", "module");
    volwatch::testing::set_mtime_ns(root() / "src/new.ko", 946684800LL * second);
    volwatch::testing::set_mtime_ns(root() / "src", 946684800LL * second);
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, EqualTimesAreCleanAndOneNanosecondIsStale) {
    write_file(root() / "src/a", "a");
    write_file(root() / cache.product, "product");
    std::int64_t newest = std::max({volwatch::testing::ctime_ns(root() / "src/a"), volwatch::testing::ctime_ns(root() / "src"),
                                    volwatch::testing::mtime_ns(root() / "src/a"), volwatch::testing::mtime_ns(root() / "src")});
    volwatch::testing::set_mtime_ns(root() / cache.product, newest);
    EXPECT_EQ(check().state, CacheState::clean);
    volwatch::testing::set_mtime_ns(root() / cache.product, newest - 1);
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("is 1ns newer than out/pack.tgz"), std::string::npos) << verdict.reason;
}

TEST_F(Staleness, SourcesInTheFutureDoNotCauseEndlessRebuilds) {
    write_file(root() / "src/clock-skew", "x");
    volwatch::testing::set_mtime_ns(root() / "src/clock-skew", volwatch::testing::now_ns() + 3600 * second);
    product_after_sources();
    EXPECT_EQ(check().state, CacheState::stale) << "without a record the future file is newer than the product";
    build();
    EXPECT_EQ(check().state, CacheState::clean) << "with a record the unchanged digest decides";
}

TEST_F(Staleness, MissingSourcesAreNotErrors) {
    cache.sources = {"src", "does/not/exist"};
    write_file(root() / "src/a", "a");
    build();
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(Staleness, ASourceThatAppearsMakesTheCacheStale) {
    cache.sources = {"src", "etc/extra.conf"};
    build();
    write_file(root() / "etc/extra.conf", "new");
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, RemovedSourceIsStaleAndNamed) {
    cache.sources = {"src", "etc/ld.so.conf"};
    write_file(root() / "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf");
    build();
    std::filesystem::remove(root() / "etc/ld.so.conf");
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_EQ(verdict.reason, "source etc/ld.so.conf was removed since the last build");
}

TEST_F(Staleness, RemovedDeepFileIsStale) {
    write_file(root() / "src/a/b/c", "x");
    write_file(root() / "src/a/b/d", "y");
    build();
    // Keep every surviving time as it was, so only the digest can tell.
    std::int64_t dir_time = volwatch::testing::mtime_ns(root() / "src/a/b");
    std::filesystem::remove(root() / "src/a/b/d");
    volwatch::testing::set_mtime_ns(root() / "src/a/b", dir_time);
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, EmptySourceDirectoryIsFine) {
    build();
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(Staleness, ShallowIgnoresNestedContentButDeepAndForceDeepSeeIt) {
    cache.depth = Depth::shallow;
    write_file(root() / "src/a/b/c", "x");
    build();
    write_file(root() / "src/a/b/c", "changed in place");
    EXPECT_EQ(check().state, CacheState::clean) << "shallow looks at src and its entries only";
    auto forced = check({0, true});
    EXPECT_EQ(forced.state, CacheState::stale);
    EXPECT_NE(forced.reason.find("found by --deep"), std::string::npos) << forced.reason;
}

TEST_F(Staleness, ShallowSeesNewEntries) {
    cache.depth = Depth::shallow;
    build();
    write_file(root() / "src/new", "x");
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, ConfigChangeIsStale) {
    write_file(root() / "src/a", "a");
    build();
    host.rebuilders["pack"].argv.push_back("--extra");
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_EQ(verdict.reason, "config changed since the last build");
}

TEST_F(Staleness, ProductInsideItsOwnSourcesIsNotASource) {
    cache.sources = {"out"};
    std::filesystem::create_directories(root() / "out");
    write_file(root() / "out/input", "x");
    build();
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(Staleness, SymlinkedSourceInsideTheVolumeIsFollowed) {
    write_file(root() / "usr/lib/modules/a.ko", "a");
    std::filesystem::create_directory_symlink("usr/lib", root() / "lib");
    cache.sources = {"lib"};
    build();
    EXPECT_EQ(check().state, CacheState::clean);
    write_file(root() / "usr/lib/modules/b.ko", "b");
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(Staleness, SymlinkEscapingTheVolumeIsAnError) {
    std::filesystem::create_directory_symlink("/etc", root() / "escape");
    cache.sources = {"escape"};
    write_file(root() / cache.product, "p");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::error);
    EXPECT_NE(verdict.reason.find("outside the volume"), std::string::npos) << verdict.reason;
}

TEST_F(Staleness, DamagedRecordFallsBackToProductTimes) {
    write_file(root() / "src/a", "a");
    product_after_sources();
    write_file(root() / "var/lib/volwatch/build/pack.json", "{not json");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::clean);
    EXPECT_FALSE(verdict.has_record);
}

TEST_F(Staleness, ParallelAndSerialWalksAgree) {
    for (int d = 0; d < 40; ++d)
        for (int f = 0; f < 5; ++f)
            write_file(root() / fmt::format("src/d{}/e{}/f{}", d % 7, d, f), "x");
    UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto one = scan_sources(fd.get(), cache, 1);
    auto four = scan_sources(fd.get(), cache, 4);
    ASSERT_TRUE(one.ok() && four.ok());
    EXPECT_EQ(one->digest, four->digest);
    EXPECT_EQ(one->entries, 1u + 7u + 40u + 200u);
    EXPECT_EQ(one->entries, four->entries);
}

TEST_F(Staleness, BuildRecordRoundTrips) {
    BuildRecord record;
    record.started = 1'764'000'000'123'456'789;
    record.source_digest = "00112233445566778899aabbccddeeff";
    record.entries = 42;
    record.present_sources = {"src", "etc/x"};
    record.config_digest = "ffeeddccbbaa99887766554433221100";
    auto parsed = parse_build_record(format_build_record(record));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->started, record.started);
    EXPECT_EQ(parsed->source_digest, record.source_digest);
    EXPECT_EQ(parsed->entries, 42u);
    EXPECT_EQ(parsed->present_sources, record.present_sources);
    EXPECT_EQ(parsed->config_digest, record.config_digest);
    EXPECT_FALSE(parse_build_record("[]").has_value());
    EXPECT_FALSE(parse_build_record(R"({"version":2})").has_value());
}

}  // namespace

namespace {

// depmod's case: the rebuilder rewrites files beside the modules it indexes.
class DeclaredOutputs : public Staleness {
protected:
    void SetUp() override {
        Staleness::SetUp();
        cache.sources = {"modules/6.1"};
        cache.product = "modules/6.1/modules.dep";
        write_file(root() / "modules/6.1/kernel/a.ko", "a");
        write_file(root() / "modules/6.1/modules.order", "kernel/a.ko\n");
    }

    // What the rebuilder writes on every run, after the build started.
    void rebuilder_writes() {
        write_file(root() / "modules/6.1/modules.alias", fmt::format("run {}", ++runs));
        write_file(root() / "modules/6.1/modules.alias.bin", "bin");
        write_file(root() / "modules/6.1/modules.dep", "kernel/a.ko:");
    }

    CacheVerdict build_while_the_rebuilder_writes() {
        UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        auto record = begin_build_record(fd.get(), cache, host);
        EXPECT_TRUE(record.ok());
        rebuilder_writes();
        EXPECT_TRUE(write_build_record(fd.get(), cache.name, *record).ok());
        return check();
    }

    int runs = 0;
};

TEST_F(DeclaredOutputs, WithoutOutputsTheRebuildersOwnWritesLeaveTheCacheStale) {
    auto verdict = build_while_the_rebuilder_writes();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("modules/6.1/modules.alias"), std::string::npos) << verdict.reason;
}

TEST_F(DeclaredOutputs, DeclaredOutputsAreNotSources) {
    cache.outputs = {"modules/*/modules.alias", "modules/*/modules.*.bin"};
    EXPECT_EQ(build_while_the_rebuilder_writes().state, CacheState::clean);
    rebuilder_writes();  // every later run rewrites them: still clean
    EXPECT_EQ(check().state, CacheState::clean);
    EXPECT_EQ(check({0, true}).state, CacheState::clean);
}

TEST_F(DeclaredOutputs, ChangesBesideTheOutputsStillCount) {
    cache.outputs = {"modules/*/modules.alias", "modules/*/modules.*.bin"};
    ASSERT_EQ(build_while_the_rebuilder_writes().state, CacheState::clean);
    write_file(root() / "modules/6.1/kernel/b.ko", "b");
    auto verdict = check();
    ASSERT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("modules/6.1/kernel"), std::string::npos) << verdict.reason;
    ASSERT_EQ(build_while_the_rebuilder_writes().state, CacheState::clean);
    write_file(root() / "modules/6.1/modules.order", "kernel/a.ko\nkernel/b.ko\n");  // an input, not an output
    EXPECT_EQ(check().state, CacheState::stale);
    ASSERT_EQ(build_while_the_rebuilder_writes().state, CacheState::clean);
    write_file(root() / "modules/6.1/modules.builtin", "new");  // a new entry in the outputs' directory
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(DeclaredOutputs, AMatchedDirectoryIsLeftOutWhole) {
    cache.sources = {"modules"};
    cache.depth = Depth::deep;
    cache.outputs = {"modules/*/cache"};
    write_file(root() / "modules/6.1/cache/x", "1");
    std::filesystem::create_directories(root() / "modules/6.2");
    build();
    write_file(root() / "modules/6.1/cache/deeper/y", "2");
    EXPECT_EQ(check().state, CacheState::clean);
    write_file(root() / "modules/6.2/cache", "a file of the same name in another version is an output too");
    EXPECT_EQ(check().state, CacheState::clean);
    write_file(root() / "modules/6.2/caches", "but not this");
    EXPECT_EQ(check().state, CacheState::stale);
}

TEST_F(DeclaredOutputs, ShallowSourcesLeaveOutputsOutToo) {
    cache.depth = Depth::shallow;
    cache.outputs = {"modules/6.1/modules.alias*"};
    EXPECT_EQ(build_while_the_rebuilder_writes().state, CacheState::clean);
}

TEST_F(DeclaredOutputs, DescribeChangeNamesTheNewestEntry) {
    UniqueFd fd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto record = begin_build_record(fd.get(), cache, host);
    ASSERT_TRUE(record.ok());
    write_file(root() / "modules/6.1/kernel/b.ko", "b");
    // File times come from the kernel's coarse clock: a write in the same tick
    // as the fixture's files would tie with them, so date this one ahead.
    volwatch::testing::set_mtime_ns(root() / "modules/6.1/kernel/b.ko", volwatch::testing::now_ns() + second);
    auto now = scan_sources(fd.get(), cache);
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(describe_change(*now, *record).rfind("modules/6.1/kernel/b.ko is ", 0), 0u) << describe_change(*now, *record);
    record->started = now->newest + second;
    EXPECT_EQ(describe_change(*now, *record), fmt::format("{} entries then, {} now", record->entries, now->entries));
    record->entries = now->entries;
    EXPECT_EQ(describe_change(*now, *record), "an entry was removed or replaced");
}

}  // namespace
