#include "volwatch/fsutil.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/safe_path.hpp"

namespace volwatch {

Result<UniqueFd> make_dirs_beneath(int root_fd, std::string_view relpath) {
    if (std::string problem = lexical_path_problem(relpath); !problem.empty())
        return Problem{ExitCode::internal, fmt::format("{}: {}", relpath, problem)};
    UniqueFd current(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
    if (!current) return Problem{ExitCode::internal, fmt::format("dup: {}", std::strerror(errno))};
    struct stat root_stat {};
    if (::fstat(root_fd, &root_stat) != 0) return Problem{ExitCode::internal, std::strerror(errno)};
    std::size_t i = 0;
    while (i < relpath.size()) {
        std::size_t slash = relpath.find('/', i);
        if (slash == std::string_view::npos) slash = relpath.size();
        std::string part(relpath.substr(i, slash - i));
        i = slash + 1;
        if (part.empty() || part == ".") continue;
        if (::mkdirat(current.get(), part.c_str(), 0755) != 0 && errno != EEXIST)
            return Problem{ExitCode::internal, fmt::format("{}: cannot create {}: {}", relpath, part, std::strerror(errno))};
        UniqueFd next(::openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        struct stat st {};
        if (!next || ::fstat(next.get(), &st) != 0)
            return Problem{ExitCode::internal, fmt::format("{}: {} is not a plain directory ({})", relpath, part, std::strerror(errno))};
        if (st.st_dev != root_stat.st_dev)
            return Problem{ExitCode::bad_volume_config, fmt::format("{}: {} is on another mount", relpath, part)};
        current = std::move(next);
    }
    return current;
}

Status write_file_atomically(int dir_fd, const std::string& name, std::string_view content, unsigned mode) {
    std::string temp = fmt::format(".{}.tmp.{}", name, ::getpid());
    UniqueFd fd(::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd) return Problem{ExitCode::internal, fmt::format("{}: cannot create: {}", temp, std::strerror(errno))};
    std::size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int error = errno;
            ::unlinkat(dir_fd, temp.c_str(), 0);
            return Problem{ExitCode::internal, fmt::format("{}: write failed: {}", name, std::strerror(error))};
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || ::renameat(dir_fd, temp.c_str(), dir_fd, name.c_str()) != 0) {
        int error = errno;
        ::unlinkat(dir_fd, temp.c_str(), 0);
        return Problem{ExitCode::internal, fmt::format("{}: cannot replace: {}", name, std::strerror(error))};
    }
    // The renamed file again, then the directory: on vfat the new name's
    // directory entry gets the file's start cluster and size only when the
    // renamed inode is written back (a directory fsync does not), so a power
    // cut could otherwise leave `name` empty (a 0-byte MANIFEST.json, seen in
    // tests/vm/power-loss.sh).
    if (::fsync(fd.get()) != 0) {
        return Problem{ExitCode::internal, fmt::format("{}: fsync after rename: {}", name, std::strerror(errno))};
    }
    ::fsync(dir_fd);
    return success();
}

std::optional<std::string> read_regular_file(int fd, std::size_t max_bytes) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) > max_bytes)
        return std::nullopt;
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::read(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    text.resize(done);
    return text;
}

std::optional<std::string> read_regular_file(const std::filesystem::path& path, std::size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return std::nullopt;
    return read_regular_file(fd.get(), max_bytes);
}

}  // namespace volwatch
