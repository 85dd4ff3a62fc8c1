// Parsing /proc/self/mountinfo and deciding which mounts may be volumes
// (DESIGN §6: local, writable, not a pseudo file system).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/mountinfo.hpp"

using namespace volwatch;
namespace fs = std::filesystem;

namespace {

// Each test case gets its own temporary directory, removed afterwards.
class MountinfoTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "volwatch-mountinfo-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
        dir_ = fs::canonical(pattern);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    const fs::path& dir() const { return dir_; }

private:
    fs::path dir_;
};

MountEntry parse_one(std::string_view line) {
    auto entries = parse_mountinfo(line);
    EXPECT_EQ(entries.size(), 1u) << line;
    return entries.empty() ? MountEntry{} : entries.front();
}

MountEntry mount_of(std::string fs_type, std::string options = "rw,relatime", std::string super_options = "rw") {
    MountEntry entry;
    entry.mount_id = 40;
    entry.parent_id = 1;
    entry.root = "/";
    entry.mount_point = "/mnt";
    entry.fs_type = std::move(fs_type);
    entry.options = std::move(options);
    entry.super_options = std::move(super_options);
    entry.source = "/dev/sdb1";
    return entry;
}

// Runs `body` in a child process with a private mount namespace; returns its
// exit status (0 = success).
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

// --------------------------------------------------------------------- parsing

TEST_F(MountinfoTest, ParsesTheKernelDocumentationExample) {
    MountEntry e = parse_one("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue");
    EXPECT_EQ(e.mount_id, 36);
    EXPECT_EQ(e.parent_id, 35);
    EXPECT_EQ(major(e.device), 98u);
    EXPECT_EQ(minor(e.device), 0u);
    EXPECT_EQ(e.root, "/mnt1");
    EXPECT_EQ(e.mount_point, "/mnt2");
    EXPECT_EQ(e.options, "rw,noatime");
    EXPECT_EQ(e.fs_type, "ext3");
    EXPECT_EQ(e.source, "/dev/root");
    EXPECT_EQ(e.super_options, "rw,errors=continue");
    EXPECT_FALSE(e.read_only());
}

TEST_F(MountinfoTest, ParsesARealisticTable) {
    const char* table =
        "22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
        "23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
        "27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
        "30 27 259:1 / /boot/efi rw,relatime shared:29 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077,codepage=437\n"
        "31 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        "45 27 0:40 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1628060k,mode=755\n"
        "51 27 8:17 / /srv/data rw,relatime shared:30 master:2 - xfs /dev/sdb1 rw,attr2,inode64\n";
    auto entries = parse_mountinfo(table);
    ASSERT_EQ(entries.size(), 7u);
    EXPECT_EQ(entries[0].mount_point, "/proc");
    EXPECT_EQ(entries[2].mount_point, "/");
    EXPECT_EQ(entries[2].device, makedev(259, 2));
    EXPECT_EQ(entries[3].mount_point, "/boot/efi");
    EXPECT_EQ(entries[3].fs_type, "vfat");
    EXPECT_EQ(entries[6].mount_point, "/srv/data");
    EXPECT_EQ(entries[6].options, "rw,relatime");
    EXPECT_EQ(entries[6].fs_type, "xfs");
    EXPECT_EQ(entries[6].super_options, "rw,attr2,inode64");
}

TEST_F(MountinfoTest, OptionalFields) {
    for (const char* optional : {"", " shared:1", " shared:1 master:2", " master:2 propagate_from:3 unbindable",
                                 " shared:1 master:2 propagate_from:7 unbindable"}) {
        MountEntry e = parse_one(fmt::format("51 27 8:17 / /srv/data rw,relatime{} - xfs /dev/sdb1 rw,attr2", optional));
        EXPECT_EQ(e.mount_point, "/srv/data") << optional;
        EXPECT_EQ(e.options, "rw,relatime") << optional;
        EXPECT_EQ(e.fs_type, "xfs") << optional;
        EXPECT_EQ(e.source, "/dev/sdb1") << optional;
        EXPECT_EQ(e.super_options, "rw,attr2") << optional;
    }
}

TEST_F(MountinfoTest, EscapedNames) {
    MountEntry space = parse_one("60 27 8:33 / /media/My\\040Disk rw,relatime - ext4 /dev/sdc1 rw");
    EXPECT_EQ(space.mount_point, "/media/My Disk");
    MountEntry tab = parse_one("60 27 8:33 / /media/a\\011b rw - ext4 /dev/sdc1 rw");
    EXPECT_EQ(tab.mount_point, "/media/a\tb");
    MountEntry backslash = parse_one("60 27 8:33 / /media/back\\134slash rw - ext4 /dev/sdc1 rw");
    EXPECT_EQ(backslash.mount_point, "/media/back\\slash");
    MountEntry newline = parse_one("60 27 8:33 / /media/new\\012line rw - ext4 /dev/sdc1 rw");
    EXPECT_EQ(newline.mount_point, "/media/new\nline");
    MountEntry all = parse_one("60 27 8:33 /sub\\040dir /m\\040\\011\\134\\012end rw - ext4 /dev/disk\\040x rw");
    EXPECT_EQ(all.root, "/sub dir");
    EXPECT_EQ(all.mount_point, "/m \t\\\nend");
    EXPECT_EQ(all.source, "/dev/disk x");
    MountEntry at_end = parse_one("60 27 8:33 / /media/trailing\\040 rw - ext4 /dev/sdc1 rw");
    EXPECT_EQ(at_end.mount_point, "/media/trailing ");
}

TEST_F(MountinfoTest, UnescapeLeavesOtherBackslashesAlone) {
    EXPECT_EQ(unescape_mount_field("plain"), "plain");
    EXPECT_EQ(unescape_mount_field(""), "");
    EXPECT_EQ(unescape_mount_field("\\040"), " ");
    EXPECT_EQ(unescape_mount_field("a\\04"), "a\\04");
    EXPECT_EQ(unescape_mount_field("a\\"), "a\\");
    EXPECT_EQ(unescape_mount_field("a\\08x"), "a\\08x");
    EXPECT_EQ(unescape_mount_field("a\\x41"), "a\\x41");
    EXPECT_EQ(unescape_mount_field("\\134040"), "\\040") << "decoded once, not twice";
    EXPECT_EQ(unescape_mount_field("\\101\\102"), "AB");
}

TEST_F(MountinfoTest, BindMountsKeepTheirRoot) {
    auto entries = parse_mountinfo(
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "80 27 8:1 /srv/images/rootfs /mnt/rootfs rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "81 27 8:1 /home/user\\040x /mnt/home rw,relatime - ext4 /dev/sda1 rw\n");
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[0].root, "/");
    EXPECT_EQ(entries[1].root, "/srv/images/rootfs");
    EXPECT_EQ(entries[1].mount_point, "/mnt/rootfs");
    EXPECT_EQ(entries[1].device, entries[0].device);
    EXPECT_EQ(entries[2].root, "/home/user x");
}

TEST_F(MountinfoTest, OverlayAndReadOnly) {
    MountEntry overlay = parse_one(
        "90 27 0:50 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay "
        "rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w");
    EXPECT_EQ(overlay.fs_type, "overlay");
    EXPECT_EQ(overlay.source, "overlay");
    EXPECT_EQ(overlay.super_options, "rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w");

    MountEntry per_mount = parse_one("61 27 8:33 / /mnt/ro ro,relatime - ext4 /dev/sdc1 rw");
    EXPECT_TRUE(per_mount.read_only());
    MountEntry per_superblock = parse_one("62 27 8:34 / /mnt/rosb rw,relatime - ext4 /dev/sdc2 ro,errors=continue");
    EXPECT_TRUE(per_superblock.read_only());
    MountEntry last_option = parse_one("63 27 8:35 / /mnt/x nosuid,ro - ext4 /dev/sdc3 rw");
    EXPECT_TRUE(last_option.read_only());
    // Options that merely contain "ro" are not read-only.
    MountEntry lookalike = parse_one("64 27 8:36 / /mnt/y rw,relatime - ext4 /dev/sdc4 rw,errors=remount-ro,grpid=ro0");
    EXPECT_FALSE(lookalike.read_only());
}

TEST_F(MountinfoTest, EmptySourceField) {
    // `mount -t tmpfs "" /mnt/a` gives an empty source: two spaces in a row.
    // The mount must still be in the table (it may hide or bound a volume).
    auto entries = parse_mountinfo(
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "63 27 0:39 / /mnt/a rw,relatime - tmpfs  rw\n"
        "64 27 0:40 / /mnt/b rw,relatime shared:3 - tmpfs  rw,size=1024k\n");
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[1].mount_point, "/mnt/a");
    EXPECT_EQ(entries[1].fs_type, "tmpfs");
    EXPECT_EQ(entries[1].source, "");
    EXPECT_EQ(entries[1].super_options, "rw");
    EXPECT_EQ(entries[2].mount_point, "/mnt/b");
    EXPECT_EQ(entries[2].super_options, "rw,size=1024k");
}

TEST_F(MountinfoTest, MalformedLinesAreSkipped) {
    const char* table =
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "\n"
        "garbage\n"
        "1 2 3\n"
        "28 27 8:2 / /no-separator rw,relatime ext4 /dev/sda2 rw\n"
        "29 27 8:3 / /short rw - ext4 /dev/sda3\n"
        "30 27 8:4 / - ext4 /dev/sda4 rw\n"
        "x 27 8:5 / /bad-id rw - ext4 /dev/sda5 rw\n"
        "31 y 8:6 / /bad-parent rw - ext4 /dev/sda6 rw\n"
        "32 27 8-7 / /bad-dev rw - ext4 /dev/sda7 rw\n"
        "33 27 8: / /bad-minor rw - ext4 /dev/sda8 rw\n"
        "34 27 :9 / /bad-major rw - ext4 /dev/sda9 rw\n"
        "35 27 8:10x / /trailing-junk rw - ext4 /dev/sda10 rw\n"
        "36  27 8:11 / /double-space rw - ext4 /dev/sda11 rw\n"
        "38 27 8:14 / /no-fs-type rw -  /dev/sda14 rw\n"
        "39 27 8:15 / /no-super-options rw - ext4 /dev/sda15 \n"
        "99999999999999999999 27 8:12 / /overflow rw - ext4 /dev/sda12 rw\n"
        "37 27 8:13 / /good rw - ext4 /dev/sda13 rw";  // no final newline
    auto entries = parse_mountinfo(table);
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].mount_point, "/");
    EXPECT_EQ(entries[1].mount_point, "/good");
    EXPECT_TRUE(parse_mountinfo("").empty());
    EXPECT_TRUE(parse_mountinfo("\n\n\n").empty());
    EXPECT_TRUE(parse_mountinfo(std::string_view("\0\0\0", 3)).empty());
}

TEST_F(MountinfoTest, LargeDeviceNumbers) {
    MountEntry e = parse_one("70 27 259:1048575 / /big rw - ext4 /dev/nvme9n9p9 rw");
    EXPECT_EQ(major(e.device), 259u);
    EXPECT_EQ(minor(e.device), 1048575u);
}

// ----------------------------------------------------------------- eligibility

TEST_F(MountinfoTest, PseudoFileSystems) {
    for (const char* type : {"proc", "sysfs", "tmpfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "overlay", "squashfs",
                             "debugfs", "tracefs", "securityfs", "bpf", "mqueue", "hugetlbfs", "autofs", "ramfs",
                             "efivarfs", "configfs", "fusectl", "pstore", "binfmt_misc", "nsfs", "iso9660"}) {
        EXPECT_TRUE(is_pseudo_fs(type)) << type;
        EXPECT_FALSE(is_network_fs(type)) << type;
        EXPECT_EQ(mount_ineligibility(mount_of(type)), fmt::format("pseudo file system {}", type));
    }
}

TEST_F(MountinfoTest, NetworkFileSystems) {
    for (const char* type : {"nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "ceph", "9p", "glusterfs", "afs",
                             "fuse.rclone", "virtiofs"}) {
        EXPECT_TRUE(is_network_fs(type)) << type;
        EXPECT_FALSE(is_pseudo_fs(type)) << type;
        EXPECT_EQ(mount_ineligibility(mount_of(type)), fmt::format("network file system {}", type));
    }
}

TEST_F(MountinfoTest, LocalFileSystemsAreEligible) {
    for (const char* type : {"ext4", "ext3", "ext2", "xfs", "btrfs", "vfat", "exfat", "f2fs", "zfs", "jfs", "fuseblk",
                             "ntfs3", "bcachefs", "hfsplus"}) {
        EXPECT_FALSE(is_pseudo_fs(type)) << type;
        EXPECT_FALSE(is_network_fs(type)) << type;
        EXPECT_EQ(mount_ineligibility(mount_of(type)), "") << type;
    }
}

TEST_F(MountinfoTest, ReadOnlyIsIneligible) {
    EXPECT_EQ(mount_ineligibility(mount_of("ext4", "ro,relatime")), "read-only");
    EXPECT_EQ(mount_ineligibility(mount_of("ext4", "rw,relatime", "ro")), "read-only");
    EXPECT_EQ(mount_ineligibility(mount_of("ext4", "rw,relatime", "rw,errors=remount-ro")), "");
    // The file-system kind is the stronger reason.
    EXPECT_EQ(mount_ineligibility(mount_of("squashfs", "ro")), "pseudo file system squashfs");
    EXPECT_EQ(mount_ineligibility(mount_of("nfs4", "ro")), "network file system nfs4");
}

TEST_F(MountinfoTest, EligibilityOfParsedLines) {
    auto entries = parse_mountinfo(
        "22 27 0:21 / /proc rw,nosuid - proc proc rw\n"
        "27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
        "41 27 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "45 27 0:40 / /run rw - tmpfs tmpfs rw\n"
        "50 27 0:45 / /net/home rw,relatime - nfs4 server:/home rw,vers=4.2\n"
        "51 27 0:46 / /net/share rw - cifs //server/share rw\n"
        "52 27 0:47 / /net/ssh rw,nosuid,nodev - fuse.sshfs user@host:/ rw,user_id=0\n"
        "53 27 7:0 / /snap/core/1 ro,nodev,relatime - squashfs /dev/loop0 ro\n"
        "54 27 8:17 / /mnt/ro ro,relatime - ext4 /dev/sdb1 rw\n"
        "55 27 8:18 / /mnt/data rw,relatime - xfs /dev/sdb2 rw\n");
    ASSERT_EQ(entries.size(), 10u);
    std::vector<std::string> reasons;
    for (const auto& entry : entries) reasons.push_back(mount_ineligibility(entry));
    EXPECT_EQ(reasons, (std::vector<std::string>{"pseudo file system proc", "", "pseudo file system cgroup2",
                                                 "pseudo file system tmpfs", "network file system nfs4",
                                                 "network file system cifs", "network file system fuse.sshfs",
                                                 "pseudo file system squashfs", "read-only", ""}));
}

// ------------------------------------------------------------- ProcMountTable

TEST_F(MountinfoTest, ProcMountTableReadsAFile) {
    fs::path file = dir() / "mountinfo";
    std::ofstream(file) << "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                           "60 27 8:33 / /media/My\\040Disk rw,relatime - ext4 /dev/sdc1 rw\n"
                           "bad line\n";
    ProcMountTable table(file.string());
    auto entries = table.read();
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[1].mount_point, "/media/My Disk");
    // Through the interface, as discovery uses it.
    const MountTable& as_interface = table;
    EXPECT_EQ(as_interface.read().size(), 2u);
}

TEST_F(MountinfoTest, ProcMountTableMissingFileIsEmpty) {
    ProcMountTable table((dir() / "nope").string());
    EXPECT_TRUE(table.read().empty());
}

TEST_F(MountinfoTest, ProcMountTableReadsTheRealTable) {
    auto entries = ProcMountTable().read();
    ASSERT_FALSE(entries.empty());
    bool has_root = false;
    for (const auto& entry : entries) {
        EXPECT_FALSE(entry.mount_point.empty());
        EXPECT_EQ(entry.mount_point.front(), '/');
        EXPECT_FALSE(entry.fs_type.empty());
        if (entry.mount_point == "/") has_root = true;
    }
    EXPECT_TRUE(has_root);
    // Every line of the kernel's own table parses.
    std::ifstream in("/proc/self/mountinfo");
    std::size_t lines = 0;
    for (std::string line; std::getline(in, line);) ++lines;
    EXPECT_EQ(entries.size(), lines);
}

TEST_F(MountinfoTest, ProcMountTableIsLargerThanOneBuffer) {
    fs::path file = dir() / "mountinfo";
    {
        std::ofstream out(file);
        for (int i = 0; i < 5000; ++i)
            out << 100 + i << " 27 0:" << 100 + i << " / /mnt/m" << i << " rw,relatime shared:" << i
                << " - tmpfs tmpfs rw\n";
    }
    auto entries = ProcMountTable(file.string()).read();
    ASSERT_EQ(entries.size(), 5000u);
    EXPECT_EQ(entries.back().mount_point, "/mnt/m4999");
}

TEST_F(MountinfoTest, ProcMountTableSeesRealOddMounts) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount in a private mount namespace";
    fs::path empty_source = dir() / "empty";
    fs::path odd = dir() / "odd name\\x";
    fs::path read_only = dir() / "ro";
    for (const auto& path : {empty_source, odd, read_only}) fs::create_directories(path);
    int status = run_in_private_mount_namespace([&]() -> int {
        if (::mount("", empty_source.c_str(), "tmpfs", 0, "size=1m") != 0) return 102;
        if (::mount("src with space", odd.c_str(), "tmpfs", 0, "size=1m") != 0) return 103;
        if (::mount("tmpfs", read_only.c_str(), "tmpfs", MS_RDONLY, "size=1m") != 0) return 104;
        auto entries = ProcMountTable().read();
        auto find = [&](const fs::path& path) -> const MountEntry* {
            for (const auto& entry : entries)
                if (entry.mount_point == path.string()) return &entry;
            return nullptr;
        };
        const MountEntry* a = find(empty_source);
        if (a == nullptr) return 10;
        if (a->source != "" || a->fs_type != "tmpfs" || mount_ineligibility(*a) != "pseudo file system tmpfs") return 11;
        const MountEntry* b = find(odd);
        if (b == nullptr) return 12;
        if (b->source != "src with space" || b->root != "/") return 13;
        const MountEntry* c = find(read_only);
        if (c == nullptr || !c->read_only()) return 14;
        return 0;
    });
    EXPECT_EQ(status, 0);
}

// ------------------------------------------------------------------ find_mount

TEST_F(MountinfoTest, FindMountFindsTheMountAtAPath) {
    auto proc = find_mount("/proc", ProcMountTable(thread_mountinfo));
    ASSERT_TRUE(proc.has_value());
    EXPECT_EQ(proc->mount_point, "/proc");
    EXPECT_EQ(proc->fs_type, "proc");
    auto root = find_mount("/", ProcMountTable(thread_mountinfo));
    ASSERT_TRUE(root.has_value());
    EXPECT_EQ(root->mount_point, "/");
    EXPECT_FALSE(find_mount(dir() / "missing", ProcMountTable(thread_mountinfo)).has_value());
    EXPECT_FALSE(find_mount("/proc", ProcMountTable((dir() / "no-table").string())).has_value());
}

// A bind mount of a subdirectory has that subdirectory as its root; one of
// the whole file system has "/". Found in the mount namespace of the calling
// thread, which a thread may have unshared on its own (helper_device.cpp):
// the process's table (/proc/self) does not show its mounts.
TEST_F(MountinfoTest, FindMountSeesBindMountRootsInTheThreadsOwnNamespace) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount in a private mount namespace";
    fs::path fs_dir = dir() / "fs";
    fs::path whole = dir() / "whole";
    fs::path part = dir() / "part";
    for (const auto& path : {fs_dir, whole, part}) fs::create_directories(path);
    int status = -1;
    std::thread worker([&] {
        status = [&] {
            if (::unshare(CLONE_NEWNS) != 0) return 100;
            if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 101;
            if (::mount("tmpfs", fs_dir.c_str(), "tmpfs", 0, "size=1m") != 0) return 102;
            fs::create_directories(fs_dir / "sub");
            if (::mount(fs_dir.c_str(), whole.c_str(), nullptr, MS_BIND, nullptr) != 0) return 103;
            if (::mount((fs_dir / "sub").c_str(), part.c_str(), nullptr, MS_BIND, nullptr) != 0) return 104;
            auto a = find_mount(whole, ProcMountTable(thread_mountinfo));
            if (!a || a->root != "/" || a->fs_type != "tmpfs" || a->mount_point != whole.string()) return 10;
            auto b = find_mount(part, ProcMountTable(thread_mountinfo));
            if (!b || b->root != "/sub" || b->mount_point != part.string()) return 11;
            if (find_mount(part, ProcMountTable()).has_value()) return 12;  // the process's namespace has no such mount
            return 0;
        }();
    });  // the thread's namespace, and its mounts, end with it
    worker.join();
    EXPECT_EQ(status, 0);
    EXPECT_TRUE(fs::is_empty(part));
}
