// Safe resolution of untrusted relative paths beneath a volume root, with the
// openat2 resolver and the checked fallback walk: both must refuse the same
// escapes with the same errno.
#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sched.h>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "volwatch/safe_path.hpp"

using namespace volwatch;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, std::string_view text) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << path;
}

std::string read_fd(int fd) {
    std::string text;
    char buffer[256];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<std::size_t>(n));
    return text;
}

const char* resolver_name(Resolver resolver) {
    switch (resolver) {
    case Resolver::automatic: return "automatic";
    case Resolver::openat2: return "openat2";
    case Resolver::fallback: return "fallback";
    }
    return "?";
}

// A temporary directory per test with a volume root "vol" and a sibling
// "outside" holding what escapes would reach; the resolver is the parameter.
class SafePathTest : public ::testing::TestWithParam<Resolver> {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "volwatch-safe-path-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
        dir_ = fs::canonical(pattern);
        root_ = dir_ / "vol";
        fs::create_directories(root_);
        write_file(dir_ / "outside/secret", "secret");
        root_fd_ = UniqueFd(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        ASSERT_TRUE(root_fd_);
        set_resolver_for_testing(GetParam());
    }
    void TearDown() override {
        set_resolver_for_testing(Resolver::automatic);
        root_fd_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Opens `relpath` and expects failure with `expected_errno`.
    ::testing::AssertionResult refused(std::string_view relpath, int expected_errno, int flags = O_RDONLY) {
        int error = -1;
        auto fd = open_beneath(root_fd_.get(), relpath, flags, &error);
        if (fd) return ::testing::AssertionFailure() << relpath << ": opened, expected " << std::strerror(expected_errno);
        if (error != expected_errno)
            return ::testing::AssertionFailure() << relpath << ": errno " << error << " (" << std::strerror(error)
                                                 << "), expected " << expected_errno << " ("
                                                 << std::strerror(expected_errno) << "): " << fd.problem().message;
        if (fd.problem().message.rfind(std::string(relpath) + ": ", 0) != 0)
            return ::testing::AssertionFailure() << "message does not start with the path: " << fd.problem().message;
        return ::testing::AssertionSuccess();
    }

    // Opens `relpath` for reading and expects `content`.
    ::testing::AssertionResult opens(std::string_view relpath, std::string_view content) {
        int error = -1;
        auto fd = open_beneath(root_fd_.get(), relpath, O_RDONLY, &error);
        if (!fd) return ::testing::AssertionFailure() << relpath << ": " << fd.problem().message;
        if (error != 0) return ::testing::AssertionFailure() << relpath << ": errno_out " << error << " on success";
        if (int flags = ::fcntl(fd->get(), F_GETFD); !(flags & FD_CLOEXEC))
            return ::testing::AssertionFailure() << relpath << ": not O_CLOEXEC";
        std::string text = read_fd(fd->get());
        if (text != content) return ::testing::AssertionFailure() << relpath << ": read \"" << text << "\"";
        return ::testing::AssertionSuccess();
    }

    const fs::path& dir() const { return dir_; }
    const fs::path& root() const { return root_; }
    int root_fd() const { return root_fd_.get(); }

private:
    fs::path dir_;
    fs::path root_;
    UniqueFd root_fd_;
};

INSTANTIATE_TEST_SUITE_P(Resolvers, SafePathTest, ::testing::Values(Resolver::openat2, Resolver::fallback, Resolver::automatic),
                         [](const ::testing::TestParamInfo<Resolver>& param_info) { return resolver_name(param_info.param); });

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

// ------------------------------------------------------- lexical_path_problem

TEST(SafePathLexical, RefusesBeforeTouchingTheDisk) {
    EXPECT_EQ(lexical_path_problem(""), "empty path");
    EXPECT_EQ(lexical_path_problem("/abs"), "absolute path (paths are relative to the volume root)");
    EXPECT_EQ(lexical_path_problem("/"), "absolute path (paths are relative to the volume root)");
    EXPECT_EQ(lexical_path_problem(".."), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem("../x"), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem("a/../.."), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem("a/../../b"), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem("a/.."), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem("a//..//b"), "\"..\" would leave the volume");
    EXPECT_EQ(lexical_path_problem(std::string_view("a\0b", 3)), "contains a NUL byte");
    EXPECT_EQ(lexical_path_problem(std::string_view("\0", 1)), "contains a NUL byte");
    EXPECT_EQ(lexical_path_problem(std::string(PATH_MAX, 'a')), "path too long");
}

TEST(SafePathLexical, AcceptsOrdinaryRelativePaths) {
    for (const char* ok : {"a", "a/b/c", "./a", "a/./b", "...", "..a", "a..", "a/..b/c", "boot/initrd.img", ".",
                           "a/", "a//b"})
        EXPECT_EQ(lexical_path_problem(ok), "") << ok;
    EXPECT_EQ(lexical_path_problem(std::string(PATH_MAX - 1, 'a')), "");
}

// ---------------------------------------------------------------- open_beneath

TEST_P(SafePathTest, LexicalRefusalsSetExdev) {
    EXPECT_TRUE(refused("", EXDEV));
    EXPECT_TRUE(refused("..", EXDEV));
    EXPECT_TRUE(refused("a/../..", EXDEV));
    EXPECT_TRUE(refused(fs::path(dir() / "outside/secret").string(), EXDEV));
    int error = -1;
    auto fd = open_beneath(root_fd(), std::string_view("a\0b", 3), O_RDONLY, &error);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(error, EXDEV);
    EXPECT_EQ(fd.problem().code, ExitCode::bad_volume_config);
    auto absolute = open_beneath(root_fd(), "/etc/passwd", O_RDONLY);
    ASSERT_FALSE(absolute.ok());
    EXPECT_EQ(absolute.problem().code, ExitCode::bad_volume_config);
    EXPECT_EQ(absolute.problem().message, "/etc/passwd: absolute path (paths are relative to the volume root)");
}

TEST_P(SafePathTest, PlainFile) {
    write_file(root() / "file", "hello");
    EXPECT_TRUE(opens("file", "hello"));
    EXPECT_TRUE(opens("./file", "hello"));
}

TEST_P(SafePathTest, NestedDirectories) {
    write_file(root() / "a/b/c/d.txt", "deep");
    EXPECT_TRUE(opens("a/b/c/d.txt", "deep"));
    EXPECT_TRUE(opens("a//b/./c/d.txt", "deep"));
    auto dir_fd = open_beneath(root_fd(), "a/b", O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(dir_fd.ok()) << dir_fd.problem().message;
    struct stat st {};
    ASSERT_EQ(::fstat(dir_fd->get(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    auto path_fd = open_beneath(root_fd(), "a/b/c", O_PATH);
    ASSERT_TRUE(path_fd.ok()) << path_fd.problem().message;
    EXPECT_TRUE(refused("a/b/c/d.txt", ENOTDIR, O_RDONLY | O_DIRECTORY));
}

TEST_P(SafePathTest, TheRootItself) {
    auto fd = open_beneath(root_fd(), ".", O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(fd.ok()) << fd.problem().message;
    struct stat a {}, b {};
    ASSERT_EQ(::fstat(fd->get(), &a), 0);
    ASSERT_EQ(::stat(root().c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_dev, b.st_dev);
}

TEST_P(SafePathTest, InnerRelativeSymlinksAreFollowed) {
    write_file(root() / "boot/vmlinuz-6.1", "kernel");
    fs::create_symlink("vmlinuz-6.1", root() / "boot/vmlinuz");
    fs::create_symlink("boot/vmlinuz", root() / "vmlinuz");
    fs::create_directories(root() / "usr/lib/modules");
    write_file(root() / "usr/lib/modules/x.ko", "module");
    fs::create_directory_symlink("usr/lib", root() / "lib");
    // A symlink that climbs and comes back down stays inside.
    fs::create_directories(root() / "etc");
    fs::create_symlink("../boot/vmlinuz", root() / "etc/kernel");
    fs::create_directory_symlink("../usr/lib/../lib/modules", root() / "etc/modules");
    EXPECT_TRUE(opens("boot/vmlinuz", "kernel"));
    EXPECT_TRUE(opens("vmlinuz", "kernel"));
    EXPECT_TRUE(opens("lib/modules/x.ko", "module"));
    EXPECT_TRUE(opens("etc/kernel", "kernel"));
    EXPECT_TRUE(opens("etc/modules/x.ko", "module"));
}

TEST_P(SafePathTest, AbsoluteSymlinkIsRefused) {
    fs::create_symlink(dir() / "outside/secret", root() / "link");
    EXPECT_TRUE(refused("link", EXDEV));
    fs::create_symlink(root() / "file", root() / "self");  // even one pointing back inside by absolute path
    write_file(root() / "file", "x");
    EXPECT_TRUE(refused("self", EXDEV));
    fs::create_directory_symlink("/", root() / "slash");
    EXPECT_TRUE(refused("slash/etc/passwd", EXDEV));
    EXPECT_TRUE(refused("link", EXDEV, O_PATH));
    auto fd = open_beneath(root_fd(), "link", O_RDONLY);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.problem().code, ExitCode::bad_volume_config);
    EXPECT_EQ(fd.problem().message, "link: resolves outside the volume or onto another mount");
}

TEST_P(SafePathTest, RelativeSymlinkEscapingIsRefused) {
    fs::create_symlink("../outside/secret", root() / "up");
    EXPECT_TRUE(refused("up", EXDEV));
    fs::create_directories(root() / "a/b");
    fs::create_symlink("../../../outside/secret", root() / "a/b/deep");
    EXPECT_TRUE(refused("a/b/deep", EXDEV));
    fs::create_directory_symlink("../../..", root() / "a/b/dotdot");
    EXPECT_TRUE(refused("a/b/dotdot/outside/secret", EXDEV));
    // A detour: inside, then out through a chain of two links.
    fs::create_symlink("a/b/deep", root() / "chain");
    EXPECT_TRUE(refused("chain", EXDEV));
    EXPECT_TRUE(refused("chain", EXDEV, O_PATH));
}

TEST_P(SafePathTest, SymlinkLoop) {
    fs::create_symlink("loop", root() / "loop");
    EXPECT_TRUE(refused("loop", ELOOP));
    fs::create_symlink("pong", root() / "ping");
    fs::create_symlink("ping", root() / "pong");
    EXPECT_TRUE(refused("ping", ELOOP));
    EXPECT_TRUE(refused("ping/x", ELOOP));
    auto fd = open_beneath(root_fd(), "ping", O_RDONLY);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.problem().message, "ping: too many symbolic links");
}

TEST_P(SafePathTest, MissingPath) {
    EXPECT_TRUE(refused("nope", ENOENT));
    EXPECT_TRUE(refused("nope/deeper", ENOENT));
    fs::create_directories(root() / "a");
    EXPECT_TRUE(refused("a/nope", ENOENT));
    EXPECT_TRUE(refused("a/nope", ENOENT, O_PATH));
    fs::create_symlink("missing-target", root() / "dangling");
    EXPECT_TRUE(refused("dangling", ENOENT));
    auto fd = open_beneath(root_fd(), "nope", O_RDONLY);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.problem().message, "nope: does not exist");
}

TEST_P(SafePathTest, ThroughARegularFile) {
    write_file(root() / "file", "x");
    EXPECT_TRUE(refused("file/x", ENOTDIR));
    EXPECT_TRUE(refused("file/x/y", ENOTDIR));
    fs::create_symlink("file", root() / "to-file");
    EXPECT_TRUE(refused("to-file/x", ENOTDIR));
    auto fd = open_beneath(root_fd(), "file/x", O_RDONLY);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.problem().message, "file/x: a path component is not a directory");
}

TEST_P(SafePathTest, TrailingSlashNeedsADirectory) {
    write_file(root() / "file", "x");
    fs::create_directories(root() / "dir");
    EXPECT_TRUE(refused("file/", ENOTDIR));
    EXPECT_TRUE(refused("file/.", ENOTDIR));
    auto dir_fd = open_beneath(root_fd(), "dir/", O_RDONLY);
    EXPECT_TRUE(dir_fd.ok()) << dir_fd.problem().message;
    fs::create_symlink("file", root() / "to-file");
    fs::create_symlink("file/", root() / "to-file-slash");
    fs::create_directory_symlink("dir", root() / "to-dir");
    EXPECT_TRUE(refused("to-file/", ENOTDIR));
    EXPECT_TRUE(refused("to-file-slash", ENOTDIR));
    EXPECT_TRUE(refused("to-file/", ENOTDIR, O_PATH));
    // A trailing slash follows the final symlink even under O_NOFOLLOW.
    auto through = open_beneath(root_fd(), "to-dir/", O_RDONLY | O_NOFOLLOW);
    ASSERT_TRUE(through.ok()) << through.problem().message;
    struct stat st {};
    ASSERT_EQ(::fstat(through->get(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_P(SafePathTest, NoFollowIsHonoured) {
    // O_NOFOLLOW must mean the same with both resolvers: a final symlink is
    // not followed (ELOOP, or the link itself with O_PATH).
    write_file(root() / "file", "x");
    fs::create_symlink("file", root() / "link");
    EXPECT_TRUE(refused("link", ELOOP, O_RDONLY | O_NOFOLLOW));
    auto link = open_beneath(root_fd(), "link", O_PATH | O_NOFOLLOW);
    ASSERT_TRUE(link.ok()) << link.problem().message;
    struct stat st {};
    ASSERT_EQ(::fstatat(link->get(), "", &st, AT_EMPTY_PATH), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    // Symlinks before the final component are still followed.
    fs::create_directories(root() / "d");
    write_file(root() / "d/f", "in d");
    fs::create_directory_symlink("d", root() / "dlink");
    auto fd = open_beneath(root_fd(), "dlink/f", O_RDONLY | O_NOFOLLOW);
    ASSERT_TRUE(fd.ok()) << fd.problem().message;
    EXPECT_EQ(read_fd(fd->get()), "in d");
}

TEST_P(SafePathTest, ProcMagicLinksAreRefused) {
    fs::create_symlink("/proc/self/root", root() / "magic");
    EXPECT_TRUE(refused("magic/etc/passwd", EXDEV));
}

TEST_P(SafePathTest, ErrnoOutIsOptional) {
    write_file(root() / "file", "x");
    EXPECT_TRUE(open_beneath(root_fd(), "file", O_RDONLY).ok());
    EXPECT_FALSE(open_beneath(root_fd(), "nope", O_RDONLY).ok());
    EXPECT_FALSE(open_beneath(root_fd(), "..", O_RDONLY).ok());
}

TEST_P(SafePathTest, MountCrossingIsRefused) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs in a private mount namespace";
    fs::create_directories(root() / "mnt");
    fs::create_directories(root() / "sub");
    int status = run_in_private_mount_namespace([&]() -> int {
        if (::mount("tmpfs", (root() / "mnt").c_str(), "tmpfs", 0, "size=1m") != 0) return 102;
        // An fd opened before unshare() still walks the parent namespace's mounts.
        UniqueFd fresh_root(::open(root().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!fresh_root) return 105;
        if (!std::ofstream(root() / "mnt/x").good()) return 103;
        ::symlink("mnt/x", (root() / "to-mnt").c_str());
        ::symlink("../mnt", (root() / "sub/up-to-mnt").c_str());
        // A bind mount of the volume's own file system is a crossing too.
        fs::create_directories(root() / "bind-src");
        std::ofstream(root() / "bind-src/y").put('y');
        fs::create_directories(root() / "bind");
        if (::mount((root() / "bind-src").c_str(), (root() / "bind").c_str(), nullptr, MS_BIND, nullptr) != 0) return 104;
        int code = 10;
        for (Resolver resolver : {Resolver::openat2, Resolver::fallback}) {
            set_resolver_for_testing(resolver);
            for (const char* path : {"mnt/x", "mnt", "to-mnt", "sub/up-to-mnt/x", "bind/y"}) {
                for (int flags : {O_RDONLY, O_PATH}) {
                    int error = 0;
                    auto fd = open_beneath(fresh_root.get(), path, flags, &error);
                    if (fd.ok() || error != EXDEV) {
                        std::fprintf(stderr, "%s, resolver %s, flags %d: %s (errno %d)\n", path,
                                     resolver_name(resolver), flags, fd.ok() ? "opened" : fd.problem().message.c_str(),
                                     error);
                        return code;
                    }
                    ++code;
                }
            }
            // The directory holding the mount point is still fine.
            if (!open_beneath(fresh_root.get(), "sub", O_RDONLY | O_DIRECTORY).ok()) return 90;
        }
        return 0;
    });
    EXPECT_EQ(status, 0);
}
