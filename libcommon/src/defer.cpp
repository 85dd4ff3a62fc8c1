#include "volwatch/defer.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <csignal>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

namespace volwatch {
namespace {

namespace fs = std::filesystem;

std::string read_text(const char* path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Processes other than `self` with the file (device, inode) open.
std::vector<pid_t> openers(dev_t device, ino_t inode, pid_t self) {
    std::vector<pid_t> pids;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return pids;
    while (dirent* entry = ::readdir(proc)) {
        if (!all_digits(entry->d_name)) continue;
        pid_t pid = 0;
        std::from_chars(entry->d_name, entry->d_name + std::strlen(entry->d_name), pid);
        if (pid == self) continue;
        std::string fd_dir = fmt::format("/proc/{}/fd", entry->d_name);
        DIR* fds = ::opendir(fd_dir.c_str());
        if (fds == nullptr) continue;  // gone, or not ours to look at
        while (dirent* fd = ::readdir(fds)) {
            if (!all_digits(fd->d_name)) continue;
            struct stat st {};
            if (::fstatat(::dirfd(fds), fd->d_name, &st, 0) == 0 && st.st_dev == device && st.st_ino == inode) {
                pids.push_back(pid);
                break;
            }
        }
        ::closedir(fds);
    }
    ::closedir(proc);
    return pids;
}

}  // namespace

std::vector<pid_t> lock_holders(std::string_view proc_locks, dev_t device, ino_t inode, bool& found) {
    std::vector<pid_t> pids;
    found = false;
    std::string want = fmt::format("{:02x}:{:02x}:{}", major(device), minor(device), inode);
    std::istringstream lines{std::string(proc_locks)};
    std::string line;
    while (std::getline(lines, line)) {
        // "1: POSIX  ADVISORY  WRITE 1505 08:01:123456 0 EOF"; waiters have "->" after the number.
        std::istringstream fields(line);
        std::vector<std::string> words;
        for (std::string word; fields >> word;) words.push_back(word);
        if (words.size() < 6 || words[1] == "->") continue;
        if (words[5] != want) continue;
        found = true;
        pid_t pid = 0;
        std::from_chars(words[4].data(), words[4].data() + words[4].size(), pid);
        if (pid > 0 && std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
    }
    return pids;
}

std::optional<DeferHolder> find_defer_holder(const std::vector<fs::path>& paths, pid_t self) {
    if (paths.empty()) return std::nullopt;
    std::string locks;
    bool locks_read = false;
    for (const auto& path : paths) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) continue;
        if (!locks_read) {
            locks = read_text("/proc/locks");
            locks_read = true;
        }
        bool found = false;
        std::vector<pid_t> pids = lock_holders(locks, st.st_dev, st.st_ino, found);
        if (found) {
            // OFD locks show no pid, and a flock(2) lock shows whoever took
            // it even after it exited while an inherited descriptor keeps
            // it: then whoever has the file open holds it.
            pids.erase(std::remove_if(pids.begin(), pids.end(), [](pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }),
                       pids.end());
            if (pids.empty()) pids = openers(st.st_dev, st.st_ino, self);
            return DeferHolder{path, std::move(pids), "lock"};
        }
        std::vector<pid_t> open = openers(st.st_dev, st.st_ino, self);
        if (!open.empty()) return DeferHolder{path, std::move(open), "open"};
    }
    return std::nullopt;
}

}  // namespace volwatch
