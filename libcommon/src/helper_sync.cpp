#include "volwatch/helper_sync.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>

#include "volwatch/boot_entries.hpp"
#include "volwatch/digest.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/fsutil.hpp"
#include "volwatch/safe_path.hpp"

namespace volwatch {
namespace {

namespace fs = std::filesystem;

// Room left for directory entries and the manifest beside the files.
constexpr std::uint64_t metadata_allowance = 256 * 1024;

FileTime to_ns(const struct timespec& ts) { return static_cast<FileTime>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

struct SourceFile {
    std::string relpath;  // normalised
    UniqueFd fd;          // on the volume, or for a held-back file its live copy
    struct stat st {};
    const HeldBackFile* held = nullptr;
    std::string kept_hash;  // a held-back file's hash in the live manifest
};

std::string file_list(const std::vector<HeldBackFile>& files) {
    std::string out;
    for (const auto& file : files) out += (out.empty() ? "" : ", ") + file.file;
    return out;
}

// True when the set this run would write equals the live one: every file
// not held back is what the bootstamp says was copied into the live slot,
// and its copy there is intact. Then only held-back files differ, and a new
// generation would change nothing.
bool only_held_back_differ(const std::vector<SourceFile>& files, const LivePointer& live,
                           const std::optional<Bootstamp>& stamp, const fs::path& target) {
    if (!stamp || stamp->generation != live.generation) return false;
    if (stamp->files.size() != files.size() || live.manifest.files.size() != files.size()) return false;
    for (const auto& file : files) {
        auto stamped = stamp->files.find(file.relpath);
        auto sealed = live.manifest.files.find(file.relpath);
        if (stamped == stamp->files.end() || sealed == live.manifest.files.end() || stamped->second.hash != sealed->second.hash ||
            stamped->second.size != sealed->second.size)
            return false;
        if (file.held != nullptr) continue;
        if (static_cast<std::uint64_t>(file.st.st_size) != stamped->second.size || to_ns(file.st.st_mtim) != stamped->second.mtime ||
            to_ns(file.st.st_ctim) != stamped->second.ctime)
            return false;
        fs::path copy = target / "volwatch" / ("slot-" + live.slot) / file.relpath;
        UniqueFd fd(::open(copy.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (!fd) return false;
        auto hash = digest_file(fd.get());
        if (!hash || *hash != sealed->second.hash) return false;
    }
    return true;
}

std::uint64_t rounded(std::uint64_t size, std::uint64_t block) {
    if (block == 0) return size;
    return (size + block - 1) / block * block;
}

std::uint64_t bytes_in(const fs::path& dir, std::uint64_t block) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->is_regular_file(ec)) total += rounded(it->file_size(ec), block);
    }
    return total;
}

Status fsync_path(const fs::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd || ::fsync(fd.get()) != 0)
        return Problem{ExitCode::internal, fmt::format("{}: fsync: {}", path.string(), std::strerror(errno))};
    return success();
}

// Empties `dir` so that the file system on disk is consistent at every
// instant, even on vfat, which orders none of its metadata writes: each
// directory's entries are removed and that directory fsynced before the
// directory itself is removed and its parent fsynced. Without this a FAT
// block that frees a cluster can reach the disk before the block that drops
// the entry naming it (the next copy's fsync writes the shared FAT blocks),
// and after a power cut a directory names free clusters: the kernel then
// refuses to delete it (EIO, the ESP remounted read-only) and the next sync
// fails (found by tests/vm/sd-boot.sh).
Status empty_directory(const fs::path& dir) {
    std::error_code ec;
    std::vector<fs::directory_entry> children;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) children.push_back(*it);
    if (ec) return Problem{ExitCode::internal, fmt::format("{}: cannot clear: {}", dir.string(), ec.message())};
    if (children.empty()) return success();
    for (const auto& child : children) {
        if (child.is_directory(ec) && !child.is_symlink(ec)) {
            if (auto emptied = empty_directory(child.path()); !emptied) return emptied;
        }
        fs::remove(child.path(), ec);
        if (ec) return Problem{ExitCode::internal, fmt::format("{}: cannot clear: {}", child.path().string(), ec.message())};
    }
    return fsync_path(dir);
}

// Copies `source` to `destination` (created new), returning its content digest.
Result<std::string> copy_file(int source_fd, const fs::path& destination, std::uint64_t* copied) {
    UniqueFd out(::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!out) return Problem{ExitCode::internal, fmt::format("{}: cannot create: {}", destination.string(), std::strerror(errno))};
    // Allocate every cluster first and make the allocation durable: on vfat
    // the file's directory entry and the FAT blocks of its chain then reach
    // the disk together, before the data, instead of in whatever order
    // writeback picks while the copy runs. It also fails early when the
    // target is full. Where preallocation is not supported, copy anyway.
    struct stat source_st {};
    if (::fstat(source_fd, &source_st) == 0 && source_st.st_size > 0) {
        if (::fallocate(out.get(), FALLOC_FL_KEEP_SIZE, 0, source_st.st_size) == 0) {
            if (::fsync(out.get()) != 0)
                return Problem{ExitCode::internal, fmt::format("{}: fsync: {}", destination.string(), std::strerror(errno))};
        } else if (errno != EOPNOTSUPP && errno != ENOSYS) {
            return Problem{ExitCode::internal, fmt::format("{}: fallocate: {}", destination.string(), std::strerror(errno))};
        }
    }
    Digest digest;
    std::vector<char> buffer(1 << 20);
    off_t offset = 0;
    for (;;) {
        ssize_t n = ::pread(source_fd, buffer.data(), buffer.size(), offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Problem{ExitCode::internal, fmt::format("read: {}", std::strerror(errno))};
        if (n == 0) break;
        digest.update(buffer.data(), static_cast<std::size_t>(n));
        for (ssize_t done = 0; done < n;) {
            ssize_t w = ::write(out.get(), buffer.data() + done, static_cast<std::size_t>(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return Problem{ExitCode::internal, fmt::format("{}: write: {}", destination.string(), std::strerror(errno))};
            done += w;
        }
        offset += n;
        *copied += static_cast<std::uint64_t>(n);
    }
    if (::fsync(out.get()) != 0) return Problem{ExitCode::internal, fmt::format("{}: fsync: {}", destination.string(), std::strerror(errno))};
    return digest.hex();
}

Status write_pointer(const fs::path& dir, const std::string& slot, std::uint64_t generation) {
    // current.new is written whole and fsynced, then renamed over current.
    // Readers accept either file (the check line rejects a torn one), so a
    // crash anywhere in here leaves a valid pointer to a complete slot.
    fs::path staged = dir / "current.new";
    UniqueFd fd(::open(staged.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!fd) return Problem{ExitCode::internal, fmt::format("{}: {}", staged.string(), std::strerror(errno))};
    std::string text = format_pointer(slot, generation);
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0)
        return Problem{ExitCode::internal, fmt::format("{}: {}", staged.string(), std::strerror(errno))};
    if (auto synced = fsync_path(dir); !synced) return synced;
    if (::rename(staged.c_str(), (dir / "current").c_str()) != 0)
        return Problem{ExitCode::internal, fmt::format("{}: rename: {}", staged.string(), std::strerror(errno))};
    // fsync the renamed file itself, before the directory: on vfat the
    // directory entry of `current` is rewritten (start cluster, size) only
    // when the renamed inode is written back, and a directory fsync does not
    // write it; until then the entry on disk names the old file's freed
    // clusters, which the next copy reuses (found by tests/vm/power-loss.sh).
    if (::fsync(fd.get()) != 0)
        return Problem{ExitCode::internal, fmt::format("{}: fsync: {}", (dir / "current").string(), std::strerror(errno))};
    return fsync_path(dir);
}

}  // namespace

std::string_view to_string(HelperOutcome outcome) {
    switch (outcome) {
    case HelperOutcome::updated: return "updated";
    case HelperOutcome::unchanged: return "unchanged";
    case HelperOutcome::would_update: return "would-update";
    case HelperOutcome::failed: return "failed";
    case HelperOutcome::held_back: return "held-back";
    }
    return "failed";
}

std::vector<HeldBackFile> held_back_files(const VolumeConfig& config, const FailedCaches& failed) {
    std::vector<HeldBackFile> held;
    if (failed.empty()) return held;
    for (const auto& relpath : config.helper_files) {
        HeldBackFile file{fs::path(relpath).lexically_normal().string(), {}, ""};
        auto declared = config.helper_depends.find(file.file);
        for (const auto& cache : config.caches) {
            auto why = failed.find(cache.name);
            if (why == failed.end()) continue;
            std::string product = fs::path(cache.product).lexically_normal().string();
            while (product.size() > 1 && product.back() == '/') product.pop_back();
            bool is_product = file.file == product || file.file.starts_with(product + "/");
            bool listed = declared != config.helper_depends.end() &&
                          std::find(declared->second.begin(), declared->second.end(), cache.name) != declared->second.end();
            if (!is_product && !listed) continue;
            file.caches.push_back(cache.name);
            if (file.reason.empty())
                file.reason = is_product ? fmt::format("the product of cache {}, which {}", cache.name, why->second)
                                         : fmt::format("depends on cache {} ([helpers] depends), which {}", cache.name, why->second);
        }
        if (file.caches.size() > 1)
            file.reason += fmt::format(" (and {} more failed cache{})", file.caches.size() - 1, file.caches.size() == 2 ? "" : "s");
        if (!file.caches.empty()) held.push_back(std::move(file));
    }
    return held;
}

HelperSyncResult sync_helper(int root_fd, const Volume& volume, const VolumeConfig& config, const HelperTarget& helper,
                             const HelperSyncOptions& options) {
    const fs::path& target = helper.path;
    auto started = std::chrono::steady_clock::now();
    HelperSyncResult result;
    result.target = target;
    auto finish = [&](HelperOutcome outcome, std::string message) {
        result.outcome = outcome;
        result.message = std::move(message);
        if (outcome == HelperOutcome::failed) result.held_back.clear();  // nothing was kept: nothing was written
        if (outcome == HelperOutcome::held_back) result.files.clear();   // nor copied
        result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        return result;
    };
    struct stat target_stat {};
    if (::stat(target.c_str(), &target_stat) != 0 || !S_ISDIR(target_stat.st_mode))
        return finish(HelperOutcome::failed, fmt::format("helper target {} is missing or not mounted", target.string()));
    // An unmounted ESP leaves a bare /boot/efi on /: copying there would
    // look like success while the real helper is never updated.
    auto mount = probe_helper_mount(target);
    if (!mount) return finish(HelperOutcome::failed, fmt::format("helper target {}: cannot examine it: {}", target.string(), std::strerror(errno)));
    std::string unmounted = helper_mount_problem(helper, *mount, read_bootstamp(root_fd, stamp_identity(helper)),
                                                 read_live_pointer(target).has_value(), options.force);
    if (!unmounted.empty()) return finish(HelperOutcome::failed, std::move(unmounted));

    std::vector<SourceFile> files;
    std::uint64_t new_bytes = 0;
    for (const auto& relpath : config.helper_files) {
        SourceFile file;
        file.relpath = fs::path(relpath).lexically_normal().string();
        // A held-back file is not read from the volume at all: a failed
        // rebuilder may have left it missing or half written there.
        for (const auto& held : options.held_back)
            if (held.file == file.relpath) file.held = &held;
        if (file.held != nullptr) {
            result.held_back.push_back(*file.held);
            files.push_back(std::move(file));
            continue;
        }
        auto fd = open_beneath(root_fd, relpath, O_RDONLY | O_NONBLOCK);
        if (!fd || ::fstat(fd->get(), &file.st) != 0 || !S_ISREG(file.st.st_mode))
            return finish(HelperOutcome::failed, fmt::format("helper file {} is missing or not a regular file on the volume", relpath));
        file.fd = std::move(*fd);
        new_bytes += static_cast<std::uint64_t>(file.st.st_size);
        result.files.push_back(file.relpath);
        files.push_back(std::move(file));
    }

    // A boot entry names helper files; one that is not among them is this
    // target's error, found before anything is written.
    if (helper.entry) {
        if (auto text = format_boot_entry(*helper.entry, config.helper_files, 1, "a"); !text)
            return finish(HelperOutcome::failed, fmt::format("helper target {}: {}; nothing written", target.string(), text.problem().message));
    }

    auto live = read_live_pointer(target);
    // A live generation that failed to boot: the boot loader now boots the
    // spare slot, the only set known to boot, which this sync would reuse.
    if (helper.entry && live && !options.force) {
        std::string failed = exhausted_live_entry_problem(target, read_boot_entries(target, helper.entry->id), *live);
        if (!failed.empty())
            return finish(HelperOutcome::failed,
                          fmt::format("helper target {}: {}; refusing to overwrite that set (vrebuild --force does)", target.string(), failed));
    }
    if (!options.force) {
        HelperVerdict verdict = check_helper(root_fd, config, helper, true);
        if (verdict.state == CacheState::clean) {
            // Held-back files equal their copies here: nothing is held back.
            result.generation = verdict.generation;
            result.files.clear();
            result.held_back.clear();
            return finish(HelperOutcome::unchanged, "up to date");
        }
    }
    // The new slot must be a complete set: a held-back file keeps the live
    // slot's copy, so a target without one cannot be synced this time.
    std::size_t kept = 0;
    for (auto& file : files) {
        if (file.held == nullptr) continue;
        ++kept;
        if (!live)
            return finish(HelperOutcome::held_back,
                          fmt::format("{} cannot be synced this time: it has no complete set yet to keep the held-back {} from",
                                      target.string(), file_list(result.held_back)));
        auto sealed = live->manifest.files.find(file.relpath);
        if (sealed == live->manifest.files.end())
            return finish(HelperOutcome::held_back,
                          fmt::format("{} cannot be synced this time: its live set (generation {}) has no {} to keep while it is held back",
                                      target.string(), live->generation, file.relpath));
        fs::path copy = target / "volwatch" / ("slot-" + live->slot) / file.relpath;
        UniqueFd fd(::open(copy.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (!fd || ::fstat(fd.get(), &file.st) != 0 || !S_ISREG(file.st.st_mode) ||
            static_cast<std::uint64_t>(file.st.st_size) != sealed->second.size)
            return finish(HelperOutcome::failed,
                          fmt::format("the live copy of the held-back {} on {} is missing or differs from its manifest; the helper "
                                      "cannot be synced this time", file.relpath, target.string()));
        file.fd = std::move(fd);
        file.kept_hash = sealed->second.hash;
        new_bytes += static_cast<std::uint64_t>(file.st.st_size);
    }
    std::optional<Bootstamp> old_stamp = kept > 0 ? read_bootstamp(root_fd, target) : std::nullopt;
    // A live entry that is missing or out of date still needs the new
    // generation, even when only held-back files differ otherwise.
    bool entry_stale = helper.entry && kept > 0 && check_boot_entries(target, *helper.entry, config.helper_files, live).stale;
    if (kept > 0 && !options.force && !entry_stale && only_held_back_differ(files, *live, old_stamp, target)) {
        result.generation = live->generation;
        result.files.clear();
        return finish(HelperOutcome::held_back, fmt::format("only held-back files differ from the live set; {} keeps generation {}",
                                                            target.string(), live->generation));
    }
    result.bytes = new_bytes;
    std::string slot = live && live->slot == "a" ? "b" : "a";
    fs::path base = target / "volwatch";
    fs::path slot_dir = base / ("slot-" + slot);
    std::uint64_t generation = (live ? live->generation : 0) + 1;
    int stamp_error = 0;
    if (auto fd = open_beneath(root_fd, bootstamp_relpath(stamp_identity(helper)), O_RDONLY | O_NONBLOCK, &stamp_error)) {
        char buffer[1 << 16];
        ssize_t n = ::read(fd->get(), buffer, sizeof buffer);
        if (n > 0) {
            if (auto stamp = parse_bootstamp(std::string_view(buffer, static_cast<std::size_t>(n))))
                generation = std::max(generation, stamp->generation + 1);
        }
    }

    struct statvfs fs_stat {};
    if (::statvfs(target.c_str(), &fs_stat) != 0)
        return finish(HelperOutcome::failed, fmt::format("{}: statvfs: {}", target.string(), std::strerror(errno)));
    std::uint64_t block = fs_stat.f_frsize ? fs_stat.f_frsize : fs_stat.f_bsize;
    std::uint64_t available = static_cast<std::uint64_t>(fs_stat.f_bavail) * block;
    std::uint64_t reclaimable = bytes_in(slot_dir, block);
    std::uint64_t needed = metadata_allowance;
    for (const auto& file : files) needed += rounded(static_cast<std::uint64_t>(file.st.st_size), block);
    if (available + reclaimable < needed)
        return finish(HelperOutcome::failed,
                      fmt::format("not enough room on {} for the new set beside the live one: need {} bytes, {} available; "
                                  "helper left unchanged", target.string(), needed, available + reclaimable));
    if (options.dry_run) {
        result.generation = generation;
        return finish(HelperOutcome::would_update,
                      kept == 0 ? fmt::format("would copy {} files ({} bytes) into slot {}", files.size(), new_bytes, slot)
                                : fmt::format("would copy {} files and keep {} held-back from generation {} ({} bytes) into slot {}",
                                              files.size() - kept, kept, live->generation, new_bytes, slot));
    }

    std::error_code ec;
    fs::create_directories(base, ec);
    if (ec) return finish(HelperOutcome::failed, fmt::format("{}: {}", base.string(), ec.message()));
    // 0. A crash may have left the live pointer only in current.new. Move it
    // to current first: step 4 rewrites current.new, which must then never
    // be the only file naming the live slot.
    if (live && live->pointer_file == "current.new") {
        if (::rename((base / "current.new").c_str(), (base / "current").c_str()) != 0)
            return finish(HelperOutcome::failed, fmt::format("{}: rename: {}", base.string(), std::strerror(errno)));
        // The renamed file first, then the directory (see write_pointer).
        if (auto synced = fsync_path(base / "current"); !synced) return finish(HelperOutcome::failed, synced.problem().message);
        if (auto synced = fsync_path(base); !synced) return finish(HelperOutcome::failed, synced.problem().message);
    }

    // 1. Remove the boot entries that name the spare slot, so that no entry
    // ever names a slot that is not sealed; then unseal the slot (manifest
    // first) and empty it.
    if (helper.entry) {
        if (auto removed = remove_boot_entries_of_slot(target, helper.entry->id, slot); !removed)
            return finish(HelperOutcome::failed, removed.problem().message);
    }
    if (fs::exists(slot_dir / helper_manifest_name, ec)) {
        fs::remove(slot_dir / helper_manifest_name, ec);
        if (auto synced = fsync_path(slot_dir); !synced) return finish(HelperOutcome::failed, synced.problem().message);
    }
    if (fs::is_directory(fs::symlink_status(slot_dir, ec))) {
        if (auto emptied = empty_directory(slot_dir); !emptied) return finish(HelperOutcome::failed, emptied.problem().message);
    } else {
        fs::remove(slot_dir, ec);
        if (ec) return finish(HelperOutcome::failed, fmt::format("{}: cannot clear: {}", slot_dir.string(), ec.message()));
        fs::create_directory(slot_dir, ec);
        if (ec) return finish(HelperOutcome::failed, fmt::format("{}: {}", slot_dir.string(), ec.message()));
        // The new directory's entry and its cluster, before anything in it.
        if (auto synced = fsync_path(slot_dir); !synced) return finish(HelperOutcome::failed, synced.problem().message);
        if (auto synced = fsync_path(base); !synced) return finish(HelperOutcome::failed, synced.problem().message);
    }

    // 2. Copy and fsync every file, then every directory they live in.
    HelperManifest manifest;
    manifest.volume = volume.id.value;
    manifest.generation = generation;
    Bootstamp stamp;
    stamp.target = stamp_identity(helper).lexically_normal().string();
    stamp.generation = generation;
    stamp.mount_root = mount->mount_root;
    stamp.filesystem = mount->filesystem;
    std::vector<fs::path> directories{slot_dir};
    std::uint64_t copied = 0;
    for (const auto& file : files) {
        fs::path destination = slot_dir / file.relpath;
        fs::create_directories(destination.parent_path(), ec);
        if (ec) return finish(HelperOutcome::failed, fmt::format("{}: {}", destination.parent_path().string(), ec.message()));
        for (fs::path dir = destination.parent_path(); dir != slot_dir && dir.has_relative_path(); dir = dir.parent_path())
            directories.push_back(dir);
        auto hash = copy_file(file.fd.get(), destination, &copied);
        if (!hash) return finish(HelperOutcome::failed, hash.problem().message);
        if (file.held != nullptr) {
            // Checked on the bytes copied, not before: nothing can slip in between.
            if (*hash != file.kept_hash)
                return finish(HelperOutcome::failed,
                              fmt::format("the live copy of the held-back {} on {} differs from its manifest (changed behind "
                                          "volwatch's back); the helper cannot be synced this time", file.relpath, target.string()));
            // The previous stamp entry if it describes this very copy (the
            // volume file unchanged since keeps matching it), else one that
            // cannot match: the target stays stale for this file until a run
            // in which its cache succeeds copies it.
            StampedFile kept_stamp{static_cast<std::uint64_t>(file.st.st_size), 0, 0, *hash};
            if (old_stamp && old_stamp->generation == live->generation) {
                auto previous = old_stamp->files.find(file.relpath);
                if (previous != old_stamp->files.end() && previous->second.hash == *hash && previous->second.size == kept_stamp.size)
                    kept_stamp = previous->second;
            }
            manifest.files[file.relpath] = {kept_stamp.size, 0, 0, *hash};
            stamp.files[file.relpath] = kept_stamp;
            continue;
        }
        // The file may have changed while we copied it: stamp what was read.
        struct stat after {};
        ::fstat(file.fd.get(), &after);
        StampedFile stamped{static_cast<std::uint64_t>(after.st_size), to_ns(after.st_mtim), to_ns(after.st_ctim), *hash};
        if (after.st_size != file.st.st_size || to_ns(after.st_mtim) != to_ns(file.st.st_mtim))
            stamped.mtime = 0;  // changed during the copy: leave the helper stale for the next run
        manifest.files[file.relpath] = {stamped.size, 0, 0, stamped.hash};
        stamp.files[file.relpath] = stamped;
    }
    for (auto it = directories.rbegin(); it != directories.rend(); ++it)
        if (auto synced = fsync_path(*it); !synced) return finish(HelperOutcome::failed, synced.problem().message);

    // 3. Seal the slot with its manifest: from now on it is complete.
    UniqueFd slot_fd(::open(slot_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!slot_fd) return finish(HelperOutcome::failed, fmt::format("{}: {}", slot_dir.string(), std::strerror(errno)));
    if (auto written = write_file_atomically(slot_fd.get(), helper_manifest_name, format_manifest(manifest)); !written)
        return finish(HelperOutcome::failed, written.problem().message);

    // 4. The switch: the boot entry naming the sealed slot (the boot loader's
    // default from its rename on), then the pointer.
    if (helper.entry) {
        auto text = format_boot_entry(*helper.entry, config.helper_files, generation, slot);
        if (!text) return finish(HelperOutcome::failed, text.problem().message);
        if (auto written = write_boot_entry(target, boot_entry_filename(helper.entry->id, generation, helper.entry->tries), *text); !written)
            return finish(HelperOutcome::failed, written.problem().message);
    }
    if (auto switched = write_pointer(base, slot, generation); !switched)
        return finish(HelperOutcome::failed, switched.problem().message);

    // 5. Record on the volume what was copied.
    auto stamps = make_dirs_beneath(root_fd, bootstamp_reldir);
    if (!stamps) return finish(HelperOutcome::failed, stamps.problem().message);
    std::string stamp_name = fs::path(bootstamp_relpath(stamp_identity(helper))).filename().string();
    if (auto written = write_file_atomically(stamps->get(), stamp_name, format_bootstamp(stamp)); !written)
        return finish(HelperOutcome::failed, written.problem().message);

    result.generation = generation;
    result.bytes = copied;
    if (kept > 0)
        return finish(HelperOutcome::updated, fmt::format("copied {} files and kept {} held-back from generation {} ({} bytes) into slot {}, "
                                                          "generation {}", files.size() - kept, kept, live->generation, copied, slot, generation));
    return finish(HelperOutcome::updated, fmt::format("copied {} files ({} bytes) into slot {}, generation {}", files.size(), copied, slot, generation));
}

}  // namespace volwatch
