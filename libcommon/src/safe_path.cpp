#include "volwatch/safe_path.hpp"

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

namespace volwatch {
namespace {

std::atomic<Resolver> forced_resolver{Resolver::automatic};
std::atomic<bool> openat2_missing{false};

constexpr int max_symlinks = 40;

std::string describe(int error) {
    switch (error) {
    case ENOENT: return "does not exist";
    case ENOTDIR: return "a path component is not a directory";
    case EXDEV: return "resolves outside the volume or onto another mount";
    case ELOOP: return "too many symbolic links";
    default: return std::strerror(error);
    }
}

Problem refusal(std::string_view relpath, int error) {
    return {error == EXDEV || error == ELOOP ? ExitCode::bad_volume_config : ExitCode::internal,
            fmt::format("{}: {}", relpath, describe(error))};
}

std::vector<std::string> split(std::string_view path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < path.size()) {
        std::size_t slash = path.find('/', i);
        if (slash == std::string_view::npos) slash = path.size();
        if (slash > i) parts.emplace_back(path.substr(i, slash - i));
        i = slash + 1;
    }
    return parts;
}

// The kernel's answer, or -ENOSYS when openat2 is not there.
int try_openat2(int root_fd, const std::string& relpath, int flags) {
    struct open_how how {};
    how.flags = static_cast<std::uint64_t>(flags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0; tries < 8; ++tries) {
        long fd = ::syscall(SYS_openat2, root_fd, relpath.c_str(), &how, sizeof how);
        if (fd >= 0) return static_cast<int>(fd);
        if (errno == EAGAIN || errno == EINTR) continue;  // a concurrent rename raced the lookup
        return -errno;
    }
    return -EAGAIN;
}

bool same_mount(const struct statx& a, const struct statx& b) {
    if (a.stx_dev_major != b.stx_dev_major || a.stx_dev_minor != b.stx_dev_minor) return false;
    if ((a.stx_mask & STATX_MNT_ID) && (b.stx_mask & STATX_MNT_ID)) return a.stx_mnt_id == b.stx_mnt_id;
    return true;
}

// The checked walk: one component at a time with O_NOFOLLOW, symlinks
// expanded by hand, ".." never above the root, every step on the root's mount.
int walk_beneath(int root_fd, std::string_view relpath, int flags) {
    struct statx root_stat {};
    if (::statx(root_fd, "", AT_EMPTY_PATH, STATX_INO | STATX_MNT_ID, &root_stat) != 0) return -errno;
    std::vector<UniqueFd> stack;
    UniqueFd root(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
    if (!root) return -errno;
    stack.push_back(std::move(root));
    std::deque<std::string> pending;
    for (auto& part : split(relpath)) pending.push_back(std::move(part));
    // As in the kernel, a trailing slash asks for a directory and makes the
    // final symlink followed even under O_NOFOLLOW.
    bool must_be_dir = relpath.back() == '/';
    int links = 0;
    while (!pending.empty()) {
        std::string part = std::move(pending.front());
        pending.pop_front();
        if (part == ".") continue;
        if (part == "..") {
            if (stack.size() == 1) return -EXDEV;
            stack.pop_back();
            continue;
        }
        int parent = stack.back().get();
        UniqueFd next(::openat(parent, part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!next) return -errno;
        struct statx st {};
        if (::statx(next.get(), "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO | STATX_MNT_ID, &st) != 0) return -errno;
        if (S_ISLNK(st.stx_mode)) {
            if (pending.empty() && (flags & O_NOFOLLOW) && !must_be_dir) {
                if (flags & O_PATH) return next.release();  // the link itself, as openat2 gives it
                return -ELOOP;
            }
            if (++links > max_symlinks) return -ELOOP;
            char target[PATH_MAX];
            ssize_t n = ::readlinkat(parent, part.c_str(), target, sizeof target - 1);
            if (n < 0) return -errno;
            std::string_view link(target, static_cast<std::size_t>(n));
            if (link.empty()) return -ENOENT;
            if (link.front() == '/') return -EXDEV;
            if (pending.empty() && link.back() == '/') must_be_dir = true;
            auto parts = split(link);
            pending.insert(pending.begin(), parts.begin(), parts.end());
            continue;
        }
        if (!same_mount(st, root_stat)) return -EXDEV;
        if ((!pending.empty() || must_be_dir) && !S_ISDIR(st.stx_mode)) return -ENOTDIR;
        if (pending.empty()) {
            if (flags & O_PATH) return next.release();
            // Reopen for real access and make sure it is the object we checked.
            UniqueFd opened(::openat(parent, part.c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
            if (!opened) return -errno;
            struct stat check {};
            if (::fstat(opened.get(), &check) != 0) return -errno;
            if (check.st_ino != st.stx_ino || major(check.st_dev) != st.stx_dev_major ||
                minor(check.st_dev) != st.stx_dev_minor)
                return -EAGAIN;
            return opened.release();
        }
        stack.push_back(std::move(next));
    }
    // The path named the root itself (".", "a/..").
    if (flags & O_PATH) return ::fcntl(stack.back().get(), F_DUPFD_CLOEXEC, 0);
    int fd = ::openat(stack.back().get(), ".", flags | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

}  // namespace

std::string lexical_path_problem(std::string_view relpath) {
    if (relpath.empty()) return "empty path";
    if (relpath.find('\0') != std::string_view::npos) return "contains a NUL byte";
    if (relpath.size() >= PATH_MAX) return "path too long";
    if (relpath.front() == '/') return "absolute path (paths are relative to the volume root)";
    for (const auto& part : split(relpath))
        if (part == "..") return "\"..\" would leave the volume";
    return "";
}

void set_resolver_for_testing(Resolver resolver) { forced_resolver = resolver; }

Result<UniqueFd> open_beneath(int root_fd, std::string_view relpath, int flags, int* errno_out) {
    auto fail = [&](int error) -> Result<UniqueFd> {
        if (errno_out != nullptr) *errno_out = error;
        return refusal(relpath, error);
    };
    if (errno_out != nullptr) *errno_out = 0;
    if (std::string problem = lexical_path_problem(relpath); !problem.empty()) {
        if (errno_out != nullptr) *errno_out = EXDEV;
        return Problem{ExitCode::bad_volume_config, fmt::format("{}: {}", relpath, problem)};
    }
    if (flags & O_PATH) flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW;
    flags |= O_CLOEXEC;
    std::string path(relpath);
    Resolver resolver = forced_resolver.load();
    if (resolver != Resolver::fallback && !openat2_missing.load()) {
        int fd = try_openat2(root_fd, path, flags);
        if (fd >= 0) return UniqueFd(fd);
        if (fd != -ENOSYS && fd != -E2BIG && !(fd == -EPERM && resolver == Resolver::automatic)) return fail(-fd);
        if (resolver == Resolver::openat2) return fail(-fd);
        // No openat2 (old kernel, or a seccomp filter that answers ENOSYS/EPERM).
        openat2_missing = true;
    }
    int fd = walk_beneath(root_fd, path, flags);
    if (fd < 0) return fail(-fd);
    return UniqueFd(fd);
}

}  // namespace volwatch
