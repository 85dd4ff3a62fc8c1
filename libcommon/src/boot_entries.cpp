#include "volwatch/boot_entries.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include <fmt/format.h>

#include "volwatch/fd.hpp"
#include "volwatch/fsutil.hpp"
#include "volwatch/lines.hpp"
#include "volwatch/safe_path.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t max_entry_bytes = 64 * 1024;

// A decimal number as systemd-boot's counters and our generations are written:
// digits only, no leading zero (so one generation has one name).
std::optional<std::uint64_t> parse_number(std::string_view digits) {
    if (digits.empty() || digits.size() > 19 || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

std::optional<std::string> read_small_file(const fs::path& path) { return read_regular_file(path, max_entry_bytes); }

// A "key value" line of an entry or of loader.conf: the key up to the first
// blank, the value after the blanks that follow, trailing blanks and a CR
// dropped. nullopt for a line with no value.
std::optional<std::pair<std::string_view, std::string_view>> key_and_value(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    std::size_t space = line.find_first_of(" \t");
    if (space == std::string_view::npos) return std::nullopt;
    return std::pair{line.substr(0, space), line.substr(line.find_first_not_of(" \t", space))};
}

// {generation} and {slot}, where config.cpp's parser sees placeholders.
std::string expand(std::string_view text, std::uint64_t generation, const std::string& slot) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        if (text[i] == '{' && (i == 0 || text[i - 1] != '$')) {
            if (text.substr(i).starts_with("{generation}")) {
                out += std::to_string(generation);
                i += 12;
                continue;
            }
            if (text.substr(i).starts_with("{slot}")) {
                out += slot;
                i += 6;
                continue;
            }
        }
        out += text[i++];
    }
    return out;
}

Status fsync_dir(int fd, const fs::path& shown) {
    if (::fsync(fd) != 0) return Problem{ExitCode::internal, fmt::format("{}: fsync: {}", shown.string(), std::strerror(errno))};
    return success();
}

std::string slot_of_generation_problem(const fs::path& target, const BootEntryFile& entry) {
    const BootEntryPaths& paths = *entry.paths;
    fs::path slot_dir = target / "volwatch" / ("slot-" + paths.slot);
    auto manifest_text = read_small_file(slot_dir / helper_manifest_name);
    std::optional<HelperManifest> manifest = manifest_text ? parse_manifest(*manifest_text) : std::nullopt;
    if (!manifest || manifest->generation != entry.name.generation)
        return fmt::format("boot entry {} names slot {}, which is not sealed with generation {}", entry.filename, paths.slot,
                           entry.name.generation);
    for (const auto& file : paths.files) {
        struct stat st {};
        auto sealed = manifest->files.find(file);
        if (sealed == manifest->files.end() || ::stat((slot_dir / file).c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
            static_cast<std::uint64_t>(st.st_size) != sealed->second.size)
            return fmt::format("boot entry {} names /volwatch/slot-{}/{}, which is missing from that slot or differs from its manifest",
                               entry.filename, paths.slot, file);
    }
    return "";
}

}  // namespace

std::optional<BootEntryName> parse_boot_entry_name(std::string_view filename, std::string_view id) {
    if (id.empty() || !filename.starts_with(id) || !filename.ends_with(".conf")) return std::nullopt;
    std::string_view rest = filename.substr(id.size(), filename.size() - id.size() - 5);
    if (!rest.starts_with("-")) return std::nullopt;
    rest.remove_prefix(1);
    BootEntryName name;
    std::size_t plus = rest.find('+');
    auto generation = parse_number(rest.substr(0, plus));
    if (!generation) return std::nullopt;
    name.generation = *generation;
    if (plus != std::string_view::npos) {
        std::string_view counter = rest.substr(plus + 1);
        std::size_t minus = counter.find('-');
        auto left = parse_number(counter.substr(0, minus));
        if (!left || *left > 1'000'000) return std::nullopt;
        name.tries_left = static_cast<unsigned>(*left);
        if (minus != std::string_view::npos) {
            auto done = parse_number(counter.substr(minus + 1));
            if (!done || *done > 1'000'000) return std::nullopt;
            name.tries_done = static_cast<unsigned>(*done);
        }
    }
    return name;
}

std::string boot_entry_filename(std::string_view id, std::uint64_t generation, int tries) {
    if (tries > 0) return fmt::format("{}-{}+{}.conf", id, generation, tries);
    return fmt::format("{}-{}.conf", id, generation);
}

Result<std::string> format_boot_entry(const BootEntryConfig& entry, const std::vector<std::string>& helper_files,
                                      std::uint64_t generation, const std::string& slot) {
    auto is_helper_file = [&](const std::string& file) {
        return std::any_of(helper_files.begin(), helper_files.end(),
                           [&](const std::string& helper) { return fs::path(helper).lexically_normal().string() == file; });
    };
    std::vector<std::pair<const char*, std::string>> named{{"linux", entry.linux_file}};
    for (const auto& initrd : entry.initrd) named.emplace_back("initrd", initrd);
    for (const auto& [key, file] : named)
        if (!is_helper_file(file))
            return Problem{ExitCode::bad_host_config,
                           fmt::format("[helpers.entry] {} \"{}\" is not one of the volume's helper files ([helpers] files); "
                                       "no boot entry can name it",
                                       key, file)};
    std::string text = fmt::format("# volwatch: generation {}, slot {}; vrebuild replaces this file\n", generation, slot);
    text += fmt::format("title {} (generation {})\n", expand(entry.title, generation, slot), generation);
    text += fmt::format("sort-key {}\n", entry.id);
    text += fmt::format("version {}\n", generation);
    for (const auto& [key, file] : named) text += fmt::format("{} /volwatch/slot-{}/{}\n", key, slot, file);
    std::string options = expand(entry.options, generation, slot);
    if (!options.empty()) text += fmt::format("options {}\n", options);
    return text;
}

std::optional<BootEntryPaths> parse_boot_entry_paths(std::string_view text) {
    BootEntryPaths paths;
    bool has_linux = false;
    for (std::string_view rest = text, line; next_line(rest, line);) {
        auto field = key_and_value(line);
        if (!field) continue;
        auto [key, value] = *field;
        if (key != "linux" && key != "initrd") continue;
        if (!value.starts_with("/volwatch/slot-") || value.size() < 18 || value[16] != '/') return std::nullopt;
        std::string slot(value.substr(15, 1));
        std::string file(value.substr(17));
        if ((slot != "a" && slot != "b") || !lexical_path_problem(file).empty()) return std::nullopt;
        if (!paths.slot.empty() && paths.slot != slot) return std::nullopt;
        paths.slot = slot;
        if (key == "linux") {
            if (has_linux) return std::nullopt;
            has_linux = true;
            paths.files.insert(paths.files.begin(), fs::path(file).lexically_normal().string());
        } else {
            paths.files.push_back(fs::path(file).lexically_normal().string());
        }
    }
    if (!has_linux) return std::nullopt;
    return paths;
}

void sort_boot_entries(std::vector<BootEntryFile>& entries) {
    // systemd-boot 252, src/boot/efi/boot.c config_entry_compare(), for
    // entries that share a sort-key and (no) machine-id.
    std::sort(entries.begin(), entries.end(), [](const BootEntryFile& a, const BootEntryFile& b) {
        bool a_out = boot_entry_exhausted(a.name), b_out = boot_entry_exhausted(b.name);
        if (a_out != b_out) return b_out;
        if (a.name.generation != b.name.generation) return a.name.generation > b.name.generation;
        if (a.name.tries_left && b.name.tries_left) {
            if (*a.name.tries_left != *b.name.tries_left) return *a.name.tries_left > *b.name.tries_left;
            if (a.name.tries_done.value_or(0) != b.name.tries_done.value_or(0))
                return a.name.tries_done.value_or(0) < b.name.tries_done.value_or(0);
        }
        return a.filename < b.filename;
    });
}

std::vector<BootEntryFile> read_boot_entries(const fs::path& target, std::string_view id) {
    std::vector<BootEntryFile> entries;
    fs::path dir = target / boot_entries_reldir;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string filename = it->path().filename().string();
        auto name = parse_boot_entry_name(filename, id);
        if (!name) continue;
        BootEntryFile entry{filename, *name, std::nullopt, {}};
        if (auto text = read_small_file(it->path())) {
            entry.text = std::move(*text);
            entry.paths = parse_boot_entry_paths(entry.text);
        }
        entries.push_back(std::move(entry));
    }
    sort_boot_entries(entries);
    return entries;
}

std::string exhausted_live_entry_problem(const fs::path& target, const std::vector<BootEntryFile>& entries, const LivePointer& live) {
    const BootEntryFile* failed = nullptr;
    for (const auto& entry : entries)
        if (entry.name.generation == live.generation && boot_entry_exhausted(entry.name)) failed = &entry;
    if (failed == nullptr) return "";
    for (const auto& entry : entries) {
        if (boot_entry_exhausted(entry.name) || entry.name.generation == live.generation) continue;
        return fmt::format("generation {} failed to boot (entry {} has no tries left); the boot loader falls back to generation {}",
                           live.generation, failed->filename, entry.name.generation);
    }
    return fmt::format("generation {} failed to boot (entry {} has no tries left) and {} has no other entry to fall back to",
                       live.generation, failed->filename, target.string());
}

namespace {

// systemd-boot starts the newest entry only while neither loader.conf nor an
// EFI variable names another default. The variable belongs to the machine
// (bootctl set-default); loader.conf lives on the target, so a `default`
// there that does not match the live generation's entry id (the file name
// without its +N-M counter, compared as systemd-boot does, case-folded glob)
// breaks "the default entry names the newest set". "" when it does not.
std::string loader_default_problem(const fs::path& target, const std::string& live_id) {
    auto text = read_small_file(target / "loader/loader.conf");
    if (!text) return "";
    for (std::string_view rest = *text, line; next_line(rest, line);) {
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
        auto field = key_and_value(line);
        if (!field || field->first != "default") continue;
        std::string pattern(field->second);
        if (::fnmatch(pattern.c_str(), live_id.c_str(), FNM_CASEFOLD) == 0) continue;
        return fmt::format("{}/loader/loader.conf sets 'default {}', which does not match the live generation's entry {}: "
                           "systemd-boot will not start the newest set by default (remove the line, or use a pattern such as "
                           "'default {}-*')", target.string(), pattern, live_id, live_id.substr(0, live_id.rfind('-')));
    }
    return "";
}

}  // namespace

BootEntryVerdict check_boot_entries(const fs::path& target, const BootEntryConfig& config, const std::vector<std::string>& helper_files,
                                    const std::optional<LivePointer>& live) {
    BootEntryVerdict verdict;
    auto entries = read_boot_entries(target, config.id);
    if (live) {
        if (std::string failed = exhausted_live_entry_problem(target, entries, *live); !failed.empty()) {
            verdict.error = true;
            verdict.reason = std::move(failed);
            return verdict;
        }
    }
    for (const auto& entry : entries) {
        std::string problem = entry.paths ? slot_of_generation_problem(target, entry)
                                          : fmt::format("boot entry {} names no volwatch slot (no linux line, or a path "
                                                        "outside /volwatch/slot-a/ and /volwatch/slot-b/)", entry.filename);
        if (!problem.empty()) {
            verdict.error = true;
            verdict.reason = fmt::format("{} on {}", problem, target.string());
            return verdict;
        }
    }
    if (!live) return verdict;
    auto expected = format_boot_entry(config, helper_files, live->generation, live->slot);
    if (!expected) {
        verdict.error = true;
        verdict.reason = expected.problem().message;
        return verdict;
    }
    if (std::string problem = loader_default_problem(target, boot_entry_filename(config.id, live->generation, 0)); !problem.empty()) {
        verdict.error = true;
        verdict.reason = std::move(problem);
        return verdict;
    }
    const BootEntryFile* current = nullptr;
    for (const auto& entry : entries)
        if (entry.name.generation == live->generation && current == nullptr) current = &entry;
    if (current == nullptr) {
        verdict.stale = true;
        verdict.reason = fmt::format("{} has no boot entry for its live generation {} ({}/{})", target.string(), live->generation,
                                     boot_entries_reldir, boot_entry_filename(config.id, live->generation, config.tries));
    } else if (current->text != *expected) {
        verdict.stale = true;
        verdict.reason = fmt::format("boot entry {} on {} differs from what the host config asks now ([helpers.entry])",
                                     current->filename, target.string());
    }
    return verdict;
}

Status remove_boot_entries_of_slot(const fs::path& target, std::string_view id, const std::string& slot) {
    fs::path dir = target / boot_entries_reldir;
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir_fd) {
        if (errno == ENOENT) return success();
        return Problem{ExitCode::internal, fmt::format("{}: {}", dir.string(), std::strerror(errno))};
    }
    bool removed = false;
    for (const auto& entry : read_boot_entries(target, id)) {
        if (!entry.paths || entry.paths->slot != slot) continue;
        if (::unlinkat(dir_fd.get(), entry.filename.c_str(), 0) != 0 && errno != ENOENT)
            return Problem{ExitCode::internal, fmt::format("{}/{}: cannot remove: {}", dir.string(), entry.filename, std::strerror(errno))};
        removed = true;
    }
    if (removed) return fsync_dir(dir_fd.get(), dir);
    return success();
}

Status write_boot_entry(const fs::path& target, const std::string& filename, std::string_view text) {
    UniqueFd parent(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent) return Problem{ExitCode::internal, fmt::format("{}: {}", target.string(), std::strerror(errno))};
    fs::path shown = target;
    for (const char* part : {"loader", "entries"}) {
        // A directory created here is made durable in its parent before
        // anything is written into it.
        if (::mkdirat(parent.get(), part, 0755) == 0) {
            if (auto synced = fsync_dir(parent.get(), shown); !synced) return synced;
        } else if (errno != EEXIST) {
            return Problem{ExitCode::internal, fmt::format("{}/{}: cannot create: {}", shown.string(), part, std::strerror(errno))};
        }
        UniqueFd next(::openat(parent.get(), part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        shown /= part;
        if (!next) return Problem{ExitCode::internal, fmt::format("{}: not a plain directory: {}", shown.string(), std::strerror(errno))};
        parent = std::move(next);
    }
    // The temporary is ".<name>.tmp.<pid>": systemd-boot skips names that
    // start with '.' or do not end in ".conf".
    if (auto written = write_file_atomically(parent.get(), filename, text); !written)
        return Problem{ExitCode::internal, fmt::format("{}/{}", shown.string(), written.problem().message)};
    return success();
}

}  // namespace volwatch
