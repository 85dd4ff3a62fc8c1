// Boot Loader Specification Type #1 entries on a helper target (DESIGN §5,
// docs/helpers.md "Boot loader entries"): with [helpers.entry] in the host
// config, the switch of a helper sync also writes
//   T/loader/entries/<id>-<generation>[+<tries>].conf
// naming the new slot's files, so systemd-boot boots the newest sealed set by
// default and the previous generation's entry is its fallback. Entries are
// removed only when the slot they name is about to be reused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "volwatch/config.hpp"
#include "volwatch/error.hpp"
#include "volwatch/helpers.hpp"

namespace volwatch {

/// Where the entries live, relative to the target (the partition root).
inline constexpr const char* boot_entries_reldir = "loader/entries";

/// The name of an entry file: "<id>-<generation>.conf", or with boot counting
/// "<id>-<generation>+<left>[-<done>].conf" (systemd-boot renames the file at
/// each try; systemd-bless-boot drops the counter after a good boot).
struct BootEntryName {
    std::uint64_t generation = 0;
    std::optional<unsigned> tries_left;  // none: no boot counting
    std::optional<unsigned> tries_done;
};

/// Parses `filename` as an entry of `id`; nullopt for anything else (another
/// id, a temporary, junk). Digits only, no signs, no leading zeros.
[[nodiscard]] std::optional<BootEntryName> parse_boot_entry_name(std::string_view filename, std::string_view id);
/// The name volwatch writes: "<id>-<generation>.conf", or "...+<tries>.conf".
[[nodiscard]] std::string boot_entry_filename(std::string_view id, std::uint64_t generation, int tries);
/// True when boot counting ran out: the boot loader sorts the entry last.
[[nodiscard]] inline bool boot_entry_exhausted(const BootEntryName& name) { return name.tries_left && *name.tries_left == 0; }

/// The text of the entry for `slot` at `generation`; fails when linux or an
/// initrd is not one of `helper_files` (the volume config's [helpers] files).
[[nodiscard]] Result<std::string> format_boot_entry(const BootEntryConfig& entry, const std::vector<std::string>& helper_files,
                                                    std::uint64_t generation, const std::string& slot);

/// What an entry's linux and initrd lines name: one slot and files in it.
struct BootEntryPaths {
    std::string slot;                // "a" or "b"
    std::vector<std::string> files;  // relative to the slot, linux first
};
/// nullopt when the entry has no linux line, or a path outside
/// /volwatch/slot-<s>/, or paths in different slots.
[[nodiscard]] std::optional<BootEntryPaths> parse_boot_entry_paths(std::string_view text);

/// An entry of one id found on a target.
struct BootEntryFile {
    std::string filename;
    BootEntryName name;
    std::optional<BootEntryPaths> paths;  // nullopt: unreadable or names no volwatch slot
    std::string text;
};
/// The entries of `id` on `target`, in systemd-boot 252's menu order
/// (sort_boot_entries); empty when loader/entries is missing.
[[nodiscard]] std::vector<BootEntryFile> read_boot_entries(const std::filesystem::path& target, std::string_view id);
/// Sorts entries of one id (one sort-key) as systemd-boot 252 does: entries
/// with no tries left last, then by version (the generation) newest first,
/// then more tries left first, then fewer tries done first. The first entry
/// is the default when loader.conf and EFI variables name none.
void sort_boot_entries(std::vector<BootEntryFile>& entries);

/// Why the entries of `target` disagree with its slots, for check_helper.
struct BootEntryVerdict {
    bool error = false;   // an entry names a set that is not there, or the live entry is out of tries
    bool stale = false;   // the live generation has no entry, or its text is not what the config asks now
    std::string reason;
};
/// Checks the entries of `helper` against its live slot `live` (nullopt:
/// no live set yet, only the entries' own slots are checked).
[[nodiscard]] BootEntryVerdict check_boot_entries(const std::filesystem::path& target, const BootEntryConfig& entry,
                                                  const std::vector<std::string>& helper_files,
                                                  const std::optional<LivePointer>& live);

/// The refusal of a sync when the live generation's entry ran out of tries:
/// the spare slot then holds the only set known to boot. "" when none.
[[nodiscard]] std::string exhausted_live_entry_problem(const std::filesystem::path& target, const std::vector<BootEntryFile>& entries,
                                                       const LivePointer& live);

/// Removes every entry of `id` that names `slot` (step 1 of a sync, before
/// the slot is unsealed), then fsyncs loader/entries.
[[nodiscard]] Status remove_boot_entries_of_slot(const std::filesystem::path& target, std::string_view id, const std::string& slot);
/// Writes `text` as `filename` in loader/entries (created with its parents,
/// each fsynced): temporary name, fsync, rename, fsync the file and the
/// directory (write_file_atomically).
[[nodiscard]] Status write_boot_entry(const std::filesystem::path& target, const std::string& filename, std::string_view text);

}  // namespace volwatch
