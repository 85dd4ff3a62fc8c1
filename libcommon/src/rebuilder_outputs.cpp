#include "volwatch/rebuilder_outputs.hpp"

#include <fnmatch.h>

namespace volwatch {
namespace {

// Components of a relative path; "." and empty ones (a doubled or trailing
// slash) name nothing, as in the walk of the sources.
std::vector<std::string> components(std::string_view path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i <= path.size()) {
        std::size_t slash = path.find('/', i);
        if (slash == std::string_view::npos) slash = path.size();
        std::string_view part = path.substr(i, slash - i);
        if (!part.empty() && part != ".") parts.emplace_back(part);
        i = slash + 1;
    }
    return parts;
}

bool component_matches(const std::string& pattern, const std::string& name) {
    return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

// True when the first parts.size() components of `pattern` match `parts`.
bool leading_match(const std::vector<std::string>& pattern, const std::vector<std::string>& parts) {
    if (parts.size() > pattern.size()) return false;
    for (std::size_t i = 0; i < parts.size(); ++i)
        if (!component_matches(pattern[i], parts[i])) return false;
    return true;
}

}  // namespace

std::string output_pattern_problem(std::string_view pattern) {
    std::size_t i = 0;
    while (i <= pattern.size()) {
        std::size_t slash = pattern.find('/', i);
        if (slash == std::string_view::npos) slash = pattern.size();
        std::string_view part = pattern.substr(i, slash - i);
        if (part == ".") return "a \".\" component (write the path without it)";
        // An open bracket never matches anything in fnmatch: surely a typo.
        std::size_t open = part.find('[');
        if (open != std::string_view::npos && part.find(']', open + 1) == std::string_view::npos)
            return "\"[\" without a closing \"]\"";
        i = slash + 1;
    }
    if (components(pattern).empty()) return "names no path";
    return "";
}

bool output_lies_beneath(std::string_view pattern, std::string_view source) {
    auto pattern_parts = components(pattern);
    auto source_parts = components(source);
    return pattern_parts.size() > source_parts.size() && leading_match(pattern_parts, source_parts);
}

bool DirectoryOutputs::matches(const char* name) const {
    for (const std::string* last : names_)
        if (::fnmatch(last->c_str(), name, 0) == 0) return true;
    return false;
}

OutputMatcher::OutputMatcher(const std::vector<std::string>& patterns) {
    for (const auto& pattern : patterns) patterns_.push_back(components(pattern));
}

DirectoryOutputs OutputMatcher::in_directory(std::string_view dir) const {
    DirectoryOutputs outputs;
    if (patterns_.empty()) return outputs;
    auto parts = components(dir);
    for (const auto& pattern : patterns_)
        if (pattern.size() == parts.size() + 1 && leading_match(pattern, parts)) outputs.names_.push_back(&pattern.back());
    return outputs;
}

bool OutputMatcher::matches(std::string_view relpath) const {
    auto parts = components(relpath);
    for (const auto& pattern : patterns_)
        if (pattern.size() == parts.size() && leading_match(pattern, parts)) return true;
    return false;
}

}  // namespace volwatch
