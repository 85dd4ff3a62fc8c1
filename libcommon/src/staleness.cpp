#include "volwatch/staleness.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <mutex>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "json_text.hpp"

#include "volwatch/digest.hpp"
#include "volwatch/duration.hpp"
#include "volwatch/fsutil.hpp"
#include "volwatch/rebuilder_outputs.hpp"
#include "volwatch/safe_path.hpp"

namespace volwatch {
namespace {

constexpr std::size_t max_record_bytes = 1024 * 1024;
// Past this depth a walker hands directories to the shared queue instead of
// recursing, so open descriptors stay bounded on pathological trees.
constexpr int max_recursion_depth = 128;

FileTime to_ns(const struct timespec& ts) { return static_cast<FileTime>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

std::uint64_t hash_bytes(const char* data, std::size_t size, std::uint64_t seed) {
    std::uint64_t hash = seed ^ 0xcbf29ce484222325ULL;
    for (std::size_t i = 0; i < size; ++i) {
        hash ^= static_cast<unsigned char>(data[i]);
        hash *= 0x100000001b3ULL;
    }
    return mix64(hash);
}

struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
    [[nodiscard]] bool matches(const struct stat& st) const { return ino != 0 && st.st_ino == ino && st.st_dev == dev; }
};

// What one walker has seen; merged at the end (the combination is
// order-independent, so threads may visit entries in any order).
struct Tally {
    std::uint64_t sum = 0;
    std::uint64_t mixed = 0;
    std::uint64_t entries = 0;
    FileTime newest = 0;
    bool newest_is_dir = false;
    std::string newest_dir;
    std::string newest_name;

    void add(std::uint64_t path_hash, const struct stat& st, std::string_view dir, std::string_view name,
             bool volatile_times = false) {
        std::uint64_t h = path_hash;
        if (volatile_times) {
            // The directory that holds the product: writing the product changes
            // its times and size, so only its identity counts.
            h = mix64(h ^ static_cast<std::uint64_t>(st.st_mode & S_IFMT) ^ (static_cast<std::uint64_t>(st.st_ino) << 1));
            sum += h;
            mixed ^= mix64(h + 0x9e3779b97f4a7c15ULL);
            ++entries;
            return;
        }
        h = mix64(h ^ (static_cast<std::uint64_t>(st.st_mode & S_IFMT) << 32) ^ static_cast<std::uint64_t>(st.st_size));
        h = mix64(h ^ static_cast<std::uint64_t>(to_ns(st.st_mtim)));
        h = mix64(h ^ static_cast<std::uint64_t>(to_ns(st.st_ctim)) ^ (static_cast<std::uint64_t>(st.st_ino) << 1));
        sum += h;
        mixed ^= mix64(h + 0x9e3779b97f4a7c15ULL);
        ++entries;
        FileTime t = std::max(to_ns(st.st_mtim), to_ns(st.st_ctim));
        // On a tie (coarse file-system clocks) name the file, not the directory
        // whose times changed because the file was created in it.
        if (t > newest || (t == newest && newest_is_dir && !S_ISDIR(st.st_mode))) {
            newest = t;
            newest_is_dir = S_ISDIR(st.st_mode);
            newest_dir.assign(dir);
            newest_name.assign(name);
        }
    }

    void merge(const Tally& other) {
        sum += other.sum;
        mixed ^= other.mixed;
        entries += other.entries;
        if (other.newest > newest || (other.newest == newest && newest_is_dir && !other.newest_is_dir)) {
            newest = other.newest;
            newest_is_dir = other.newest_is_dir;
            newest_dir = other.newest_dir;
            newest_name = other.newest_name;
        }
    }
};

// A directory beneath a source that cannot be opened or read. Walking on
// without it would count fewer entries than the builder saw and report a
// false "stale"; the cache cannot be checked, and EACCES or EPERM (vcheck run
// by an ordinary user on a tree root built) says so with its own exit code.
Problem unreadable(std::string_view relpath, int error) {
    bool denied = error == EACCES || error == EPERM;
    return Problem{denied ? ExitCode::permission : ExitCode::internal,
                   fmt::format("cannot read {}: {}", relpath, std::strerror(error))};
}

struct DirTask {
    std::string relpath;
    std::uint64_t hash = 0;
    bool top_level = false;  // a configured source: symlinks inside the volume are followed
};

// The kernel's record for getdents64; the name starts right after d_type
// (offset 19), not at sizeof of the fixed part, which is padded to 24.
struct linux_dirent64_header {
    std::uint64_t d_ino;
    std::int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[1];
};
constexpr std::size_t dirent_name_offset = offsetof(linux_dirent64_header, d_name);

// A directory that holds declared outputs: the rebuilder's writes change its
// times (and size) on every run, so, like the product's directory, only its
// identity counts; its entries are still counted one by one.
bool holds_outputs(const OutputMatcher& outputs, const struct stat& st, std::string_view dir, const char* name) {
    if (outputs.empty() || !S_ISDIR(st.st_mode)) return false;
    std::string path = dir.empty() ? std::string(name) : fmt::format("{}/{}", dir, name);
    return outputs.in_directory(path).holds_outputs();
}

// A parallel depth-first walk of deep sources. Each worker recurses with the
// parent's fd open (openat of a name: no path lookups), and hands subtrees to
// the shared queue while another worker is idle.
class DeepWalk {
public:
    DeepWalk(int root_fd, dev_t device, Identity product, Identity product_dir, Identity state_dir,
             const OutputMatcher& outputs, unsigned threads)
        : root_fd_(root_fd), device_(device), product_(product), product_dir_(product_dir), state_dir_(state_dir),
          outputs_(outputs), threads_(std::max(1u, threads)) {}

    void add_root(std::string relpath, std::uint64_t hash) { queue_.push_back({std::move(relpath), hash, true}); }

    Result<Tally> run() {
        std::vector<Tally> tallies(threads_);
        std::vector<std::thread> workers;
        for (unsigned i = 1; i < threads_; ++i) workers.emplace_back([this, &tallies, i] { work(tallies[i]); });
        work(tallies[0]);
        for (auto& worker : workers) worker.join();
        if (!error_.empty()) return Problem{error_code_, error_};
        Tally total;
        for (const auto& tally : tallies) total.merge(tally);
        return total;
    }

private:
    void work(Tally& tally) {
        std::vector<char> buffer(1 << 16);
        for (;;) {
            DirTask task;
            {
                std::unique_lock lock(mutex_);
                ++idle_;
                idle_hint_ = idle_;
                cv_.wait(lock, [&] { return !queue_.empty() || idle_ == threads_ || failed_; });
                if (queue_.empty() || failed_) {
                    cv_.notify_all();
                    return;
                }
                --idle_;
                idle_hint_ = idle_;
                task = std::move(queue_.back());
                queue_.pop_back();
            }
            int error = 0;
            int flags = O_RDONLY | O_DIRECTORY | (task.top_level ? 0 : O_NOFOLLOW);
            auto fd = open_beneath(root_fd_, task.relpath, flags, &error);
            if (!fd) {
                if (error == ENOENT || error == ENOTDIR) continue;  // vanished while we walked
                fail(error == EACCES || error == EPERM ? unreadable(task.relpath, error) : fd.problem());
                continue;
            }
            walk(fd->get(), task.relpath, task.hash, 0, tally, buffer);
        }
    }

    void fail(const Problem& problem) {
        std::lock_guard lock(mutex_);
        if (error_.empty()) {
            error_ = problem.message;
            error_code_ = problem.code;
        }
        failed_ = true;
        cv_.notify_all();
    }

    void walk(int dir_fd, const std::string& relpath, std::uint64_t dir_hash, int depth, Tally& tally,
              std::vector<char>& buffer) {
        std::vector<std::pair<std::string, std::uint64_t>> subdirs;
        DirectoryOutputs here = outputs_.in_directory(relpath);
        for (;;) {
            long n = ::syscall(SYS_getdents64, dir_fd, buffer.data(), buffer.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                fail(unreadable(relpath, errno));
                return;
            }
            if (n == 0) break;
            for (long offset = 0; offset < n;) {
                auto* entry = reinterpret_cast<linux_dirent64_header*>(buffer.data() + offset);
                const char* name = buffer.data() + offset + dirent_name_offset;
                offset += entry->d_reclen;
                if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
                struct stat st {};
                if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // removed meanwhile
                if (product_.matches(st) || state_dir_.matches(st) || here.matches(name)) continue;
                std::size_t length = std::strlen(name);
                std::uint64_t hash = hash_bytes(name, length, dir_hash);
                tally.add(hash, st, relpath, std::string_view(name, length),
                          product_dir_.matches(st) || holds_outputs(outputs_, st, relpath, name));
                // Another mount below a source is not part of this volume.
                if (S_ISDIR(st.st_mode) && st.st_dev == device_) subdirs.emplace_back(std::string(name, length), hash);
            }
        }
        for (auto& [name, hash] : subdirs) {
            std::string child = relpath + "/" + name;
            if (depth >= max_recursion_depth || (idle_hint_.load(std::memory_order_relaxed) > 0 && share(child, hash)))
                continue;
            int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                // Replaced or removed meanwhile: the parent's times show it.
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
                fail(unreadable(child, errno));
                return;
            }
            walk(fd, child, hash, depth + 1, tally, buffer);
            ::close(fd);
            if (failed_) return;
        }
        if (depth >= max_recursion_depth) {
            for (auto& [name, hash] : subdirs) share(relpath + "/" + name, hash);
        }
    }

    bool share(const std::string& relpath, std::uint64_t hash) {
        std::lock_guard lock(mutex_);
        queue_.push_back({relpath, hash});
        cv_.notify_one();
        return true;
    }

    int root_fd_;
    dev_t device_;
    Identity product_;
    Identity product_dir_;
    Identity state_dir_;
    const OutputMatcher& outputs_;
    unsigned threads_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<DirTask> queue_;
    unsigned idle_ = 0;
    std::atomic<unsigned> idle_hint_{0};
    std::atomic<bool> failed_{false};
    std::string error_;
    ExitCode error_code_ = ExitCode::internal;
};

Identity identity_of(int root_fd, std::string_view relpath) {
    auto fd = open_beneath(root_fd, relpath, O_PATH);
    struct stat st {};
    if (!fd || ::fstat(fd->get(), &st) != 0) return {};
    return {st.st_dev, st.st_ino};
}

// The CPUs this process may run on (taskset, cpusets, systemd's
// CPUAffinity=), not all of the machine's: two walkers time-sharing one CPU
// only add switches and queue traffic (measured: 5% slower than one).
unsigned default_threads() {
    unsigned n = 0;
    cpu_set_t allowed {};
    if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0) n = static_cast<unsigned>(CPU_COUNT(&allowed));
    if (n == 0) n = std::thread::hardware_concurrency();
    return std::clamp(n, 1u, 4u);
}

}  // namespace

Result<SourceState> scan_sources(int root_fd, const CacheSpec& cache, unsigned threads) {
    struct stat root_stat {};
    if (::fstat(root_fd, &root_stat) != 0)
        return Problem{ExitCode::internal, fmt::format("volume root: {}", std::strerror(errno))};
    Identity product = identity_of(root_fd, cache.product);
    std::string product_parent = std::filesystem::path(cache.product).parent_path().string();
    Identity product_dir = identity_of(root_fd, product_parent.empty() ? "." : product_parent);
    Identity state_dir = identity_of(root_fd, state_relpath);
    OutputMatcher outputs(cache.outputs);
    SourceState state;
    Tally top;
    DeepWalk deep(root_fd, root_stat.st_dev, product, product_dir, state_dir, outputs,
                  threads == 0 ? default_threads() : threads);
    bool any_deep = false;
    std::vector<char> buffer;

    for (std::size_t i = 0; i < cache.sources.size(); ++i) {
        const std::string& source = cache.sources[i];
        // The top-level name hashes from the source string as written, so a
        // config that names the same tree differently still agrees with itself.
        std::uint64_t hash = hash_bytes(source.data(), source.size(), 0x5eed + i);
        int error = 0;
        auto fd = open_beneath(root_fd, source, O_PATH, &error);
        if (!fd) {
            if (error == EACCES || error == EPERM) return unreadable(source, error);
            if (error != ENOENT && error != ENOTDIR) return fd.problem();
            state.present.push_back(false);
            top.sum += mix64(hash ^ 0xdeadULL);  // "missing" is a state of its own
            continue;
        }
        state.present.push_back(true);
        struct stat st {};
        if (::fstat(fd->get(), &st) != 0) return Problem{ExitCode::internal, fmt::format("{}: {}", source, std::strerror(errno))};
        top.add(hash, st, "", source, product_dir.matches(st) || holds_outputs(outputs, st, "", source.c_str()));
        if (!S_ISDIR(st.st_mode) || product.matches(st) || state_dir.matches(st)) continue;
        if (cache.depth == Depth::deep) {
            deep.add_root(source, hash);
            any_deep = true;
            continue;
        }
        auto dir = open_beneath(root_fd, source, O_RDONLY | O_DIRECTORY, &error);
        if (!dir) return error == EACCES || error == EPERM ? unreadable(source, error) : dir.problem();
        DirectoryOutputs here = outputs.in_directory(source);
        buffer.resize(1 << 16);
        for (;;) {
            long n = ::syscall(SYS_getdents64, dir->get(), buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return unreadable(source, errno);
            if (n == 0) break;
            for (long offset = 0; offset < n;) {
                auto* entry = reinterpret_cast<linux_dirent64_header*>(buffer.data() + offset);
                const char* name = buffer.data() + offset + dirent_name_offset;
                offset += entry->d_reclen;
                if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
                struct stat child {};
                if (::fstatat(dir->get(), name, &child, AT_SYMLINK_NOFOLLOW) != 0) continue;
                if (product.matches(child) || state_dir.matches(child) || here.matches(name)) continue;
                top.add(hash_bytes(name, std::strlen(name), hash), child, source, name,
                        product_dir.matches(child) || holds_outputs(outputs, child, source, name));
            }
        }
    }
    if (any_deep) {
        auto walked = deep.run();
        if (!walked) return walked.problem();
        top.merge(*walked);
    }
    Digest digest;
    digest.update_u64(top.sum);
    digest.update_u64(top.mixed);
    digest.update_u64(top.entries);
    state.digest = digest.hex();
    state.entries = top.entries;
    state.newest = top.newest;
    state.newest_path = top.newest_dir.empty() ? top.newest_name : top.newest_dir + "/" + top.newest_name;
    return state;
}

std::string build_record_relpath(const std::string& cache_name) {
    return fmt::format("{}/{}.json", build_record_reldir, cache_name);
}

std::string format_build_record(const BuildRecord& record) {
    nlohmann::json json = {
        {"version", 1},
        {"started_ns", record.started},
        {"finished", record.finished},
        {"source_digest", record.source_digest},
        {"entries", record.entries},
        {"present_sources", record.present_sources},
        {"config_digest", record.config_digest},
    };
    return json_text(json, 2) + "\n";
}

std::optional<BuildRecord> parse_build_record(std::string_view text) {
    auto json = nlohmann::json::parse(text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return std::nullopt;
    try {
        if (json.at("version").get<int>() != 1) return std::nullopt;
        BuildRecord record;
        record.started = json.at("started_ns").get<FileTime>();
        record.finished = json.value("finished", 0.0);
        record.source_digest = json.at("source_digest").get<std::string>();
        record.entries = json.value("entries", std::uint64_t{0});
        record.present_sources = json.value("present_sources", std::vector<std::string>{});
        record.config_digest = json.at("config_digest").get<std::string>();
        return record;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
}

std::optional<BuildRecord> read_build_record(int root_fd, const std::string& cache_name) {
    auto fd = open_beneath(root_fd, build_record_relpath(cache_name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!fd) return std::nullopt;
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) > max_record_bytes)
        return std::nullopt;
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::read(fd->get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    text.resize(done);
    return parse_build_record(text);
}

namespace {
CacheVerdict check_cache_by_rules(int root_fd, const CacheSpec& cache, const HostConfig& host, unsigned threads);
}  // namespace

Result<BuildRecord> begin_build_record(int root_fd, const CacheSpec& cache, const HostConfig& host, unsigned threads,
                                       SourceState* state) {
    struct timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    BuildRecord record;
    record.started = to_ns(now);
    auto sources = scan_sources(root_fd, cache, threads);
    if (!sources) return sources.problem();
    record.source_digest = sources->digest;
    record.entries = sources->entries;
    for (std::size_t i = 0; i < cache.sources.size(); ++i)
        if (sources->present[i]) record.present_sources.push_back(cache.sources[i]);
    record.config_digest = config_digest(cache, host);
    if (state != nullptr) *state = std::move(*sources);
    return record;
}

std::string describe_change(const SourceState& now, const BuildRecord& record) {
    if (now.newest > record.started)
        return fmt::format("{} is {} newer than the start", now.newest_path,
                           format_span(std::chrono::nanoseconds(now.newest - record.started)));
    if (now.entries != record.entries) return fmt::format("{} entries then, {} now", record.entries, now.entries);
    return "an entry was removed or replaced";
}

Status write_build_record(int root_fd, const std::string& cache_name, const BuildRecord& record) {
    auto dir = make_dirs_beneath(root_fd, build_record_reldir);
    if (!dir) return dir.problem();
    std::string final_name = cache_name + ".json";
    return write_file_atomically(dir->get(), final_name, format_build_record(record));
}

std::string_view to_string(CacheState state) {
    switch (state) {
    case CacheState::clean: return "clean";
    case CacheState::stale: return "stale";
    case CacheState::error: return "error";
    }
    return "error";
}

CacheVerdict check_cache(int root_fd, const CacheSpec& cache, const HostConfig& host, const CheckOptions& options) {
    CacheVerdict verdict = check_cache_by_rules(root_fd, cache, host, options.threads);
    if (!options.force_deep || cache.depth == Depth::deep || verdict.state != CacheState::clean) return verdict;
    CacheSpec deep = cache;
    deep.depth = Depth::deep;
    auto sources = scan_sources(root_fd, deep, options.threads);
    if (!sources) {
        verdict.state = CacheState::error;
        verdict.reason = sources.problem().message;
        verdict.unreadable = sources.problem().code == ExitCode::permission;
        return verdict;
    }
    auto record = read_build_record(root_fd, cache.name);
    FileTime reference = record ? record->started : verdict.product_time;
    if (sources->newest > reference) {
        verdict.state = CacheState::stale;
        verdict.reason = fmt::format("{} is {} newer than the last build of {} (found by --deep)", sources->newest_path,
                                     format_span(std::chrono::nanoseconds(sources->newest - reference)), cache.product);
    }
    return verdict;
}

namespace {
CacheVerdict check_cache_by_rules(int root_fd, const CacheSpec& cache, const HostConfig& host, unsigned threads) {
    CacheVerdict verdict;
    verdict.name = cache.name;
    auto stale = [&](std::string reason) {
        verdict.state = CacheState::stale;
        verdict.reason = std::move(reason);
        return verdict;
    };
    int error = 0;
    auto product = open_beneath(root_fd, cache.product, O_PATH, &error);
    struct stat product_stat {};
    if (product && ::fstat(product->get(), &product_stat) == 0) verdict.product_time = to_ns(product_stat.st_mtim);
    else if (!product && error != ENOENT && error != ENOTDIR) {
        verdict.state = CacheState::error;
        verdict.reason = product.problem().message;
        return verdict;
    }

    auto sources = scan_sources(root_fd, cache, threads);
    if (!sources) {
        verdict.state = CacheState::error;
        verdict.reason = sources.problem().message;
        verdict.unreadable = sources.problem().code == ExitCode::permission;
        return verdict;
    }
    verdict.newest_source = sources->newest;
    if (verdict.product_time == 0 && !product) return stale(fmt::format("product missing ({})", cache.product));

    auto record = read_build_record(root_fd, cache.name);
    verdict.has_record = record.has_value();
    if (!record) {
        if (sources->newest > verdict.product_time)
            return stale(fmt::format("{} is {} newer than {} (no build record; compared with the product's time)",
                                     sources->newest_path, format_span(std::chrono::nanoseconds(sources->newest - verdict.product_time)),
                                     cache.product));
        verdict.reason = "";
        return verdict;
    }
    if (record->config_digest != config_digest(cache, host)) return stale("config changed since the last build");
    if (record->source_digest == sources->digest) return verdict;

    for (std::size_t i = 0; i < cache.sources.size(); ++i) {
        bool was_present = std::find(record->present_sources.begin(), record->present_sources.end(), cache.sources[i]) !=
                           record->present_sources.end();
        if (was_present && !sources->present[i]) return stale(fmt::format("source {} was removed since the last build", cache.sources[i]));
    }
    if (sources->newest > record->started)
        return stale(fmt::format("{} is {} newer than the last build of {}", sources->newest_path,
                                 format_span(std::chrono::nanoseconds(sources->newest - record->started)), cache.product));
    if (sources->entries != record->entries)
        return stale(fmt::format("sources changed since the last build ({} entries then, {} now)", record->entries, sources->entries));
    return stale("sources changed since the last build (an entry was replaced or removed)");
}
}  // namespace

}  // namespace volwatch
