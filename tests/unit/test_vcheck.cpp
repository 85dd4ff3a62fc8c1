// run_vcheck on sandbox volumes: the exit-code precedence of vcheck(1)
// (78 host config > 66 unknown volume > 65 volume config > 1 stale > 0) and
// the shapes of its JSON document that docs/schema/vcheck.schema.json and
// scripts rely on.
#include "volwatch/vcheck.hpp"
#include "volwatch/helpers.hpp"

#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_file;

class VcheckTest : public ::testing::Test {
protected:
    // A volume with one cache "pack" over src/ producing out/pack; fresh
    // (product newer than every source), stale (no product) or with an
    // invalid config.
    enum class Kind { clean, stale, bad_config };
    fs::path volume(const std::string& name, Kind kind) {
        fs::path root = dir_ / name;
        write_file(root / "src/a.ko", "module a\n");
        write_file(root / "etc/volwatch/bootcaches.toml",
                   kind == Kind::bad_config ? "version = \"one\"\n"
                                            : "version = 1\n[[cache]]\nname = \"pack\"\nsources = [\"src\"]\n"
                                              "product = \"out/pack\"\nrebuild = \"pack\"\n");
        if (kind == Kind::clean) {
            write_file(root / "out/pack", "product\n");
            testing::set_mtime_ns(root / "out/pack", testing::now_ns() + 60'000'000'000);
        }
        roots_.push_back(root);
        return root;
    }

    // Writes the host config naming every volume made so far; returns its path.
    fs::path host(const std::string& extra = "") {
        fs::create_directories(dir_ / "locks");
        ::chmod((dir_ / "locks").c_str(), 0755);
        std::string volumes;
        for (const auto& root : roots_) volumes += fmt::format("{}\"{}\"", volumes.empty() ? "" : ", ", root.string());
        fs::path path = dir_ / "host.toml";
        write_file(path, fmt::format("lock_dir = \"{}\"\ndiscover = false\nvolumes = [{}]\n{}\n[rebuilders]\n"
                                     "pack = {{ argv = [\"true\", \"{{product}}\"] }}\n",
                                     (dir_ / "locks").string(), volumes, extra));
        return path;
    }

    struct Run {
        ExitCode code;
        std::string out;
        std::string err;
    };
    Run run(std::vector<std::string> volumes, OutputFormat format = OutputFormat::human, bool quiet = false) {
        VcheckOptions options;
        options.volumes = std::move(volumes);
        options.format = format;
        options.quiet = quiet;
        options.host.config = dir_ / "host.toml";
        options.threads = 1;
        std::ostringstream out, err;
        ExitCode code = run_vcheck(options, out, err);
        return {code, out.str(), err.str()};
    }

    TempDir temp_;
    fs::path dir_ = fs::canonical(temp_.path());
    std::vector<fs::path> roots_;
};

TEST_F(VcheckTest, CleanVolumesExitZero) {
    auto a = volume("a", Kind::clean);
    auto b = volume("b", Kind::clean);
    host();
    auto result = run({a.string(), b.string()});
    EXPECT_EQ(result.code, ExitCode::ok) << result.out << result.err;
    EXPECT_NE(result.out.find(fmt::format("{}: clean", a.string())), std::string::npos) << result.out;
    EXPECT_EQ(result.err, "");
}

TEST_F(VcheckTest, StaleBeatsClean) {
    auto a = volume("a", Kind::clean);
    auto b = volume("b", Kind::stale);
    host();
    auto result = run({a.string(), b.string()});
    EXPECT_EQ(result.code, ExitCode::stale) << result.out << result.err;
    EXPECT_NE(result.out.find("pack  stale: product missing (out/pack)"), std::string::npos) << result.out;
}

TEST_F(VcheckTest, VolumeConfigErrorBeatsStale) {
    auto a = volume("a", Kind::stale);
    auto b = volume("b", Kind::bad_config);
    host();
    auto result = run({a.string(), b.string()});
    EXPECT_EQ(result.code, ExitCode::bad_volume_config) << result.out << result.err;
    EXPECT_NE(result.out.find(fmt::format("{}: stale", a.string())), std::string::npos) << result.out;
    EXPECT_NE(result.out.find(fmt::format("{}: config-error", b.string())), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("bootcaches.toml:1: version: expected an integer, found a string"), std::string::npos)
        << result.out;
}

TEST_F(VcheckTest, UnknownVolumeBeatsConfigErrorAndStale) {
    auto a = volume("a", Kind::stale);
    auto b = volume("b", Kind::bad_config);
    host();
    std::string missing = (dir_ / "missing").string();
    auto result = run({a.string(), b.string(), missing});
    EXPECT_EQ(result.code, ExitCode::unknown_volume) << result.out << result.err;
    // The known volumes are still reported; the unknown one is named on stderr.
    EXPECT_NE(result.out.find(fmt::format("{}: config-error", b.string())), std::string::npos) << result.out;
    EXPECT_NE(result.err.find(fmt::format("vcheck: {}", missing)), std::string::npos) << result.err;
}

TEST_F(VcheckTest, HostConfigErrorBeatsEverything) {
    auto a = volume("a", Kind::stale);
    host("settle = 5");
    auto result = run({a.string(), (dir_ / "missing").string()});
    EXPECT_EQ(result.code, ExitCode::bad_host_config);
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(result.err, fmt::format("vcheck: {}:4: settle: expected a string, found an integer\n",
                                      (dir_ / "host.toml").string()));
}

TEST_F(VcheckTest, QuietKeepsTheExitCode) {
    auto a = volume("a", Kind::stale);
    auto b = volume("b", Kind::bad_config);
    host();
    auto result = run({a.string(), b.string()}, OutputFormat::human, true);
    EXPECT_EQ(result.code, ExitCode::bad_volume_config);
    EXPECT_EQ(result.out, "");
}

TEST_F(VcheckTest, JsonShapes) {
    auto a = volume("a", Kind::stale);
    auto b = volume("b", Kind::bad_config);
    host();
    std::string missing = (dir_ / "missing").string();
    auto result = run({a.string(), b.string(), missing}, OutputFormat::json);
    ASSERT_EQ(result.code, ExitCode::unknown_volume);
    auto doc = nlohmann::json::parse(result.out);
    EXPECT_EQ(doc.at("version"), 1);
    EXPECT_EQ(doc.at("exit_code"), 66);
    EXPECT_EQ(doc.at("exit_status"), "unknown-volume");
    ASSERT_EQ(doc.at("errors").size(), 1u);
    EXPECT_EQ(doc["errors"][0].at("argument"), missing);
    EXPECT_TRUE(doc["errors"][0].at("message").is_string());
    ASSERT_EQ(doc.at("volumes").size(), 2u);

    const auto& stale = doc["volumes"][0];
    EXPECT_EQ(stale.at("root"), a.string());
    EXPECT_TRUE(stale.at("id").is_string());
    EXPECT_EQ(stale.at("state"), "stale");
    EXPECT_TRUE(stale.at("problem").is_null());
    EXPECT_TRUE(stale.at("lock").is_null());
    EXPECT_TRUE(stale.at("helpers").is_array());
    EXPECT_TRUE(stale.at("waiters").is_array());
    EXPECT_EQ(stale.at("failures"), 0);
    EXPECT_EQ(stale.at("attempts"), 0);
    EXPECT_EQ(stale.at("gave_up"), false);
    ASSERT_EQ(stale.at("caches").size(), 1u);
    const auto& cache = stale["caches"][0];
    EXPECT_EQ(cache.at("name"), "pack");
    EXPECT_EQ(cache.at("state"), "stale");
    EXPECT_EQ(cache.at("reason"), "product missing (out/pack)");
    EXPECT_EQ(cache.at("has_build_record"), false);
    EXPECT_TRUE(cache.at("product_mtime_ns").is_number_integer());
    EXPECT_TRUE(cache.at("newest_source_ns").is_number_integer());

    const auto& bad = doc["volumes"][1];
    EXPECT_EQ(bad.at("state"), "config-error");
    EXPECT_TRUE(bad.at("problem").is_string());
    EXPECT_TRUE(bad.at("caches").empty());
}

TEST_F(VcheckTest, JsonReplacesBytesThatAreNotUtf8) {
    auto a = volume("a", Kind::clean);
    host();
    write_file(a / "src/bad\xffname.ko", "x\n");
    testing::set_mtime_ns(a / "src/bad\xffname.ko", testing::now_ns() + 120'000'000'000);
    auto result = run({a.string()}, OutputFormat::json);
    EXPECT_EQ(result.code, ExitCode::stale) << result.err;
    auto doc = nlohmann::json::parse(result.out);
    std::string reason = doc["volumes"][0]["caches"][0].at("reason");
    EXPECT_NE(reason.find("src/bad\xef\xbf\xbdname.ko"), std::string::npos) << reason;
    auto human = run({a.string()});
    EXPECT_NE(human.out.find("src/bad\\xffname.ko"), std::string::npos) << human.out;
}

// vcheck --list-helpers: the lines 42_volwatch reads (volwatch-grub(8)).
TEST(HelperListTest, OneLinePerTargetInConfigOrderWithVolumeAndFstype) {
    HostConfig host;
    host.helpers.push_back(HelperMapping{"/", {"/boot/efi", "UUID=1234-ABCD"}, "vfat", false, {}, 3});
    host.helpers.push_back(HelperMapping{"UUID=2f6b", {"/srv/esp"}, "", false, {}, 7});
    auto list = format_helper_list(host);
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(*list, "/\t/boot/efi\tvfat\n/\tUUID=1234-ABCD\tvfat\nUUID=2f6b\t/srv/esp\t-\n");
    EXPECT_EQ(*format_helper_list(HostConfig{}), "");
}

TEST(HelperListTest, RefusesWhatOneLineCannotCarry) {
    for (const std::string bad : {"/boot/a\tb", "/boot/a\nb", ""}) {
        HostConfig host;
        host.source = "/etc/volwatch/volwatch.toml";
        host.helpers.push_back(HelperMapping{"/", {"/boot/efi", bad}, "", false, {}, 4});
        auto list = format_helper_list(host);
        ASSERT_FALSE(list.ok()) << bad;
        EXPECT_EQ(list.problem().code, ExitCode::bad_host_config);
        EXPECT_EQ(list.problem().message.rfind("/etc/volwatch/volwatch.toml:4: helpers: ", 0), 0U) << list.problem().message;
        EXPECT_EQ(list.problem().message.find('\n'), std::string::npos);
    }
}

}  // namespace
}  // namespace volwatch
