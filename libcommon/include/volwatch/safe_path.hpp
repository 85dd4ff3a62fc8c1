// Resolution of untrusted relative paths beneath a volume root: no "..",
// no absolute paths, no symlink escapes, no mount crossings. Linux uses
// openat2(RESOLVE_BENEATH | RESOLVE_NO_XDEV); elsewhere, or where openat2 is
// missing, a component-by-component walk makes the same checks.
#pragma once

#include <string>
#include <string_view>

#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"

namespace volwatch {

/// Why a relative path is refused before touching the disk, or "" if it is
/// acceptable: empty, absolute, a ".." component, a NUL byte, or over PATH_MAX.
[[nodiscard]] std::string lexical_path_problem(std::string_view relpath);

enum class Resolver { automatic, openat2, fallback };

/// Forces one resolver (tests use this to exercise the fallback).
void set_resolver_for_testing(Resolver resolver);

/// Opens `relpath` beneath `root_fd` with `flags` (O_CLOEXEC is added).
/// Symlinks are followed only while they stay beneath the root and on its
/// mount. Returns the fd, or a Problem whose message says what was refused;
/// `errno_out` (if given) receives ENOENT for a missing path, EXDEV for an
/// escape or mount crossing, ELOOP for too many links.
[[nodiscard]] Result<UniqueFd> open_beneath(int root_fd, std::string_view relpath, int flags,
                                            int* errno_out = nullptr);

}  // namespace volwatch
