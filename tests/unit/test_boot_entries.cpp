#include <fcntl.h>
#include <map>
#include <optional>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/boot_entries.hpp"
#include "volwatch/config.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/helper_sync.hpp"

using namespace volwatch;
using volwatch::testing::PrivateTmpfs;
using volwatch::testing::read_file;
using volwatch::testing::TempDir;
using volwatch::testing::write_file;

namespace {

TEST(BootEntryName, PlainAndCountedNames) {
    auto plain = parse_boot_entry_name("debian-8.conf", "debian");
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(plain->generation, 8u);
    EXPECT_FALSE(plain->tries_left.has_value());
    auto fresh = parse_boot_entry_name("debian-12+3.conf", "debian");
    ASSERT_TRUE(fresh.has_value());
    EXPECT_EQ(fresh->generation, 12u);
    EXPECT_EQ(fresh->tries_left, 3u);
    EXPECT_FALSE(fresh->tries_done.has_value());
    EXPECT_FALSE(boot_entry_exhausted(*fresh));
    auto trying = parse_boot_entry_name("debian-12+2-1.conf", "debian");
    ASSERT_TRUE(trying.has_value());
    EXPECT_EQ(trying->tries_left, 2u);
    EXPECT_EQ(trying->tries_done, 1u);
    auto failed = parse_boot_entry_name("debian-12+0-3.conf", "debian");
    ASSERT_TRUE(failed.has_value());
    EXPECT_TRUE(boot_entry_exhausted(*failed));
    EXPECT_EQ(parse_boot_entry_name("my.os_1-4.conf", "my.os_1")->generation, 4u);
}

TEST(BootEntryName, JunkAndOtherIdsAreNotEntries) {
    for (const char* name : {"debian.conf", "debian-.conf", "debian-8", "debian-8.conf.tmp", ".debian-8.conf.tmp.12", "debian-08.conf",
                             "debian-8+.conf", "debian-8+a.conf", "debian-8+1-.conf", "debian-8+1-2-3.conf", "debian-8-1.conf",
                             "debian-x.conf", "debian-+8.conf", "debian-8.CONF", "xdebian-8.conf", "debian-1-8.conf",
                             "debian--8.conf", "debian-8+-1.conf", "debian-99999999999999999999.conf"})
        EXPECT_FALSE(parse_boot_entry_name(name, "debian").has_value()) << name;
    EXPECT_FALSE(parse_boot_entry_name("debian-8.conf", "debia").has_value());
    EXPECT_FALSE(parse_boot_entry_name("debian-8.conf", "debian-8").has_value());
    EXPECT_FALSE(parse_boot_entry_name("volwatch-3.conf", "debian").has_value());
}

TEST(BootEntryName, FilenamesRoundTrip) {
    EXPECT_EQ(boot_entry_filename("debian", 8, 0), "debian-8.conf");
    EXPECT_EQ(boot_entry_filename("debian", 8, 3), "debian-8+3.conf");
    auto parsed = parse_boot_entry_name(boot_entry_filename("a.b", 17, 9), "a.b");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->generation, 17u);
    EXPECT_EQ(parsed->tries_left, 9u);
}

BootEntryConfig debian() {
    BootEntryConfig entry;
    entry.id = "debian";
    entry.title = "Debian GNU/Linux";
    entry.linux_file = "boot/vmlinuz";
    entry.initrd = {"boot/initrd.img"};
    entry.options = "root=UUID=x ro volwatch.generation={generation} volwatch.slot={slot} ${slot}";
    return entry;
}

TEST(BootEntryText, TheExactFormat) {
    auto text = format_boot_entry(debian(), {"boot/vmlinuz", "./boot/initrd.img"}, 8, "b");
    ASSERT_TRUE(text.ok()) << text.problem().message;
    EXPECT_EQ(*text,
              "# volwatch: generation 8, slot b; vrebuild replaces this file\n"
              "title Debian GNU/Linux (generation 8)\n"
              "sort-key debian\n"
              "version 8\n"
              "linux /volwatch/slot-b/boot/vmlinuz\n"
              "initrd /volwatch/slot-b/boot/initrd.img\n"
              "options root=UUID=x ro volwatch.generation=8 volwatch.slot=b ${slot}\n");
    auto paths = parse_boot_entry_paths(*text);
    ASSERT_TRUE(paths.has_value());
    EXPECT_EQ(paths->slot, "b");
    EXPECT_EQ(paths->files, (std::vector<std::string>{"boot/vmlinuz", "boot/initrd.img"}));
}

TEST(BootEntryText, NoOptionsNoInitrdAndPlaceholdersInTheTitle) {
    BootEntryConfig entry;
    entry.linux_file = "vmlinuz";
    entry.title = "OS {slot}";
    auto text = format_boot_entry(entry, {"vmlinuz"}, 1, "a");
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "# volwatch: generation 1, slot a; vrebuild replaces this file\ntitle OS a (generation 1)\nsort-key volwatch\n"
                     "version 1\nlinux /volwatch/slot-a/vmlinuz\n");
}

TEST(BootEntryText, AFileThatIsNoHelperFileIsRefused) {
    auto text = format_boot_entry(debian(), {"boot/vmlinuz"}, 8, "b");
    ASSERT_FALSE(text.ok());
    EXPECT_EQ(text.problem().message,
              "[helpers.entry] initrd \"boot/initrd.img\" is not one of the volume's helper files ([helpers] files); no boot entry can name it");
}

TEST(BootEntryText, PathsOutsideOneSlotAreNotVolwatchEntries) {
    EXPECT_FALSE(parse_boot_entry_paths("title x\n").has_value());
    EXPECT_FALSE(parse_boot_entry_paths("linux /vmlinuz\n").has_value());
    EXPECT_FALSE(parse_boot_entry_paths("linux /volwatch/slot-c/vmlinuz\n").has_value());
    EXPECT_FALSE(parse_boot_entry_paths("linux /volwatch/slot-a/../x\n").has_value());
    EXPECT_FALSE(parse_boot_entry_paths("linux /volwatch/slot-a/v\ninitrd /volwatch/slot-b/i\n").has_value());
    EXPECT_FALSE(parse_boot_entry_paths("linux /volwatch/slot-a/v\nlinux /volwatch/slot-a/w\n").has_value());
    EXPECT_TRUE(parse_boot_entry_paths("# c\nlinux\t/volwatch/slot-a/v  \r\n").has_value());
}

BootEntryFile entry_named(const std::string& filename) {
    return BootEntryFile{filename, *parse_boot_entry_name(filename, "d"), std::nullopt, {}};
}

std::vector<std::string> order(std::vector<std::string> names) {
    std::vector<BootEntryFile> entries;
    for (const auto& name : names) entries.push_back(entry_named(name));
    sort_boot_entries(entries);
    std::vector<std::string> sorted;
    for (const auto& entry : entries) sorted.push_back(entry.filename);
    return sorted;
}

TEST(BootEntrySort, NewestFirstExhaustedLastLikeSystemdBoot252) {
    EXPECT_EQ(order({"d-9.conf", "d-10.conf"}), (std::vector<std::string>{"d-10.conf", "d-9.conf"}));
    EXPECT_EQ(order({"d-9.conf", "d-10+0-3.conf"}), (std::vector<std::string>{"d-9.conf", "d-10+0-3.conf"}));
    EXPECT_EQ(order({"d-9.conf", "d-10+2-1.conf"}), (std::vector<std::string>{"d-10+2-1.conf", "d-9.conf"}));
    EXPECT_EQ(order({"d-9+0-3.conf", "d-10+0-3.conf", "d-8.conf"}),
              (std::vector<std::string>{"d-8.conf", "d-10+0-3.conf", "d-9+0-3.conf"}));
    EXPECT_EQ(order({"d-5+1-2.conf", "d-5+2-1.conf", "d-5+2.conf"}),
              (std::vector<std::string>{"d-5+2.conf", "d-5+2-1.conf", "d-5+1-2.conf"}));
}

// The target is a tmpfs of the test's own: a boot entry target must be the
// root of a mounted file system (helper_mount_problem).
class BootEntrySync : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root: boot entries need a target that is the root of a file system (a tmpfs here)";
        write_file(root() / "boot/vmlinuz", "kernel 1");
        write_file(root() / "boot/initrd.img", "initrd 1");
        std::filesystem::create_directories(target());
        esp.emplace(target());
        ASSERT_EQ(esp->error(), "");
        config.helper_files = {"boot/vmlinuz", "boot/initrd.img"};
        volume.root = root();
        volume.id = VolumeId{"path-0123456789abcdef"};
        root_fd = UniqueFd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        entry = debian();
    }
    std::filesystem::path root() const { return dir.path() / "vol"; }
    std::filesystem::path target() const { return dir.path() / "esp"; }
    HelperTarget helper() const { return HelperTarget{target(), false, {}, {}, entry}; }
    HelperSyncResult sync(bool force = false) { return sync_helper(root_fd.get(), volume, config, helper(), {force, false, {}}); }
    HelperVerdict check() { return check_helper(root_fd.get(), config, helper(), true); }
    std::vector<std::string> names() {
        std::vector<std::string> out;
        for (const auto& e : read_boot_entries(target(), entry.id)) out.push_back(e.filename);
        return out;
    }
    void change_kernel(const std::string& text) { write_file(root() / "boot/vmlinuz", text); }

    TempDir dir;
    std::optional<PrivateTmpfs> esp;  // on target(); gone before dir
    VolumeConfig config;
    Volume volume;
    UniqueFd root_fd;
    BootEntryConfig entry;
};

TEST_F(BootEntrySync, EachSwitchWritesAnEntryAndKeepsThePrevious) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-1.conf"}));
    EXPECT_EQ(read_file(target() / "loader/entries/debian-1.conf"), *format_boot_entry(entry, config.helper_files, 1, "a"));
    EXPECT_EQ(check().state, CacheState::clean) << check().reason;
    change_kernel("kernel 2");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-2.conf", "debian-1.conf"}));
    change_kernel("kernel 3");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-3.conf", "debian-2.conf"}));
    EXPECT_EQ(check().state, CacheState::clean) << check().reason;
    EXPECT_EQ(std::filesystem::directory_iterator(target() / "loader/entries")->path().filename().string().front(), 'd');
}

TEST_F(BootEntrySync, OptionsChangedOrEntryMissingIsStale) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    entry.options = "quiet";
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::stale);
    EXPECT_EQ(verdict.reason, "boot entry debian-1.conf on " + target().string() + " differs from what the host config asks now ([helpers.entry])");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(read_live_pointer(target())->generation, 2u);
    std::filesystem::remove(target() / "loader/entries/debian-2.conf");
    EXPECT_EQ(check().reason, target().string() + " has no boot entry for its live generation 2 (loader/entries/debian-2.conf)");
}

TEST_F(BootEntrySync, ALiveEntryOutOfTriesIsAnErrorAndRefusedWithoutForce) {
    entry.tries = 3;
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 2");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-2+3.conf", "debian-1+3.conf"}));
    // The boot loader counted a try: normal.
    std::filesystem::rename(target() / "loader/entries/debian-2+3.conf", target() / "loader/entries/debian-2+2-1.conf");
    EXPECT_EQ(check().state, CacheState::clean) << check().reason;
    std::filesystem::rename(target() / "loader/entries/debian-2+2-1.conf", target() / "loader/entries/debian-2+0-3.conf");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::error);
    EXPECT_EQ(verdict.reason,
              "generation 2 failed to boot (entry debian-2+0-3.conf has no tries left); the boot loader falls back to generation 1");
    change_kernel("kernel 3");
    auto refused = sync();
    EXPECT_EQ(refused.outcome, HelperOutcome::failed);
    EXPECT_EQ(refused.message, "helper target " + target().string() + ": generation 2 failed to boot (entry debian-2+0-3.conf has no tries "
                               "left); the boot loader falls back to generation 1; refusing to overwrite that set (vrebuild --force does)");
    EXPECT_EQ(read_file(target() / "volwatch/slot-a/boot/vmlinuz"), "kernel 1");
    auto forced = sync(true);
    ASSERT_EQ(forced.outcome, HelperOutcome::updated) << forced.message;
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-3+3.conf", "debian-2+0-3.conf"}));
}

TEST_F(BootEntrySync, EntriesOfOtherIdsAndForeignFilesAreLeftAlone) {
    write_file(target() / "loader/entries/arch.conf", "title Arch\nlinux /vmlinuz-linux\n");
    write_file(target() / "loader/entries/debian-x.conf", "junk");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 2");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 3");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(read_file(target() / "loader/entries/arch.conf"), "title Arch\nlinux /vmlinuz-linux\n");
    EXPECT_EQ(read_file(target() / "loader/entries/debian-x.conf"), "junk");
}

TEST_F(BootEntrySync, AnEntryNamingAnUnsealedSlotIsAnError) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(target() / "loader/entries/debian-7.conf", *format_boot_entry(entry, config.helper_files, 7, "b"));
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::error);
    EXPECT_EQ(verdict.reason, "boot entry debian-7.conf names slot b, which is not sealed with generation 7 on " + target().string());
    std::filesystem::remove(target() / "loader/entries/debian-7.conf");
    std::filesystem::remove(target() / "volwatch/slot-a/boot/initrd.img");
    verdict = check();
    EXPECT_EQ(verdict.state, CacheState::error);
    EXPECT_EQ(verdict.reason, "boot entry debian-1.conf names /volwatch/slot-a/boot/initrd.img, which is missing from that slot or differs "
                              "from its manifest on " + target().string());
}

TEST_F(BootEntrySync, ALinuxFileThatIsNoHelperFileFailsAndWritesNothing) {
    entry.linux_file = "boot/vmlinuz-6.1";
    auto result = sync();
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    EXPECT_EQ(result.message, "helper target " + target().string() + ": [helpers.entry] linux \"boot/vmlinuz-6.1\" is not one of the "
                              "volume's helper files ([helpers] files); no boot entry can name it; nothing written");
    EXPECT_TRUE(std::filesystem::is_empty(target()));
}

// A plain directory, or a bind mount of a subdirectory, would get entries
// that name nothing to the boot loader: refused with nothing written, even
// with --force, and an error for vcheck. Without [helpers.entry] the same
// directory is still a helper.
TEST_F(BootEntrySync, ATargetThatIsNotTheRootOfAFileSystemIsRefused) {
    const std::filesystem::path plain = dir.path() / "plain";
    const std::filesystem::path bound = dir.path() / "bound";
    std::filesystem::create_directories(plain);
    std::filesystem::create_directories(bound);
    std::filesystem::create_directories(target() / "sub");
    ASSERT_EQ(::mount((target() / "sub").c_str(), bound.c_str(), nullptr, MS_BIND, nullptr), 0);  // undone with esp's namespace
    const std::string need = "boot entries need the root of the partition the boot loader reads: ";
    const std::map<std::filesystem::path, std::string> reasons = {
        {plain, need + plain.string() + " is not a mount point ([helpers.entry] in the host config)"},
        {bound, need + bound.string() + " is a bind mount of /sub of its file system, not of its root ([helpers.entry] in the host config)"}};
    for (const auto& [path, reason] : reasons) {
        auto mount = probe_helper_mount(path);
        ASSERT_TRUE(mount);
        EXPECT_EQ(mount->fs_root, path == bound ? "/sub" : "");
        HelperTarget helper{path, false, {}, {}, entry};
        for (bool force : {false, true}) {
            auto result = sync_helper(root_fd.get(), volume, config, helper, {force, false, {}});
            EXPECT_EQ(result.outcome, HelperOutcome::failed);
            EXPECT_EQ(result.message, reason);
        }
        EXPECT_TRUE(std::filesystem::is_empty(path));
        auto verdict = check_helper(root_fd.get(), config, helper, true);
        EXPECT_EQ(verdict.state, CacheState::error);
        EXPECT_EQ(verdict.reason, reason);
        EXPECT_FALSE(read_bootstamp(root_fd.get(), path).has_value());
        helper.entry.reset();
        auto synced = sync_helper(root_fd.get(), volume, config, helper, {});
        EXPECT_EQ(synced.outcome, HelperOutcome::updated) << synced.message;
        EXPECT_FALSE(std::filesystem::exists(path / "loader"));
    }
    EXPECT_EQ(probe_helper_mount(target())->fs_root, "/");
    EXPECT_EQ(sync().outcome, HelperOutcome::updated);
}

}  // namespace

namespace {

// The entry is written before the pointer: when it cannot be written, the
// old set stays live (a crash at that instant leaves the same state).
TEST_F(BootEntrySync, TheEntryIsWrittenBeforeThePointer) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 2");
    std::filesystem::create_directories(target() / "loader/entries/debian-2.conf");  // the rename onto it fails
    auto result = sync();
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    auto live = read_live_pointer(target());
    ASSERT_TRUE(live.has_value());
    EXPECT_EQ(live->generation, 1u);
    EXPECT_EQ(live->slot, "a");
    EXPECT_TRUE(std::filesystem::exists(target() / "loader/entries/debian-1.conf"));
}

// Entries naming the spare slot are removed before its seal: when they
// cannot be (loader/entries on a read-only bind mount), the reused slot is
// still sealed with its generation and its entry still names a complete set.
TEST_F(BootEntrySync, EntriesOfTheSpareSlotGoBeforeItsSeal) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for a read-only bind mount in a private mount namespace";
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 2");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    change_kernel("kernel 3");
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int code = 0;
        std::string entries = (target() / "loader/entries").string();
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(2);
        if (::mount(entries.c_str(), entries.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
            ::mount(nullptr, entries.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
            ::_exit(3);
        auto result = sync();
        if (result.outcome != HelperOutcome::failed) code |= 4;
        auto manifest = read_file(target() / "volwatch/slot-a/MANIFEST.json");
        if (manifest.find("\"generation\": 1") == std::string::npos) code |= 8;
        if (read_file(target() / "volwatch/slot-a/boot/vmlinuz") != "kernel 1") code |= 16;
        if (!std::filesystem::exists(target() / "loader/entries/debian-1.conf")) code |= 32;
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "bit flags of failed checks";
}

// Changed options need a new generation even while a cache failure holds a
// file back and nothing else differs.
TEST_F(BootEntrySync, AStaleEntryIsWrittenEvenWhenOnlyHeldBackFilesDiffer) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    entry.options = "quiet";
    HelperSyncOptions options;
    options.held_back = {HeldBackFile{"boot/initrd.img", {"initramfs"}, "the product of cache initramfs, which failed"}};
    auto result = sync_helper(root_fd.get(), volume, config, helper(), options);
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(result.generation, 2u);
    EXPECT_EQ(names(), (std::vector<std::string>{"debian-2.conf", "debian-1.conf"}));
    EXPECT_EQ(read_file(target() / "volwatch/slot-b/boot/initrd.img"), "initrd 1");
}

}  // namespace
