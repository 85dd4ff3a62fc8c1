// The staleness engine (DESIGN §5). A cache is stale when its product is
// missing, when its sources changed since the last successful build started
// (ctime as well as mtime; removal counts), or when its config changed.
//
// The builder's record lives on the volume at
//   <root>/var/lib/volwatch/build/<cache>.json
// and holds the build's start time, the source-state digest taken at that
// start, the number of source entries and which top-level sources existed,
// and the config digest. vrebuild writes it; vcheck only reads it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/error.hpp"

namespace volwatch {

inline constexpr const char* state_relpath = "var/lib/volwatch";
inline constexpr const char* build_record_reldir = "var/lib/volwatch/build";

/// A file time with nanoseconds, as unix nanoseconds.
using FileTime = std::int64_t;

/// The state of a cache's sources at one moment.
struct SourceState {
    std::string digest;              // 32 hex digits over (path, type, size, mtime, ctime, inode) of every entry
    std::uint64_t entries = 0;       // how many entries were looked at
    std::vector<bool> present;       // per top-level source: did it exist
    FileTime newest = 0;             // the largest max(mtime, ctime) seen
    std::string newest_path;         // the entry that had it, relative to the root
};

struct BuildRecord {
    FileTime started = 0;            // unix ns, taken before the rebuilder started
    std::string source_digest;
    std::uint64_t entries = 0;
    std::vector<std::string> present_sources;  // top-level sources that existed
    std::string config_digest;
    double finished = 0;             // unix seconds, informational
};

/// Walks the sources of `cache` beneath `root_fd`: shallow = each source and,
/// for a directory, its entries; deep = every entry beneath. The product, the
/// cache's declared outputs and volwatch's own state directory are never
/// counted; a directory holding the product or an output counts by identity. Missing sources are
/// noted, not errors; an escape or mount crossing is a bad_volume_config Problem.
/// `threads` > 1 walks deep trees in parallel.
[[nodiscard]] Result<SourceState> scan_sources(int root_fd, const CacheSpec& cache, unsigned threads = 0);

/// The JSON text of a build record.
[[nodiscard]] std::string format_build_record(const BuildRecord& record);
/// Parses a build record; nullopt when it is damaged (treated as absent).
[[nodiscard]] std::optional<BuildRecord> parse_build_record(std::string_view text);
/// Reads the record of `cache_name` beneath `root_fd`; nullopt if absent or damaged.
[[nodiscard]] std::optional<BuildRecord> read_build_record(int root_fd, const std::string& cache_name);
/// Starts a build record for `cache`: takes the start time first, then the
/// source state, so a change made during the build leaves the cache stale.
/// `state`, if given, receives the source state the record was made from.
[[nodiscard]] Result<BuildRecord> begin_build_record(int root_fd, const CacheSpec& cache, const HostConfig& host,
                                                     unsigned threads = 0, SourceState* state = nullptr);
/// For a person: what differs between `now` and the state `record` was made
/// from: the newest entry when it is newer than the record's start, else
/// "an entry was removed or replaced" (or the entry counts).
[[nodiscard]] std::string describe_change(const SourceState& now, const BuildRecord& record);
/// Writes the record of `cache_name` beneath `root_fd` atomically (temp file,
/// fsync, rename, fsync of the directory), creating var/lib/volwatch/build.
[[nodiscard]] Status write_build_record(int root_fd, const std::string& cache_name, const BuildRecord& record);
/// Where a cache's record is kept, relative to the volume root.
[[nodiscard]] std::string build_record_relpath(const std::string& cache_name);

enum class CacheState { clean, stale, error };

struct CacheVerdict {
    std::string name;
    CacheState state = CacheState::clean;
    std::string reason;  // why stale or error, for a person; "" when clean
    bool unreadable = false;  // error: a source or a directory beneath one could not be read (EACCES, EPERM)
    bool has_record = false;
    FileTime product_time = 0;  // product mtime, 0 if missing
    FileTime newest_source = 0;
};

struct CheckOptions {
    unsigned threads = 0;      // 0: pick from the machine
    bool force_deep = false;   // also look beneath shallow sources, by time
};

/// Decides whether `cache` is stale, with the reason a person needs. With
/// `force_deep`, a shallow cache that is clean by its own rules is also
/// checked file by file against the last build's start (or the product).
[[nodiscard]] CacheVerdict check_cache(int root_fd, const CacheSpec& cache, const HostConfig& host,
                                       const CheckOptions& options = {});

/// "clean", "stale" or "error".
[[nodiscard]] std::string_view to_string(CacheState state);

}  // namespace volwatch
