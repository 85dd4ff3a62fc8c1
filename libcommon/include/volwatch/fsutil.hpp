// Small file-system steps that must be safe on untrusted volumes and
// survive a crash: directories created beneath a root without following
// symlinks, and files replaced atomically.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"

namespace volwatch {

/// Creates each missing component of `relpath` beneath `root_fd` (mode 0755),
/// never following a symlink, and returns the last directory opened.
[[nodiscard]] Result<UniqueFd> make_dirs_beneath(int root_fd, std::string_view relpath);

/// Replaces `name` in directory `dir_fd` with `content`: a temporary file in
/// the same directory, fsync, rename over the name, fsync of the directory.
/// After a crash the name holds the old content or the new, never a mix.
[[nodiscard]] Status write_file_atomically(int dir_fd, const std::string& name, std::string_view content,
                                           unsigned mode = 0644);

/// The whole content of the regular file open at `fd`, or nullopt when it is
/// not a regular file, is larger than `max_bytes` or cannot be read.
[[nodiscard]] std::optional<std::string> read_regular_file(int fd, std::size_t max_bytes);
/// The same for `path`, opened without following a final symlink and without
/// blocking on a FIFO.
[[nodiscard]] std::optional<std::string> read_regular_file(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace volwatch
