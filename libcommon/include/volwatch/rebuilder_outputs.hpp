// A cache's declared outputs (volume config key `outputs`): paths or globs
// beneath its sources that its own rebuilder writes (depmod's modules.* in
// the module tree it indexes). The staleness engine leaves them out of the
// source state, so a rebuilder's own writes never make its cache stale
// again. Patterns are matched component by component with fnmatch(3): `*`,
// `?` and `[...]` never cross a `/`; a matched directory is left out whole.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace volwatch {

/// Why `pattern` (already past the relative-path rules) cannot be an output,
/// or "": a "." component, or a bracket expression left open.
[[nodiscard]] std::string output_pattern_problem(std::string_view pattern);

/// True when `pattern` names something strictly beneath `source`: each
/// component of `source` matches the pattern's component at that place.
[[nodiscard]] bool output_lies_beneath(std::string_view pattern, std::string_view source);

/// The patterns that can match an entry directly inside one directory.
class DirectoryOutputs {
public:
    /// True when some output may sit directly inside this directory: its
    /// times then change with every run and count by identity only.
    [[nodiscard]] bool holds_outputs() const { return !names_.empty(); }
    /// True when the entry `name` of this directory is a declared output.
    [[nodiscard]] bool matches(const char* name) const;

private:
    friend class OutputMatcher;
    std::vector<const std::string*> names_;  // the last component of each pattern that may apply
};

/// A cache's outputs, split into components once for a walk of its sources.
class OutputMatcher {
public:
    explicit OutputMatcher(const std::vector<std::string>& patterns);
    [[nodiscard]] bool empty() const { return patterns_.empty(); }
    /// The patterns for the entries of `dir` (a path relative to the volume root).
    [[nodiscard]] DirectoryOutputs in_directory(std::string_view dir) const;
    /// True when `relpath` itself is a declared output.
    [[nodiscard]] bool matches(std::string_view relpath) const;

private:
    std::vector<std::vector<std::string>> patterns_;
};

}  // namespace volwatch
