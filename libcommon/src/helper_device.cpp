#include "volwatch/helper_device.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sched.h>
#include <sstream>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <thread>
#include <unistd.h>

#include <blkid.h>
#include <fmt/format.h>

namespace volwatch {
namespace {

namespace fs = std::filesystem;

Problem bad_spec(std::string message) { return Problem{ExitCode::bad_host_config, std::move(message)}; }
Problem target_problem(std::string message) { return Problem{ExitCode::stale, std::move(message)}; }

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// vfat "1234-ABCD", ext4 and GPT "0b1c...-...", NTFS "0123456789ABCDEF".
std::string uuid_problem(std::string_view tag, std::string_view value) {
    if (value.empty()) return fmt::format("{}= names no {}", tag, tag);
    if (value.size() > 64) return fmt::format("{}={}...: too long for a {} (at most 64 characters)", tag, value.substr(0, 16), tag);
    for (char c : value)
        if (!is_hex(c) && c != '-')
            return fmt::format("{}={}: '{}' is not allowed in a {} (hexadecimal digits and '-' only)", tag, value,
                               std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c)), tag);
    if (value.front() == '-' || value.back() == '-' || value.find("--") != std::string_view::npos)
        return fmt::format("{}={}: misplaced '-' in a {}", tag, value, tag);
    return "";
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string read_small(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::string out = text.str();
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
}

// The value of tag `name` probed from `node`, with partition-entry details
// (PART_ENTRY_UUID) when asked for. Fresh from the device, never a cache.
struct Probed {
    std::string type, usage, uuid, label, partuuid;
    bool ok = false;
};
Probed probe_device(const std::string& node) {
    Probed out;
    blkid_probe probe = blkid_new_probe_from_filename(node.c_str());
    if (probe == nullptr) return out;
    blkid_probe_enable_superblocks(probe, 1);
    blkid_probe_set_superblocks_flags(probe, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL);
    blkid_probe_enable_partitions(probe, 1);
    blkid_probe_set_partitions_flags(probe, BLKID_PARTS_ENTRY_DETAILS);
    int rc = blkid_do_safeprobe(probe);
    out.ok = rc >= 0;
    auto value = [&](const char* name) {
        const char* data = nullptr;
        return blkid_probe_lookup_value(probe, name, &data, nullptr) == 0 && data != nullptr ? std::string(data) : std::string();
    };
    if (rc == 0) {
        out.type = value("TYPE");
        out.usage = value("USAGE");
        out.uuid = value("UUID");
        out.label = value("LABEL");
        out.partuuid = value("PART_ENTRY_UUID");
    }
    blkid_free_probe(probe);
    return out;
}

bool matches(const TargetSpec& spec, const Probed& probed) {
    switch (spec.kind) {
    case TargetKind::uuid: return !probed.uuid.empty() && lower(probed.uuid) == lower(spec.value);
    case TargetKind::partuuid: return !probed.partuuid.empty() && lower(probed.partuuid) == lower(spec.value);
    case TargetKind::label: return probed.label == spec.value;
    default: return false;
    }
}

const char* tag_name(TargetKind kind) {
    switch (kind) {
    case TargetKind::uuid: return "UUID";
    case TargetKind::partuuid: return "PARTUUID";
    case TargetKind::label: return "LABEL";
    default: return "";
    }
}

// Every block device the kernel knows, for when libblkid's answer is absent
// or stale (no udev, so no /dev/disk/by-*; a cache file from another boot).
std::vector<std::string> all_block_devices() {
    std::vector<std::string> nodes;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/sys/class/block", ec)) {
        std::string size = read_small(entry.path() / "size");
        if (size.empty() || size == "0") continue;
        std::string name;
        std::istringstream uevent(read_small(entry.path() / "uevent"));
        for (std::string line; std::getline(uevent, line);)
            if (line.rfind("DEVNAME=", 0) == 0) name = line.substr(8);
        if (!name.empty()) nodes.push_back("/dev/" + name);
    }
    std::sort(nodes.begin(), nodes.end());
    return nodes;
}

// The node of the device `spec` names; `unreadable` counts the devices that
// could not be probed (an unprivileged vcheck cannot open block devices).
std::optional<std::string> locate_by_tag(const TargetSpec& spec, int& unreadable) {
    unreadable = 0;
    char* found = blkid_evaluate_tag(tag_name(spec.kind), spec.value.c_str(), nullptr);
    if (found != nullptr) {
        std::string node = found;
        std::free(found);
        if (matches(spec, probe_device(node))) return node;
    }
    for (const auto& node : all_block_devices()) {
        if (::access(node.c_str(), R_OK) != 0) {
            ++unreadable;
            continue;
        }
        if (matches(spec, probe_device(node))) return node;
    }
    return std::nullopt;
}

std::string command_of(long pid) {
    std::string comm = read_small(fmt::format("/proc/{}/comm", pid));
    return comm.empty() ? "?" : comm;
}

// The private mount namespace lives in one thread: unshare(CLONE_NEWNS)
// affects only the calling thread (it implies CLONE_FS, which a thread may
// unshare), the rest of the process keeps the host's view, and the namespace
// with its mount dies with the thread or with the process (kill -9), so
// nothing can stay mounted. Only block devices are mounted here.
template <class Work>
Status in_private_mount(const HelperDevice& device, bool read_only, Work&& work) {
    Status status = success();
    std::thread worker([&] {
        auto fail = [&](std::string message) { status = target_problem(std::move(message)); };
        if (::unshare(CLONE_NEWNS) != 0)
            return fail(fmt::format("cannot create a private mount namespace: {}{}", std::strerror(errno),
                                    errno == EPERM ? " (needs root; under systemd, RestrictNamespaces must allow mnt)" : ""));
        // Propagation first: a shared / would carry our mount to the host.
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
            return fail(fmt::format("cannot make the private mount namespace private: {}", std::strerror(errno)));
        std::string dir = (fs::temp_directory_path() / "volwatch-helper.XXXXXX").string();
        if (::mkdtemp(dir.data()) == nullptr) return fail(fmt::format("mkdtemp: {}", std::strerror(errno)));
        unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME;
        std::string options;
        if (read_only) {
            flags |= MS_RDONLY;
            // A read-only ext3/ext4 mount would still replay a dirty journal.
            if (device.fstype == "ext3" || device.fstype == "ext4") options = "noload";
        } else {
            // Directory changes written synchronously, in the kernel's order:
            // vfat then frees a cluster only after the entry naming it is on
            // disk, and allocates one before an entry names it.
            flags |= MS_DIRSYNC;
        }
        if (::mount(device.node.c_str(), dir.c_str(), device.fstype.c_str(), flags, options.empty() ? nullptr : options.c_str()) != 0) {
            int error = errno;
            ::rmdir(dir.c_str());
            return fail(fmt::format("cannot mount {} ({}){}: {}", device.node, device.fstype, read_only ? " read-only" : "",
                                    std::strerror(error)));
        }
        work(fs::path(dir));
        if (!read_only) {
            UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (!fd || ::syncfs(fd.get()) != 0) fail(fmt::format("syncfs {}: {}", device.node, std::strerror(errno)));
        }
        if (::umount2(dir.c_str(), 0) != 0 && ::umount2(dir.c_str(), MNT_DETACH) != 0)
            fail(fmt::format("cannot unmount {}: {}", device.node, std::strerror(errno)));
        ::rmdir(dir.c_str());
    });
    worker.join();
    return status;
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
}

}  // namespace

Result<TargetSpec> parse_target_spec(std::string_view text) {
    TargetSpec spec;
    spec.text = std::string(text);
    if (text.empty()) return bad_spec("empty target (a directory, UUID=, PARTUUID=, LABEL= or a /dev/ path)");
    for (char c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return bad_spec(fmt::format("target contains the control character \\x{:02x}", static_cast<unsigned char>(c)));
    if (text.front() == '/') {
        std::string normal = fs::path(std::string(text)).lexically_normal().string();
        spec.value = normal;
        spec.text = normal;
        if (normal == "/dev" || normal == "/dev/") return bad_spec("\"/dev\" is a directory of device nodes, not a helper target");
        if (normal.rfind("/dev/", 0) == 0 && normal.back() == '/')
            return bad_spec(fmt::format("\"{}\": a device path may not end in '/'", text));
        spec.kind = normal.rfind("/dev/", 0) == 0 ? TargetKind::device_path : TargetKind::directory;
        return spec;
    }
    std::size_t equals = text.find('=');
    bool tag_like = equals != std::string_view::npos && equals > 0 &&
                    std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(equals),
                                [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; });
    if (!tag_like) {
        if (text.rfind("dev/", 0) == 0)
            return bad_spec(fmt::format("\"{}\" is a relative device path; write /{}", text, text));
        return bad_spec(fmt::format("\"{}\" is not an absolute path (a target is a directory, UUID=, PARTUUID=, LABEL= or a /dev/ path)", text));
    }
    std::string_view tag = text.substr(0, equals);
    std::string_view value = text.substr(equals + 1);
    spec.value = std::string(value);
    if (tag == "UUID" || tag == "PARTUUID") {
        spec.kind = tag == "UUID" ? TargetKind::uuid : TargetKind::partuuid;
        std::string problem = uuid_problem(tag, value);
        if (!problem.empty()) return bad_spec(problem);
        return spec;
    }
    if (tag == "LABEL") {
        spec.kind = TargetKind::label;
        if (value.empty()) return bad_spec("LABEL= names no label");
        if (value.size() > 255) return bad_spec("LABEL=...: too long for a label (at most 255 bytes)");
        if (value.find('/') != std::string_view::npos)
            return bad_spec(fmt::format("LABEL={}: '/' is not allowed in a label", value));
        if (value.front() == ' ' || value.back() == ' ')
            return bad_spec(fmt::format("LABEL=\"{}\": leading or trailing blanks (file systems drop them; write the label as blkid shows it)", value));
        return spec;
    }
    std::string upper(tag);
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (upper != tag && (upper == "UUID" || upper == "PARTUUID" || upper == "LABEL"))
        return bad_spec(fmt::format("unknown tag {}= (tags are upper case: {}=)", tag, upper));
    return bad_spec(fmt::format("unknown tag {}= (known: UUID=, PARTUUID=, LABEL=)", tag));
}

std::string target_spec_problem_now(const TargetSpec& spec) {
    if (spec.kind != TargetKind::device_path) return "";
    struct stat st {};
    if (::stat(spec.value.c_str(), &st) != 0) return "";  // not there yet: a per-target error when it is needed
    if (!S_ISBLK(st.st_mode) && !S_ISDIR(st.st_mode))
        return fmt::format("\"{}\" is under /dev but is not a block device", spec.value);
    return "";
}

std::string fstype_problem(std::string_view fstype) {
    if (fstype.empty()) return "must not be empty";
    if (fstype.size() > 32) return "too long for a file-system type";
    for (char c : fstype)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.')
            return fmt::format("\"{}\" is not a file-system type name (letters, digits, '_' and '.')", fstype);
    return "";
}

namespace {
// The spec of a configured target as it is now: a /dev/ path that is a
// directory (/dev/shm/esp, a tmpfs) is a directory target.
std::optional<TargetSpec> device_spec_of(const HelperTarget& target) {
    auto spec = parse_target_spec(target.path.string());
    if (!spec || spec->kind == TargetKind::directory) return std::nullopt;
    struct stat st {};
    if (spec->kind == TargetKind::device_path && ::stat(spec->value.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return std::nullopt;
    return *spec;
}
}  // namespace

bool names_device(const HelperTarget& target) { return device_spec_of(target).has_value(); }

Result<HelperDevice> find_helper_device(const TargetSpec& spec, const std::string& expected_fstype) {
    HelperDevice device;
    if (spec.kind == TargetKind::device_path) {
        std::error_code ec;
        fs::path resolved = fs::canonical(spec.value, ec);
        if (ec) return target_problem(fmt::format("device {} is missing", spec.value));
        device.node = resolved.string();
    } else if (spec.kind == TargetKind::directory) {
        return Problem{ExitCode::internal, fmt::format("{} names a directory, not a device", spec.text)};
    } else {
        int unreadable = 0;
        auto node = locate_by_tag(spec, unreadable);
        if (!node && unreadable > 0)
            return target_problem(fmt::format("no device with {} found; {} block devices could not be read (needs root)", spec.text, unreadable));
        if (!node) return target_problem(fmt::format("no device with {} is present", spec.text));
        device.node = *node;
    }
    struct stat st {};
    if (::stat(device.node.c_str(), &st) != 0) return target_problem(fmt::format("device {}: {}", device.node, std::strerror(errno)));
    if (!S_ISBLK(st.st_mode)) return target_problem(fmt::format("{} is not a block device", device.node));
    device.rdev = st.st_rdev;
    Probed probed = probe_device(device.node);
    if (!probed.ok) return target_problem(fmt::format("device {}: cannot probe it (permission denied?)", device.node));
    if (probed.type.empty()) return target_problem(fmt::format("device {} holds no file system", device.node));
    if (probed.usage != "filesystem")
        return target_problem(fmt::format("device {} holds {} ({}), not a file system", device.node, probed.type,
                                          probed.usage.empty() ? "unknown use" : probed.usage));
    if (!expected_fstype.empty() && probed.type != expected_fstype)
        return target_problem(fmt::format("device {} holds {}, not {} (fstype in the host config)", device.node, probed.type, expected_fstype));
    device.fstype = probed.type;
    return device;
}

std::string flock_holder(const fs::path& node) {
    struct stat st {};
    if (::stat(node.c_str(), &st) != 0) return "";
    std::string want = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev), st.st_ino);
    std::ifstream locks("/proc/locks");
    for (std::string line; std::getline(locks, line);) {
        std::istringstream fields(line);
        std::string id, kind, mode, access, pid, inode;
        fields >> id >> kind;
        if (kind == "->") continue;  // a waiter, not the holder
        fields >> mode >> access >> pid >> inode;
        if (inode != want || kind != "FLOCK") continue;
        long number = std::strtol(pid.c_str(), nullptr, 10);
        if (number <= 0) return "a process in another pid namespace";
        return fmt::format("pid {} ({})", number, command_of(number));
    }
    return "";
}

std::optional<std::string> whole_disk_node(dev_t dev) {
    std::error_code ec;
    fs::path sys = fs::canonical(fmt::format("/sys/dev/block/{}:{}", major(dev), minor(dev)), ec);
    if (ec) return std::nullopt;
    if (fs::exists(sys / "partition", ec)) sys = sys.parent_path();
    std::istringstream uevent(read_small(sys / "uevent"));
    for (std::string line; std::getline(uevent, line);)
        if (line.rfind("DEVNAME=", 0) == 0) return "/dev/" + line.substr(8);
    return std::nullopt;
}

Result<DiskLock> lock_whole_disk(dev_t dev, std::chrono::steady_clock::time_point deadline) {
    DiskLock lock;
    auto node = whole_disk_node(dev);
    if (!node) return lock;
    // Read-only: closing a block device opened for writing makes udev probe it.
    lock.fd = UniqueFd(::open(node->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!lock.fd) return target_problem(fmt::format("cannot open {} to lock it: {}", *node, std::strerror(errno)));
    lock.disk = *node;
    // No event tells when another process's flock goes: a short back-off
    // (10 ms doubling to 200 ms) within the run's bound.
    auto pause = std::chrono::milliseconds(10);
    while (::flock(lock.fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK)
            return target_problem(fmt::format("cannot lock {}: {}", *node, std::strerror(errno)));
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            std::string holder = flock_holder(*node);
            return Problem{ExitCode::busy, fmt::format("device {} busy: locked by {}", *node, holder.empty() ? "another process" : holder)};
        }
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
        pause = std::min(pause * 2, std::chrono::milliseconds(200));
    }
    return lock;
}

HelperSyncResult sync_helper_target(int root_fd, const Volume& volume, const VolumeConfig& config, const HelperTarget& target,
                                    const HelperSyncOptions& options, std::chrono::steady_clock::time_point lock_deadline) {
    auto failed = [&](const std::string& message) {
        HelperSyncResult result;
        result.target = target.path;
        result.outcome = HelperOutcome::failed;
        result.message = message;
        return result;
    };
    auto spec = device_spec_of(target);
    if (!spec) {
        if (options.dry_run) return sync_helper(root_fd, volume, config, target, options);
        // Only a mounted partition is a helper partition: a plain directory
        // on / (or a test's sandbox) locks no disk. A disk this process may
        // not open (an unprivileged run, a container's device policy) cannot
        // be locked, and the sync goes on as before this lock existed.
        struct stat st {};
        std::optional<DiskLock> lock;
        auto mount = probe_helper_mount(target.path);
        if (mount && mount->mount_root && ::stat(target.path.c_str(), &st) == 0) {
            auto locked = lock_whole_disk(st.st_dev, lock_deadline);
            if (locked) lock = std::move(*locked);
            else if (locked.problem().message.find("cannot open ") != 0) return failed(locked.problem().message);
        }
        return sync_helper(root_fd, volume, config, target, options);
    }
    auto device = find_helper_device(*spec, target.fstype);
    if (!device) return failed(device.problem().message);
    std::optional<DiskLock> lock;
    if (!options.dry_run) {
        auto locked = lock_whole_disk(device->rdev, lock_deadline);
        if (!locked) return failed(locked.problem().message);
        lock = std::move(*locked);
    }
    HelperSyncResult result;
    std::string mount_dir;
    Status mounted = in_private_mount(*device, options.dry_run, [&](const fs::path& dir) {
        HelperTarget inside = target;
        inside.path = dir;
        inside.stamp_key = spec->text;
        inside.require_mount = true;
        mount_dir = dir.string();
        result = sync_helper(root_fd, volume, config, inside, options);
    });
    if (!mounted) {
        if (result.outcome == HelperOutcome::updated || result.outcome == HelperOutcome::unchanged || mount_dir.empty())
            return failed(fmt::format("{} ({}): {}", spec->text, device->node, mounted.problem().message));
        result.message += "; " + mounted.problem().message;
        result.outcome = HelperOutcome::failed;
    }
    result.target = target.path;
    replace_all(result.message, mount_dir, fmt::format("{} ({})", spec->text, device->node));
    return result;
}

HelperVerdict check_helper_target(int root_fd, const VolumeConfig& config, const HelperTarget& target, bool verify_content) {
    auto spec = device_spec_of(target);
    if (!spec) return check_helper(root_fd, config, target, verify_content);
    HelperVerdict verdict;
    verdict.target = target.path;
    verdict.state = CacheState::error;
    auto device = find_helper_device(*spec, target.fstype);
    if (!device) {
        verdict.reason = device.problem().message;
        return verdict;
    }
    std::string mount_dir;
    Status mounted = in_private_mount(*device, true, [&](const fs::path& dir) {
        HelperTarget inside = target;
        inside.path = dir;
        inside.stamp_key = spec->text;
        inside.require_mount = true;
        mount_dir = dir.string();
        verdict = check_helper(root_fd, config, inside, verify_content);
    });
    if (!mounted) {
        verdict.state = CacheState::error;
        verdict.reason = fmt::format("{} ({}): {}", spec->text, device->node, mounted.problem().message);
    }
    verdict.target = target.path;
    replace_all(verdict.reason, mount_dir, fmt::format("{} ({})", spec->text, device->node));
    return verdict;
}

}  // namespace volwatch
