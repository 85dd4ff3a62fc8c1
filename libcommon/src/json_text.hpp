// Private to libcommon: the one way JSON leaves a program or goes to disk.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace volwatch {

/// `value` as JSON text (compact for indent < 0). Bytes that are not valid
/// UTF-8, such as a file name from the volume, become U+FFFD instead of
/// throwing type_error.316 and losing the whole document.
[[nodiscard]] inline std::string json_text(const nlohmann::json& value, int indent = -1) {
    return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace volwatch
