#include "volwatch/mountinfo.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fmt/format.h>

#include "volwatch/lines.hpp"

namespace volwatch {
namespace {

// The kernel separates fields by exactly one space, and a field can be empty:
// a mount with an empty source prints "- tmpfs  rw". Collapsing the spaces
// would shift the fields and drop the mount from the table.
std::vector<std::string_view> split_fields(std::string_view line) {
    std::vector<std::string_view> fields;
    std::size_t i = 0;
    for (;;) {
        std::size_t end = line.find(' ', i);
        if (end == std::string_view::npos) {
            fields.push_back(line.substr(i));
            return fields;
        }
        fields.push_back(line.substr(i, end - i));
        i = end + 1;
    }
}

template <class T>
bool to_number(std::string_view text, T& out) {
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && ptr == text.data() + text.size();
}

bool has_option(std::string_view options, std::string_view wanted) {
    std::size_t i = 0;
    while (i <= options.size()) {
        std::size_t comma = options.find(',', i);
        if (comma == std::string_view::npos) comma = options.size();
        if (options.substr(i, comma - i) == wanted) return true;
        i = comma + 1;
    }
    return false;
}

constexpr std::array pseudo_types = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "pstore", "ramfs",
    "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs", "iso9660",
    "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse", "aufs", "nsfs", "zonefs", "erofs"};
constexpr std::array network_types = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "9p",
                                      "glusterfs", "lustre", "gfs2", "ocfs2", "davfs", "fuse.sshfs",
                                      "fuse.s3fs", "fuse.rclone", "virtiofs"};

}  // namespace

bool MountEntry::read_only() const { return has_option(options, "ro") || has_option(super_options, "ro"); }

std::string unescape_mount_field(std::string_view field) {
    std::string out;
    out.reserve(field.size());
    for (std::size_t i = 0; i < field.size(); ++i) {
        auto is_octal = [](char c) { return c >= '0' && c <= '7'; };
        if (field[i] == '\\' && i + 3 < field.size() && is_octal(field[i + 1]) && is_octal(field[i + 2]) &&
            is_octal(field[i + 3])) {
            out += static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0'));
            i += 3;
            continue;
        }
        out += field[i];
    }
    return out;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
    std::vector<MountEntry> entries;
    for (std::string_view rest = text, line; next_line(rest, line);) {
        // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        auto fields = split_fields(line);
        auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
        if (fields.size() < 10 || dash == fields.end() || dash - fields.begin() < 6 || fields.end() - dash < 4)
            continue;
        // Only the source may be empty.
        if (std::any_of(fields.begin(), dash, [](std::string_view f) { return f.empty(); }) || (dash + 1)->empty() ||
            (dash + 3)->empty())
            continue;
        MountEntry entry;
        unsigned major_number = 0, minor_number = 0;
        std::string_view devno = fields[2];
        std::size_t colon = devno.find(':');
        if (!to_number(fields[0], entry.mount_id) || !to_number(fields[1], entry.parent_id) ||
            colon == std::string_view::npos || !to_number(devno.substr(0, colon), major_number) ||
            !to_number(devno.substr(colon + 1), minor_number))
            continue;
        entry.device = makedev(major_number, minor_number);
        entry.root = unescape_mount_field(fields[3]);
        entry.mount_point = unescape_mount_field(fields[4]);
        entry.options = std::string(fields[5]);
        entry.fs_type = unescape_mount_field(*(dash + 1));
        entry.source = unescape_mount_field(*(dash + 2));
        entry.super_options = std::string(*(dash + 3));
        entries.push_back(std::move(entry));
    }
    return entries;
}

bool is_pseudo_fs(std::string_view fs_type) {
    return std::find(pseudo_types.begin(), pseudo_types.end(), fs_type) != pseudo_types.end();
}

bool is_network_fs(std::string_view fs_type) {
    if (std::find(network_types.begin(), network_types.end(), fs_type) != network_types.end()) return true;
    return fs_type.rfind("nfs", 0) == 0;
}

std::string mount_ineligibility(const MountEntry& entry) {
    if (is_pseudo_fs(entry.fs_type)) return fmt::format("pseudo file system {}", entry.fs_type);
    if (is_network_fs(entry.fs_type)) return fmt::format("network file system {}", entry.fs_type);
    if (entry.read_only()) return "read-only";
    return "";
}

std::vector<MountEntry> ProcMountTable::read() const {
    std::ifstream in(path_);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return parse_mountinfo(buffer.str());
}

std::optional<MountEntry> find_mount(const std::filesystem::path& path, const MountTable& mounts) {
    std::vector<MountEntry> entries = mounts.read();
    struct statx stx {};
    if (::statx(AT_FDCWD, path.c_str(), 0, STATX_MNT_ID, &stx) == 0 && (stx.stx_mask & STATX_MNT_ID)) {
        auto it = std::find_if(entries.begin(), entries.end(),
                               [&](const MountEntry& entry) { return static_cast<std::uint64_t>(entry.mount_id) == stx.stx_mnt_id; });
        if (it == entries.end()) return std::nullopt;
        return *it;
    }
    // Before Linux 5.8: by path; a later mount on the same point hides an earlier one.
    std::error_code ec;
    std::filesystem::path resolved = std::filesystem::canonical(path, ec);
    if (ec) return std::nullopt;
    auto it = std::find_if(entries.rbegin(), entries.rend(), [&](const MountEntry& entry) { return entry.mount_point == resolved.string(); });
    if (it == entries.rend()) return std::nullopt;
    return *it;
}

}  // namespace volwatch
