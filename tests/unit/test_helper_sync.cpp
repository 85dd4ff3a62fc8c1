#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/helper_sync.hpp"

using namespace volwatch;
using volwatch::testing::read_file;
using volwatch::testing::TempDir;
using volwatch::testing::write_file;

namespace {

class HelperSync : public ::testing::Test {
protected:
    void SetUp() override {
        write_file(root() / "boot/vmlinuz", std::string(100000, 'k'));
        write_file(root() / "boot/initrd.img", std::string(300000, 'i'));
        std::filesystem::create_directories(target());
        config.helper_files = {"boot/vmlinuz", "boot/initrd.img"};
        volume.root = root();
        volume.id = VolumeId{"path-0123456789abcdef"};
        root_fd = UniqueFd(::open(root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    std::filesystem::path root() const { return dir.path() / "vol"; }
    std::filesystem::path target() const { return dir.path() / "esp"; }
    HelperSyncResult sync(HelperSyncOptions options = {}) { return sync_helper(root_fd.get(), volume, config, HelperTarget{target(), require_mount, {}, {}, {}}, options); }
    HelperVerdict check(bool deep = true) { return check_helper(root_fd.get(), config, HelperTarget{target(), require_mount, {}, {}, {}}, deep); }

    TempDir dir;
    VolumeConfig config;
    Volume volume;
    UniqueFd root_fd;
    bool require_mount = false;
};

TEST_F(HelperSync, FirstSyncCopiesEverythingAndIsClean) {
    EXPECT_EQ(check().reason, "never synced (no bootstamp)");
    auto result = sync();
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(result.generation, 1u);
    EXPECT_EQ(result.bytes, 400000u);
    EXPECT_EQ(read_file(target() / "volwatch/slot-a/boot/vmlinuz"), std::string(100000, 'k'));
    auto live = read_live_pointer(target());
    ASSERT_TRUE(live.has_value());
    EXPECT_EQ(live->slot, "a");
    EXPECT_EQ(live->generation, 1u);
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::clean) << verdict.reason;
    EXPECT_EQ(verdict.generation, 1u);
}

TEST_F(HelperSync, SecondSyncIsUnchangedAndForceRewrites) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(sync().outcome, HelperOutcome::unchanged);
    auto forced = sync({true, false, {}});
    EXPECT_EQ(forced.outcome, HelperOutcome::updated);
    EXPECT_EQ(forced.generation, 2u);
    EXPECT_EQ(read_live_pointer(target())->slot, "b");
}

TEST_F(HelperSync, ChangedSourceAlternatesSlotsAndKeepsTheOldSetUntilTheSwitch) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(root() / "boot/vmlinuz", "new kernel");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::stale);
    EXPECT_EQ(verdict.reason, "boot/vmlinuz changed since it was copied to " + target().string());
    auto result = sync();
    ASSERT_EQ(result.outcome, HelperOutcome::updated);
    EXPECT_EQ(read_file(target() / "volwatch/slot-b/boot/vmlinuz"), "new kernel");
    EXPECT_EQ(read_file(target() / "volwatch/slot-a/boot/vmlinuz"), std::string(100000, 'k'));
    EXPECT_EQ(check().state, CacheState::clean);
}

// Step 1 empties the spare slot in place, depth first, instead of removing
// and recreating it: on vfat its entry in volwatch/ is then never rewritten
// (docs/helpers.md, "The file system itself stays consistent").
TEST_F(HelperSync, ReusingASlotEmptiesItInPlaceWithEverythingLeftInIt) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(root() / "boot/vmlinuz", "kernel 2");
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);  // slot b
    auto slot_a = target() / "volwatch/slot-a";
    struct stat before {};
    ASSERT_EQ(::stat(slot_a.c_str(), &before), 0);
    write_file(slot_a / "leftover/deeper/file", "not ours");
    write_file(slot_a / "stray", "not ours either");
    write_file(root() / "boot/vmlinuz", "kernel 3");
    auto result = sync();
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(read_live_pointer(target())->slot, "a");
    struct stat after {};
    ASSERT_EQ(::stat(slot_a.c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_FALSE(std::filesystem::exists(slot_a / "leftover"));
    EXPECT_FALSE(std::filesystem::exists(slot_a / "stray"));
    EXPECT_EQ(read_file(slot_a / "boot/vmlinuz"), "kernel 3");
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(HelperSync, ASymlinkInTheSpareSlotsPlaceIsReplacedNotFollowed) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);  // slot a; b is next
    auto elsewhere = dir.path() / "elsewhere";
    write_file(elsewhere / "precious", "keep me");
    std::filesystem::create_directory_symlink(elsewhere, target() / "volwatch/slot-b");
    write_file(root() / "boot/vmlinuz", "kernel 2");
    auto result = sync();
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(read_file(elsewhere / "precious"), "keep me");
    EXPECT_FALSE(std::filesystem::is_symlink(target() / "volwatch/slot-b"));
    EXPECT_EQ(read_file(target() / "volwatch/slot-b/boot/vmlinuz"), "kernel 2");
}

TEST_F(HelperSync, AnUnsealedSlotIsNeverLive) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    // A crash after copying into slot b but before its manifest: a pointer to b
    // (even a valid one) must not win.
    write_file(target() / "volwatch/slot-b/boot/vmlinuz", "half");
    write_file(target() / "volwatch/current.new", format_pointer("b", 2));
    auto live = read_live_pointer(target());
    ASSERT_TRUE(live.has_value());
    EXPECT_EQ(live->slot, "a");
}

TEST_F(HelperSync, ATornPointerFallsBackToTheOtherFile) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    ASSERT_EQ(sync({true, false, {}}).outcome, HelperOutcome::updated);  // live: b, generation 2
    // FAT rename-over is not atomic: current gone, current.new complete.
    std::filesystem::rename(target() / "volwatch/current", target() / "volwatch/current.new");
    EXPECT_EQ(read_live_pointer(target())->slot, "b");
    // A torn current.new (bad check line) is ignored in favour of current.
    write_file(target() / "volwatch/current", format_pointer("b", 2));
    write_file(target() / "volwatch/current.new", "generation=3\nslot=a\ncheck=00");
    EXPECT_EQ(read_live_pointer(target())->generation, 2u);
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(HelperSync, ContentChangedBehindOurBackIsStale) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(target() / "volwatch/slot-a/boot/vmlinuz", std::string(100000, 'X'));
    EXPECT_EQ(check(false).state, CacheState::clean) << "same size: only hashing can tell";
    auto verdict = check(true);
    EXPECT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("changed behind volwatch's back"), std::string::npos) << verdict.reason;
    EXPECT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(check(true).state, CacheState::clean);
}

TEST_F(HelperSync, AReplacedDiskIsStale) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    std::filesystem::remove_all(target() / "volwatch");
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::stale);
    EXPECT_NE(verdict.reason.find("no complete volwatch slot"), std::string::npos) << verdict.reason;
    EXPECT_EQ(sync().outcome, HelperOutcome::updated);
    EXPECT_EQ(check().generation, 2u) << "generations never go backwards";
}

TEST_F(HelperSync, DryRunChangesNothing) {
    auto result = sync({false, true, {}});
    EXPECT_EQ(result.outcome, HelperOutcome::would_update);
    EXPECT_EQ(result.files.size(), 2u);
    EXPECT_FALSE(std::filesystem::exists(target() / "volwatch"));
    EXPECT_FALSE(std::filesystem::exists(root() / "var/lib/volwatch"));
}

TEST_F(HelperSync, MissingTargetOrFileFails) {
    std::filesystem::remove_all(target());
    auto result = sync();
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    EXPECT_NE(result.message.find("missing or not mounted"), std::string::npos);
    std::filesystem::create_directories(target());
    std::filesystem::remove(root() / "boot/initrd.img");
    result = sync();
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    EXPECT_NE(result.message.find("boot/initrd.img is missing"), std::string::npos) << result.message;
    EXPECT_FALSE(std::filesystem::exists(target() / "volwatch"));
}

TEST_F(HelperSync, NoRoomLeavesTheHelperUntouched) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs in a private mount namespace";
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int code = 0;
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(2);
        if (::mount("tmpfs", target().c_str(), "tmpfs", 0, "size=1m") != 0) ::_exit(3);
        if (sync().outcome != HelperOutcome::updated) code |= 4;             // 400 kB fits once
        write_file(root() / "boot/initrd.img", std::string(600000, 'j'));     // 700 kB beside 400 kB does not
        auto before = read_live_pointer(target());
        auto result = sync();
        if (result.outcome != HelperOutcome::failed) code |= 8;
        if (result.message.find("not enough room") == std::string::npos) code |= 16;
        auto after = read_live_pointer(target());
        if (!before || !after || after->generation != before->generation || after->slot != before->slot) code |= 32;
        if (std::filesystem::exists(target() / "volwatch/slot-b")) code |= 64;
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "bit flags of failed checks";
}

TEST_F(HelperSync, RequireMountRefusesADirectoryThatIsNoMountPoint) {
    auto mount = probe_helper_mount(target());
    ASSERT_TRUE(mount);
    if (mount->mount_root) GTEST_SKIP() << "the temporary directory is itself a mount point";
    require_mount = true;
    auto verdict = check();
    EXPECT_EQ(verdict.state, CacheState::error);
    EXPECT_EQ(verdict.reason.rfind("not mounted? ", 0), 0u) << verdict.reason;
    auto result = sync();
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    EXPECT_EQ(result.message.rfind("not mounted? ", 0), 0u) << result.message;
    EXPECT_FALSE(std::filesystem::exists(target() / "volwatch"));
    require_mount = false;
    EXPECT_EQ(sync().outcome, HelperOutcome::updated);
}

TEST(HelperMountProblem, DecidesFromTheLastSyncAndTheTargetNow) {
    const HelperTarget esp{"/boot/efi", false, {}, {}, {}};
    HelperTarget esp_required = esp;
    esp_required.require_mount = true;
    HelperMount mounted{true, "4d44:0000000100000002", "/"};
    HelperMount bare{false, "ef53:0000000300000004", ""};
    Bootstamp was_mounted;
    was_mounted.generation = 7;
    was_mounted.mount_root = true;
    was_mounted.filesystem = mounted.filesystem;
    Bootstamp was_bare = was_mounted;
    was_bare.mount_root = false;
    Bootstamp old_stamp = was_mounted;  // written before volwatch recorded mounts
    old_stamp.mount_root.reset();
    old_stamp.filesystem.clear();

    EXPECT_EQ(helper_mount_problem(esp, mounted, was_mounted, true, false), "");
    EXPECT_EQ(helper_mount_problem(esp, bare, was_mounted, false, false),
              "not mounted? /boot/efi was a mount point at the last sync (generation 7) and is not one now");
    // --force never writes into a bare mount-point directory.
    EXPECT_NE(helper_mount_problem(esp, bare, was_mounted, true, true), "");
    EXPECT_EQ(helper_mount_problem(esp, bare, was_bare, false, false), "");
    EXPECT_EQ(helper_mount_problem(esp, bare, old_stamp, false, false), "");
    EXPECT_EQ(helper_mount_problem(esp, bare, std::nullopt, false, false), "");
    EXPECT_EQ(helper_mount_problem(esp_required, bare, std::nullopt, false, false),
              "not mounted? /boot/efi is not a mount point (require_mount = true in the host config)");
    EXPECT_EQ(helper_mount_problem(esp_required, mounted, std::nullopt, false, false), "");
    // Another file system mounted there: fine if it carries our slots (the
    // same disk under another device number), an error if not, unless forced.
    HelperMount other{true, "ef53:0000000500000006", "/"};
    EXPECT_EQ(helper_mount_problem(esp, other, was_mounted, true, false), "");
    EXPECT_EQ(helper_mount_problem(esp, other, was_mounted, false, false).rfind("not mounted? /boot/efi is another file system", 0), 0u);
    EXPECT_EQ(helper_mount_problem(esp, other, was_mounted, false, true), "");
    // A bind mount of a subdirectory is a mount point: without boot entries it may be a helper.
    HelperMount bound{true, mounted.filesystem, "/sub"};
    EXPECT_EQ(helper_mount_problem(esp, bound, std::nullopt, false, false), "");
}

// Boot entries name /volwatch/slot-S/... from the root of the partition the
// boot loader reads: a target that is not that root is refused, whatever
// the stamp, the slots or --force say.
TEST(HelperMountProblem, BootEntriesNeedTheRootOfAFileSystem) {
    HelperTarget esp{"/srv/esp", false, {}, {}, BootEntryConfig{}};
    esp.entry->linux_file = "boot/vmlinuz";
    HelperMount root{true, "4d44:0000000100000002", "/"};
    HelperMount bare{false, "ef53:0000000300000004", ""};
    HelperMount bound{true, "ef53:0000000300000004", "/sub"};
    HelperMount unknown{true, "ef53:0000000300000004", ""};
    Bootstamp was_bound;
    was_bound.generation = 2;
    was_bound.mount_root = true;
    was_bound.filesystem = bound.filesystem;
    for (bool force : {false, true}) {
        for (bool has_slot : {false, true}) {
            EXPECT_EQ(helper_mount_problem(esp, root, std::nullopt, has_slot, force), "");
            EXPECT_EQ(helper_mount_problem(esp, bare, std::nullopt, has_slot, force),
                      "boot entries need the root of the partition the boot loader reads: /srv/esp is not a mount point "
                      "([helpers.entry] in the host config)");
            EXPECT_EQ(helper_mount_problem(esp, bound, was_bound, has_slot, force),
                      "boot entries need the root of the partition the boot loader reads: /srv/esp is a bind mount of /sub of "
                      "its file system, not of its root ([helpers.entry] in the host config)");
            EXPECT_EQ(helper_mount_problem(esp, unknown, std::nullopt, has_slot, force),
                      "boot entries need the root of the partition the boot loader reads: cannot find the mount at /srv/esp in "
                      "/proc/thread-self/mountinfo ([helpers.entry] in the host config)");
        }
    }
    // A root with a line break (mountinfo's \012, decoded) stays on one line.
    HelperMount odd{true, root.filesystem, "/a\nb"};
    EXPECT_NE(helper_mount_problem(esp, odd, std::nullopt, false, false).find("is a bind mount of /a\\nb of its file system"),
              std::string::npos);
    // The reasons the target gave before boot entries still come first.
    esp.require_mount = true;
    EXPECT_EQ(helper_mount_problem(esp, bare, std::nullopt, false, false),
              "not mounted? /srv/esp is not a mount point (require_mount = true in the host config)");
    esp.require_mount = false;
    EXPECT_EQ(helper_mount_problem(esp, bare, was_bound, false, false),
              "not mounted? /srv/esp was a mount point at the last sync (generation 2) and is not one now");
}

TEST(Bootstamp, KeepsTheMountStateAndReadsOldStampsWithoutIt) {
    Bootstamp stamp;
    stamp.target = "/boot/efi";
    stamp.generation = 3;
    stamp.mount_root = true;
    stamp.filesystem = "4d44:0000000100000002";
    auto parsed = parse_bootstamp(format_bootstamp(stamp));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->mount_root, std::optional<bool>(true));
    EXPECT_EQ(parsed->filesystem, stamp.filesystem);
    auto old = parse_bootstamp(R"({"version":1,"target":"/boot/efi","generation":2,"files":{}})");
    ASSERT_TRUE(old);
    EXPECT_FALSE(old->mount_root);
    EXPECT_EQ(old->filesystem, "");
}

TEST_F(HelperSync, AHelperUnmountedSinceTheLastSyncIsAnErrorAndItsDirectoryIsLeftAlone) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs in a private mount namespace";
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int code = 0;
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(2);
        if (::mount("tmpfs", target().c_str(), "tmpfs", 0, "size=4m") != 0) ::_exit(3);
        if (sync().outcome != HelperOutcome::updated) code |= 4;
        if (check().state != CacheState::clean) code |= 8;
        if (::umount(target().c_str()) != 0) ::_exit(5);
        auto verdict = check();
        if (verdict.state != CacheState::error || verdict.reason.rfind("not mounted? ", 0) != 0) code |= 16;
        HelperSyncOptions force;
        force.force = true;
        auto result = sync(force);
        if (result.outcome != HelperOutcome::failed || result.message.rfind("not mounted? ", 0) != 0) code |= 32;
        if (!std::filesystem::is_empty(target())) code |= 64;
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "bit flags of failed checks";
}

}  // namespace

namespace {

std::vector<HeldBackFile> initrd_held() { return {HeldBackFile{"boot/initrd.img", {"initramfs"}, "the product of cache initramfs, which failed"}}; }

}  // namespace

TEST(HeldBackFiles, FollowProductsAndDeclaredDependencies) {
    VolumeConfig config;
    config.helper_files = {"boot/vmlinuz", "./boot/initrd.img", "lib/modules/6.1/modules.dep", "boot/grub/grub.cfg"};
    config.caches = {CacheSpec{"initramfs", {"usr/lib/modules"}, "boot/initrd.img", {}, Depth::deep, "r", 1},
                     CacheSpec{"depmod", {"lib/modules"}, "lib/modules/", {}, Depth::deep, "r", 2},
                     CacheSpec{"grub", {"etc/grub.d"}, "boot/grub/grub.cfg", {}, Depth::shallow, "r", 3}};
    config.helper_depends = {{"boot/vmlinuz", {"initramfs"}}};
    EXPECT_TRUE(held_back_files(config, {}).empty());
    EXPECT_TRUE(held_back_files(config, {{"ldconfig", "failed"}}).empty());
    auto held = held_back_files(config, {{"initramfs", "failed (status 1)"}});
    ASSERT_EQ(held.size(), 2u);
    EXPECT_EQ(held[0].file, "boot/vmlinuz");
    EXPECT_EQ(held[0].reason, "depends on cache initramfs ([helpers] depends), which failed (status 1)");
    EXPECT_EQ(held[1].file, "boot/initrd.img");
    EXPECT_EQ(held[1].reason, "the product of cache initramfs, which failed (status 1)");
    // A file beneath a product directory depends on its cache.
    held = held_back_files(config, {{"depmod", "timed out after 1m"}});
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[0].file, "lib/modules/6.1/modules.dep");
    config.helper_depends["boot/grub/grub.cfg"] = {"initramfs"};
    held = held_back_files(config, {{"initramfs", "failed"}, {"grub", "failed"}});
    ASSERT_EQ(held.size(), 3u);
    EXPECT_EQ(held[2].caches, (std::vector<std::string>{"initramfs", "grub"}));
    EXPECT_EQ(held[2].reason, "depends on cache initramfs ([helpers] depends), which failed (and 1 more failed cache)");
}

TEST_F(HelperSync, AHeldBackFileKeepsTheLiveCopyAndTheTargetStaysStaleForIt) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(root() / "boot/vmlinuz", "new kernel");
    write_file(root() / "boot/initrd.img", "half");
    auto result = sync({false, false, initrd_held()});
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(result.generation, 2u);
    EXPECT_EQ(result.files, std::vector<std::string>{"boot/vmlinuz"});
    ASSERT_EQ(result.held_back.size(), 1u);
    EXPECT_EQ(result.held_back[0].file, "boot/initrd.img");
    EXPECT_EQ(read_file(target() / "volwatch/slot-b/boot/vmlinuz"), "new kernel");
    EXPECT_EQ(read_file(target() / "volwatch/slot-b/boot/initrd.img"), std::string(300000, 'i'));
    auto live = read_live_pointer(target());
    ASSERT_TRUE(live);
    EXPECT_EQ(live->slot, "b");
    EXPECT_EQ(check().reason, "boot/initrd.img changed since it was copied to " + target().string());
    // Only the held-back file differs now: no new generation.
    auto again = sync({false, false, initrd_held()});
    EXPECT_EQ(again.outcome, HelperOutcome::held_back) << again.message;
    EXPECT_EQ(read_live_pointer(target())->generation, 2u);
    // Once nothing is held back the whole set is copied and clean.
    auto whole = sync();
    ASSERT_EQ(whole.outcome, HelperOutcome::updated) << whole.message;
    EXPECT_EQ(read_file(target() / "volwatch/slot-a/boot/initrd.img"), "half");
    EXPECT_EQ(check().state, CacheState::clean);
}

TEST_F(HelperSync, AHeldBackFileUnchangedOnTheVolumeStaysCleanAndMayBeMissingThere) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(root() / "boot/vmlinuz", "new kernel");
    ASSERT_EQ(sync({false, false, initrd_held()}).outcome, HelperOutcome::updated);
    EXPECT_EQ(check().state, CacheState::clean) << check().reason;  // the previous stamp entry still describes it
    std::filesystem::remove(root() / "boot/initrd.img");
    write_file(root() / "boot/vmlinuz", "newer kernel");
    auto result = sync({false, false, initrd_held()});
    ASSERT_EQ(result.outcome, HelperOutcome::updated) << result.message;
    EXPECT_EQ(read_file(target() / "volwatch/slot-a/boot/initrd.img"), std::string(300000, 'i'));
}

TEST_F(HelperSync, ATargetWithoutALiveSetIsNotWrittenWhileAFileIsHeldBack) {
    auto result = sync({false, false, initrd_held()});
    EXPECT_EQ(result.outcome, HelperOutcome::held_back);
    EXPECT_NE(result.message.find("cannot be synced this time: it has no complete set yet to keep the held-back boot/initrd.img from"),
              std::string::npos) << result.message;
    EXPECT_FALSE(std::filesystem::exists(target() / "volwatch"));
    auto dry = sync({false, true, initrd_held()});
    EXPECT_EQ(dry.outcome, HelperOutcome::held_back);
}

TEST_F(HelperSync, AHeldBackLiveCopyChangedBehindOurBackFailsAndKeepsTheLiveSet) {
    ASSERT_EQ(sync().outcome, HelperOutcome::updated);
    write_file(target() / "volwatch/slot-a/boot/initrd.img", std::string(300000, 'x'));
    write_file(root() / "boot/vmlinuz", "new kernel");
    auto result = sync({false, false, initrd_held()});
    EXPECT_EQ(result.outcome, HelperOutcome::failed);
    EXPECT_NE(result.message.find("the live copy of the held-back boot/initrd.img"), std::string::npos) << result.message;
    EXPECT_EQ(read_live_pointer(target())->slot, "a");
    EXPECT_EQ(read_live_pointer(target())->generation, 1u);
}
