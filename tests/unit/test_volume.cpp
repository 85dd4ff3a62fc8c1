// Volume identity, discovery and resolution (DESIGN §2, §6) over a fake mount
// table whose mount points are real directories in a temporary directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sched.h>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "volwatch/volume.hpp"

using namespace volwatch;
namespace fs = std::filesystem;

namespace {

// The mount table a test says it is.
class FakeMountTable final : public MountTable {
public:
    [[nodiscard]] std::vector<MountEntry> read() const override { return entries; }

    // Appends a mount and returns its id; ids count up from 100.
    int add(const fs::path& mount_point, dev_t device, int parent_id, std::string fs_type = "ext4",
            std::string root = "/", std::string options = "rw,relatime", std::string source = "") {
        MountEntry entry;
        entry.mount_id = next_id_++;
        entry.parent_id = parent_id;
        entry.device = device;
        entry.root = std::move(root);
        entry.mount_point = mount_point.string();
        entry.options = std::move(options);
        entry.fs_type = std::move(fs_type);
        entry.source = source.empty() ? fmt::format("/dev/fake{}", entry.mount_id) : std::move(source);
        entry.super_options = "rw";
        entries.push_back(entry);
        return entry.mount_id;
    }

    std::vector<MountEntry> entries;

private:
    int next_id_ = 100;
};

// Anonymous device numbers (major 0) never have a by-uuid link, so ids are
// "dev-0:N" whatever the machine has in /dev/disk/by-uuid.
dev_t fake_device(unsigned minor_number) { return makedev(0, 4000 + minor_number); }
std::string dev_id(unsigned minor_number) { return fmt::format("dev-0:{}", 4000 + minor_number); }
std::string path_id(const fs::path& root) { return fmt::format("path-{:016x}", stable_hash(root.string())); }

// Each test case gets its own temporary directory, removed afterwards.
class VolumeTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "volwatch-volume-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
        dir_ = fs::canonical(pattern);
        host_.discover = true;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // A directory carrying a volume config.
    fs::path make_volume(const fs::path& relative) {
        fs::path root = dir_ / relative;
        fs::create_directories(root / "etc/volwatch");
        std::ofstream(root / volume_config_relpath) << "version = 1\n[helpers]\nfiles = [\"boot/vmlinuz\"]\n";
        return root;
    }
    // A directory without one.
    fs::path make_dir(const fs::path& relative) {
        fs::create_directories(dir_ / relative);
        return dir_ / relative;
    }

    const fs::path& dir() const { return dir_; }
    HostConfig& host() { return host_; }
    FakeMountTable& mounts() { return mounts_; }
    // The temporary directory's own mount, the parent of every fake mount.
    int base_mount() {
        if (!base_) base_ = mounts_.add(dir_, fake_device(0), 1);
        return *base_;
    }

private:
    fs::path dir_;
    HostConfig host_;
    FakeMountTable mounts_;
    std::optional<int> base_;
};

std::vector<fs::path> roots_of(const std::vector<Volume>& volumes) {
    std::vector<fs::path> roots;
    for (const auto& volume : volumes) roots.push_back(volume.root);
    return roots;
}

bool safe_as_file_name(const std::string& id) {
    if (id.empty() || id.size() > 200 || id == "." || id == "..") return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
               c == ':' || c == '.';
    });
}

// Runs `body` in a child process with a private mount namespace; returns its
// exit status (0 = success). Checks inside report through the status.
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

// The first block device under /dev, if there is one.
std::optional<fs::path> some_block_device() {
    std::error_code ec;
    for (fs::directory_iterator it("/dev", ec), end; !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return it->path();
    }
    return std::nullopt;
}

}  // namespace

// -------------------------------------------------------------------- identity

TEST_F(VolumeTest, StableHashIsFnv1a) {
    EXPECT_EQ(stable_hash(""), 0xcbf29ce484222325ULL);
    EXPECT_EQ(stable_hash("a"), 0xaf63dc4c8601ec8cULL);
    EXPECT_EQ(stable_hash("foobar"), 0x85944171f73967e8ULL);
    EXPECT_NE(stable_hash("a", 1), stable_hash("a"));
}

TEST_F(VolumeTest, ExplicitRootsThatAreNotMountsUseThePathHash) {
    VolumeId a = identify_volume("/srv/images/rootfs", makedev(8, 1), false);
    VolumeId b = identify_volume("/srv/images/other", makedev(8, 1), false);
    EXPECT_EQ(a.value, path_id("/srv/images/rootfs"));
    EXPECT_EQ(a.value.size(), 5u + 16u);
    EXPECT_NE(a, b) << "two explicit roots on one file system are two volumes";
    EXPECT_EQ(identify_volume("/srv/images/rootfs", makedev(9, 9), false), a) << "the device does not matter";
    EXPECT_EQ(a.uuid(), "");
}

TEST_F(VolumeTest, MountsWithoutUuidUseTheDeviceNumber) {
    EXPECT_EQ(identify_volume("/mnt", makedev(0, 4242), true).value, "dev-0:4242");
    EXPECT_EQ(identify_volume("/mnt", makedev(0, 4242), true, "/dev/does-not-exist").value, "dev-0:4242");
    EXPECT_EQ(identify_volume("/mnt", makedev(0, 4242), true, "tmpfs").value, "dev-0:4242");
    // A device that is not a block device gives no UUID either.
    EXPECT_EQ(identify_volume("/mnt", makedev(0, 4242), true, "/dev/null").value, "dev-0:4242");
    EXPECT_EQ(identify_volume("/elsewhere", makedev(0, 4242), true), identify_volume("/mnt", makedev(0, 4242), true))
        << "the mount point does not matter";
    EXPECT_EQ(identify_volume("/mnt", makedev(0, 4242), true).uuid(), "");
    // Device 0 is no device: fall back to the path.
    EXPECT_EQ(identify_volume("/mnt", 0, true).value, path_id("/mnt"));
}

TEST_F(VolumeTest, IdsAreSafeAsFileNames) {
    std::vector<std::string> ids = {
        identify_volume("/", makedev(0, 1), true).value,
        identify_volume("/mnt/My Disk/../x", 0, false).value,
        identify_volume(std::string("/a\nb"), 0, false).value,
        identify_volume("/", makedev(4095, 1048575), true).value,
    };
    for (const auto& id : ids) EXPECT_TRUE(safe_as_file_name(id)) << id;
    EXPECT_EQ(VolumeId{"uuid-1234-ABCD"}.uuid(), "1234-ABCD");
    EXPECT_EQ(VolumeId{"dev-8:1"}.uuid(), "");
}

TEST_F(VolumeTest, UuidForDeviceInAFakeByUuidDirectory) {
    auto device = some_block_device();
    if (!device) GTEST_SKIP() << "no block device under /dev to link to";
    struct stat st {};
    ASSERT_EQ(::stat(device->c_str(), &st), 0);
    fs::path by_uuid = make_dir("by-uuid");
    fs::create_symlink("/dev/null", by_uuid / "0000-NULL");  // a character device
    fs::create_symlink(dir() / "missing", by_uuid / "1111-DANGLING");
    fs::create_symlink(*device, by_uuid / "2222-ABCD");
    std::ofstream(by_uuid / "3333-FILE") << "x";
    EXPECT_EQ(uuid_for_device(st.st_rdev, by_uuid), "2222-ABCD");
    EXPECT_EQ(uuid_for_device(makedev(0, 4999), by_uuid), "");
    EXPECT_EQ(uuid_for_device(st.st_rdev, dir() / "no-such-dir"), "");
    EXPECT_EQ(uuid_for_device(st.st_rdev, make_dir("empty")), "");
}

TEST_F(VolumeTest, UuidIdentityAndUuidLookup) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: builds a fake /dev/disk/by-uuid in a private mount namespace";
    fs::path root = make_volume("vol");
    fs::path plain = make_dir("plain");
    int status = run_in_private_mount_namespace([&]() -> int {
        // A private /dev with two fake block devices and their by-uuid links.
        if (::mount("tmpfs", "/dev", "tmpfs", 0, "size=1m") != 0) return 102;
        fs::create_directories("/dev/disk/by-uuid");
        if (::mknod("/dev/fakea", S_IFBLK | 0600, makedev(7, 200)) != 0) return 103;
        if (::mknod("/dev/fakeb", S_IFBLK | 0600, makedev(7, 201)) != 0) return 104;
        fs::create_symlink("../../fakea", "/dev/disk/by-uuid/0f3c-11aa");
        fs::create_symlink("../../fakeb", "/dev/disk/by-uuid/bad uuid");  // not safe as a file name

        if (identify_volume(root, makedev(7, 200), true).value != "uuid-0f3c-11aa") return 10;
        if (identify_volume(root, makedev(7, 200), true).uuid() != "0f3c-11aa") return 11;
        if (identify_volume(root, makedev(7, 201), true).value != "dev-7:201") return 12;
        // btrfs and others report an anonymous device; the source names the disk.
        if (identify_volume(root, makedev(0, 77), true, "/dev/fakea").value != "uuid-0f3c-11aa") return 13;
        // Explicit roots that are not mount points keep the path hash.
        if (identify_volume(root, makedev(7, 200), false).value != path_id(root)) return 14;

        FakeMountTable table;
        int base = table.add("/", makedev(254, 0), 1);
        table.add(root, makedev(7, 200), base, "ext4", "/", "rw", "/dev/fakea");
        table.add(plain, makedev(7, 201), base, "ext4", "/", "rw", "/dev/fakeb");
        HostConfig host;
        auto found = resolve_volume("UUID=0f3c-11aa", host, table);
        if (!found) {
            std::fprintf(stderr, "%s\n", found.problem().message.c_str());
            return 20;
        }
        if (found->root != root || found->id.value != "uuid-0f3c-11aa") return 21;
        // Also when discovery is off.
        host.discover = false;
        if (!resolve_volume("UUID=0f3c-11aa", host, table)) return 22;
        // A mount whose UUID matches but has no volume config is not a volume.
        table.entries[1].mount_point = plain.string();
        auto without = resolve_volume("UUID=0f3c-11aa", host, table);
        if (without || without.problem().code != ExitCode::unknown_volume) return 23;
        // Discovery keys the volume by its UUID.
        table.entries[1].mount_point = root.string();
        host.discover = true;
        auto volumes = discover_volumes(host, table);
        if (volumes.size() != 1 || volumes[0].id.value != "uuid-0f3c-11aa") return 24;
        return 0;
    });
    EXPECT_EQ(status, 0);
}

// ------------------------------------------------------------------- discovery

TEST_F(VolumeTest, DiscoversEligibleMountsWithAVolumeConfig) {
    int base = base_mount();
    fs::path a = make_volume("a");
    fs::path no_config = make_dir("no-config");
    fs::path tmpfs = make_volume("tmpfs");
    fs::path ro = make_volume("ro");
    fs::path ro_super = make_volume("ro-super");
    fs::path nfs = make_volume("nfs");
    fs::path sshfs = make_volume("sshfs");
    fs::path overlay = make_volume("overlay");
    fs::path b = make_volume("b");
    mounts().add(a, fake_device(1), base);
    mounts().add(no_config, fake_device(2), base);
    mounts().add(tmpfs, fake_device(3), base, "tmpfs");
    mounts().add(ro, fake_device(4), base, "ext4", "/", "ro,relatime");
    mounts().entries.push_back(mounts().entries.back());
    mounts().entries.back().mount_point = ro_super.string();
    mounts().entries.back().options = "rw";
    mounts().entries.back().super_options = "ro";
    mounts().entries.back().device = fake_device(5);
    mounts().add(nfs, fake_device(6), base, "nfs4");
    mounts().add(sshfs, fake_device(7), base, "fuse.sshfs");
    mounts().add(overlay, fake_device(8), base, "overlay");
    mounts().add(b, fake_device(9), base, "xfs");

    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(volumes.size(), 2u);
    EXPECT_EQ(volumes[0].root, a);
    EXPECT_EQ(volumes[0].id.value, dev_id(1));
    EXPECT_EQ(volumes[0].device, fake_device(1));
    EXPECT_FALSE(volumes[0].explicit_root);
    EXPECT_TRUE(volumes[0].mounted);
    EXPECT_EQ(volumes[1].root, b);
    EXPECT_EQ(volumes[1].id.value, dev_id(9));
}

TEST_F(VolumeTest, DiscoveryOffKeepsOnlyExplicitRoots) {
    int base = base_mount();
    mounts().add(make_volume("a"), fake_device(1), base);
    fs::path image = make_volume("images/rootfs");
    host().discover = false;
    host().volumes = {image};
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes[0].root, image);
    EXPECT_TRUE(volumes[0].explicit_root);
}

TEST_F(VolumeTest, ExplicitRoots) {
    int base = base_mount();
    fs::path a = make_volume("a");
    mounts().add(a, fake_device(1), base);
    fs::path image = make_volume("a/images/rootfs");
    fs::path bare = make_dir("bare");  // no volume config: kept, the report names it
    fs::create_directory_symlink(image, dir() / "image-link");
    fs::path missing = dir() / "gone/./rootfs";
    host().volumes = {dir() / "image-link", bare, missing, a};

    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(roots_of(volumes), (std::vector<fs::path>{a, image, bare, dir() / "gone/rootfs"}))
        << "the explicit root that is a discovered mount appears once";
    EXPECT_FALSE(volumes[0].explicit_root);

    EXPECT_TRUE(volumes[1].explicit_root);
    EXPECT_TRUE(volumes[1].mounted);
    EXPECT_EQ(volumes[1].id.value, path_id(image)) << "keyed by the canonical root, not the symlink";
    struct stat st {};
    ASSERT_EQ(::stat(image.c_str(), &st), 0);
    EXPECT_EQ(volumes[1].device, st.st_dev);

    EXPECT_TRUE(volumes[2].mounted);
    EXPECT_EQ(volumes[2].id.value, path_id(bare));

    EXPECT_TRUE(volumes[3].explicit_root);
    EXPECT_FALSE(volumes[3].mounted);
    EXPECT_EQ(volumes[3].device, 0u);
    EXPECT_EQ(volumes[3].id.value, path_id(dir() / "gone/rootfs"));
}

TEST_F(VolumeTest, ExplicitRootThatIsAFileIsNotMounted) {
    std::ofstream(dir() / "file") << "x";
    host().volumes = {dir() / "file"};
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_FALSE(volumes[0].mounted);
}

TEST_F(VolumeTest, ExplicitRootAtAMountPointIsKeyedLikeTheMount) {
    int base = base_mount();
    fs::path a = make_volume("a");
    mounts().add(a, fake_device(1), base);
    host().discover = false;
    host().volumes = {a};
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(volumes.size(), 1u);
    EXPECT_EQ(volumes[0].id.value, dev_id(1)) << "the same volume whether discovered or named";
    EXPECT_TRUE(volumes[0].explicit_root);
}

TEST_F(VolumeTest, BindMountsOfSubtreesAreSkipped) {
    int base = base_mount();
    fs::path a = make_volume("a");
    fs::path view = make_volume("view");
    fs::path whole = make_volume("whole");
    mounts().add(a, fake_device(1), base);
    mounts().add(view, fake_device(1), base, "ext4", "/images/rootfs");
    mounts().add(whole, fake_device(1), base);  // a bind mount of the whole file system: the same volume
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(roots_of(volumes), (std::vector<fs::path>{a}));
}

TEST_F(VolumeTest, BindMountOfASubtreeIsNotTheVolumeItViews) {
    // Resolving a path through a bind mount of a subtree must not hand out the
    // identity (and so the lock) of the whole file system.
    int base = base_mount();
    fs::path a = make_volume("a");
    fs::path view = make_volume("view");
    mounts().add(a, fake_device(1), base);
    mounts().add(view, fake_device(1), base, "ext4", "/images/rootfs");
    auto whole = resolve_volume(a.string(), host(), mounts());
    ASSERT_TRUE(whole.ok()) << whole.problem().message;
    auto through_view = resolve_volume((view / "etc").string(), host(), mounts());
    ASSERT_TRUE(through_view.ok()) << through_view.problem().message;
    EXPECT_EQ(through_view->root, view);
    EXPECT_NE(through_view->id, whole->id);

    // The same when the view is named as an explicit root.
    host().volumes = {view};
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(roots_of(volumes), (std::vector<fs::path>{a, view}));
    EXPECT_NE(volumes[0].id, volumes[1].id);
}

TEST_F(VolumeTest, HiddenMountPointsAreSkipped) {
    int base = base_mount();
    // A volume over-mounted on the same mount point by a tmpfs.
    fs::path a = make_volume("a");
    int under = mounts().add(a, fake_device(1), base);
    mounts().add(a, fake_device(2), under, "tmpfs");
    // A tmpfs over-mounted by a volume: the volume is on top.
    fs::path b = make_volume("b");
    int tmp = mounts().add(b, fake_device(3), base, "tmpfs");
    mounts().add(b, fake_device(4), tmp);
    auto volumes = discover_volumes(host(), mounts());
    ASSERT_EQ(roots_of(volumes), (std::vector<fs::path>{b}));
    EXPECT_EQ(volumes[0].id.value, dev_id(4));
}

TEST_F(VolumeTest, MountsHiddenByAMountAboveThemAreSkipped) {
    int base = base_mount();
    // outer/c is mounted, then outer itself is over-mounted: c can no longer
    // be reached, and outer/c now names a directory of the new mount.
    fs::path c = make_volume("outer/c");
    mounts().add(c, fake_device(1), base);
    mounts().add(dir() / "outer", fake_device(2), base);
    // Mounted inside a later mount: visible.
    fs::path d = make_volume("outer2/d");
    int outer2 = mounts().add(dir() / "outer2", fake_device(3), base);
    mounts().add(d, fake_device(4), outer2);
    // A mount moved beneath a later mount is listed before it, yet visible.
    fs::path e = make_volume("outer3/e");
    int moved = mounts().add(e, fake_device(5), 0);
    int outer3 = mounts().add(dir() / "outer3", fake_device(6), base);
    mounts().entries[static_cast<std::size_t>(moved - 100)].parent_id = outer3;

    auto volumes = discover_volumes(host(), mounts());
    EXPECT_EQ(roots_of(volumes), (std::vector<fs::path>{d, e}));

    auto hidden = resolve_volume((c / "etc").string(), host(), mounts());
    EXPECT_FALSE(hidden.ok()) << "resolved to the hidden mount " << hidden->root;
    if (!hidden.ok()) {
        EXPECT_EQ(hidden.problem().code, ExitCode::unknown_volume);
        EXPECT_NE(hidden.problem().message.find((dir() / "outer").string() + " has no"), std::string::npos)
            << hidden.problem().message;
    }
}

TEST_F(VolumeTest, MountTablesWithCyclesDoNotHang) {
    fs::path a = make_volume("a");
    fs::path b = make_volume("a/b");
    mounts().add(a, fake_device(1), 101);
    mounts().add(b, fake_device(2), 100);
    mounts().add(a, fake_device(3), 103);  // its own parent
    auto volumes = discover_volumes(host(), mounts());
    EXPECT_LE(volumes.size(), 2u);
}

TEST_F(VolumeTest, EmptyMountTable) {
    EXPECT_TRUE(discover_volumes(host(), mounts()).empty());
    auto resolved = resolve_volume(dir().string(), host(), mounts());
    ASSERT_FALSE(resolved.ok());
    EXPECT_EQ(resolved.problem().code, ExitCode::unknown_volume);
    EXPECT_EQ(resolved.problem().message, dir().string() + ": not on any mounted volume");
}

// ------------------------------------------------------------------ resolution

TEST_F(VolumeTest, ResolveAPathInsideAMount) {
    int base = base_mount();
    fs::path a = make_volume("a");
    fs::create_directories(a / "usr/lib/modules");
    mounts().add(a, fake_device(1), base);
    for (const fs::path& path : {a, a / "usr/lib/modules", a / "etc/volwatch/bootcaches.toml", a / "usr/../usr/lib"}) {
        auto volume = resolve_volume(path.string(), host(), mounts());
        ASSERT_TRUE(volume.ok()) << path << ": " << volume.problem().message;
        EXPECT_EQ(volume->root, a) << path;
        EXPECT_EQ(volume->id.value, dev_id(1));
        EXPECT_FALSE(volume->explicit_root);
    }
    // A symlink into the volume resolves to where it points.
    fs::create_directory_symlink(a / "usr/lib", dir() / "lib-link");
    auto via_link = resolve_volume((dir() / "lib-link").string(), host(), mounts());
    ASSERT_TRUE(via_link.ok()) << via_link.problem().message;
    EXPECT_EQ(via_link->root, a);
}

TEST_F(VolumeTest, ResolveASimilarlyNamedSibling) {
    int base = base_mount();
    fs::path mnt = make_volume("mnt");
    fs::path mnt2 = make_dir("mnt2");
    mounts().add(mnt, fake_device(1), base);
    auto volume = resolve_volume(mnt2.string(), host(), mounts());
    ASSERT_FALSE(volume.ok()) << "\"mnt2\" is not inside \"mnt\"";
    EXPECT_NE(volume.problem().message.find(dir().string() + " has no"), std::string::npos) << volume.problem().message;
}

TEST_F(VolumeTest, LongestPrefixWinsBetweenExplicitRootsAndMounts) {
    int base = base_mount();
    fs::path a = make_volume("a");
    mounts().add(a, fake_device(1), base);
    fs::path image = make_volume("a/images/rootfs");
    fs::create_directories(image / "usr/lib");
    fs::path img2 = make_volume("img2");
    fs::path boot = make_volume("img2/boot");
    mounts().add(boot, fake_device(2), base);
    host().volumes = {image, img2};

    // An explicit root inside a mount: the explicit root is the longer prefix.
    auto in_image = resolve_volume((image / "usr/lib").string(), host(), mounts());
    ASSERT_TRUE(in_image.ok()) << in_image.problem().message;
    EXPECT_EQ(in_image->root, image);
    EXPECT_TRUE(in_image->explicit_root);
    EXPECT_EQ(in_image->id.value, path_id(image));
    // Beside it, the mount.
    auto in_a = resolve_volume((a / "images").string(), host(), mounts());
    ASSERT_TRUE(in_a.ok()) << in_a.problem().message;
    EXPECT_EQ(in_a->root, a);
    // A mount inside an explicit root: the mount is the longer prefix.
    auto in_boot = resolve_volume((boot / "etc").string(), host(), mounts());
    ASSERT_TRUE(in_boot.ok()) << in_boot.problem().message;
    EXPECT_EQ(in_boot->root, boot);
    EXPECT_EQ(in_boot->id.value, dev_id(2));
    auto in_img2 = resolve_volume((img2 / "etc").string(), host(), mounts());
    ASSERT_TRUE(in_img2.ok()) << in_img2.problem().message;
    EXPECT_EQ(in_img2->root, img2);
}

TEST_F(VolumeTest, ResolveAPathInAMountWithoutVolumeConfig) {
    int base = base_mount();
    fs::path img = make_volume("img");
    fs::path data = make_dir("img/data");
    fs::create_directories(data / "sub");
    mounts().add(data, fake_device(1), base);
    host().volumes = {img};
    auto volume = resolve_volume((data / "sub").string(), host(), mounts());
    ASSERT_FALSE(volume.ok());
    EXPECT_EQ(volume.problem().code, ExitCode::unknown_volume);
    EXPECT_EQ(to_int(volume.problem().code), 66);
    EXPECT_EQ(volume.problem().message, fmt::format("{}: not a volwatch volume ({} has no etc/volwatch/bootcaches.toml)",
                                                    (data / "sub").string(), data.string()));
}

TEST_F(VolumeTest, ResolveFailures) {
    base_mount();
    auto empty = resolve_volume("", host(), mounts());
    ASSERT_FALSE(empty.ok());
    EXPECT_EQ(empty.problem().code, ExitCode::unknown_volume);
    EXPECT_EQ(empty.problem().message, "empty volume argument");

    fs::path missing = dir() / "no/such/path";
    auto gone = resolve_volume(missing.string(), host(), mounts());
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.problem().code, ExitCode::unknown_volume);
    EXPECT_EQ(gone.problem().message.rfind(missing.string() + ": ", 0), 0u) << gone.problem().message;

    // An explicit root that does not exist is not a match for anything.
    host().volumes = {missing};
    EXPECT_FALSE(resolve_volume(dir().string(), host(), mounts()).ok());
}

TEST_F(VolumeTest, ResolveUuidFailures) {
    int base = base_mount();
    mounts().add(make_volume("a"), fake_device(1), base);
    for (const char* argument : {"UUID=0000-DOES-NOT-EXIST", "UUID="}) {
        auto volume = resolve_volume(argument, host(), mounts());
        ASSERT_FALSE(volume.ok()) << argument;
        EXPECT_EQ(volume.problem().code, ExitCode::unknown_volume);
        EXPECT_EQ(volume.problem().message,
                  fmt::format("{}: no mounted volume with this UUID carries a volume config", argument));
    }
}

TEST_F(VolumeTest, ResolveAgainstTheRealMountTable) {
    // The temporary directory is on some real mount; without a volume config
    // there, resolution names that mount's root.
    auto volume = resolve_volume(dir().string(), host(), ProcMountTable());
    if (volume.ok()) GTEST_SKIP() << "the mount holding " << dir() << " carries a volume config";
    EXPECT_EQ(volume.problem().code, ExitCode::unknown_volume);
    EXPECT_NE(volume.problem().message.find("not a volwatch volume"), std::string::npos) << volume.problem().message;
}
