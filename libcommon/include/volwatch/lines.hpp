#pragma once
// Splitting text into lines, as every small file format here is read.

#include <string_view>

namespace volwatch {

/// Takes the next line off the front of `rest` into `line` (without its
/// '\n'; a last line without one counts); false once `rest` is empty.
///     for (std::string_view rest = text, line; next_line(rest, line);) ...
inline bool next_line(std::string_view& rest, std::string_view& line) {
    if (rest.empty()) return false;
    std::size_t end = rest.find('\n');
    line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    return true;
}

}  // namespace volwatch
