// Shared fixtures for the unit tests: a temporary directory per test and
// small file helpers.
#pragma once

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sched.h>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include "volwatch/journal.hpp"
#include "volwatch/log.hpp"

namespace volwatch::testing {

/// What a Logger handed its sink: the line as stderr shows it (without the
/// program name) and the fields the journal would get.
struct LoggedRecord {
    LogLevel level = LogLevel::info;
    std::string line;                  // "message event=NAME"
    std::optional<Event> event;
    EventFields fields;
    std::vector<std::string> journal;  // journal_fields(program, record)
};

/// A LogSink that records instead of writing.
class RecordingSink final : public LogSink {
public:
    RecordingSink(std::string program, std::vector<LoggedRecord>& records) : program_(std::move(program)), records_(records) {}
    void write(const LogRecord& record) override {
        records_.push_back({record.level, log_line(record),
                            record.event != nullptr ? std::optional<Event>(record.event->event) : std::nullopt,
                            record.fields != nullptr ? *record.fields : EventFields{}, journal_fields(program_, record)});
    }

private:
    std::string program_;
    std::vector<LoggedRecord>& records_;
};

/// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "volwatch-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    [[nodiscard]] std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

private:
    std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& content) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Sets a file's mtime (and atime) to `ns` unix nanoseconds without following symlinks.
inline void set_mtime_ns(const std::filesystem::path& path, std::int64_t ns) {
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = ns / 1'000'000'000;
    times[0].tv_nsec = times[1].tv_nsec = ns % 1'000'000'000;
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

inline std::int64_t mtime_ns(const std::filesystem::path& path) {
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

inline std::int64_t ctime_ns(const std::filesystem::path& path) {
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
}

inline std::int64_t now_ns() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Sets (or, with nullptr, unsets) an environment variable for one test and
// restores it when the test ends.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

// A tmpfs mounted on `dir` for one test, in a mount namespace of the calling
// thread's own: no other process sees it, and when the test ends the thread
// goes back to its namespace (and working directory), taking the mount with
// the private namespace, so nothing stays mounted even if the test fails.
// Needs root; error() says why it could not be set up ("" when it is).
class PrivateTmpfs {
public:
    explicit PrivateTmpfs(const std::filesystem::path& dir) {
        host_ns_ = ::open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
        cwd_ = ::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (host_ns_ < 0 || cwd_ < 0) {
            error_ = "cannot open this thread's mount namespace or working directory";
            return;
        }
        if (::unshare(CLONE_NEWNS) != 0) {
            error_ = "unshare(CLONE_NEWNS) failed (needs root)";
            return;
        }
        entered_ = true;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=16m") != 0)
            error_ = "cannot mount a tmpfs on " + dir.string();
    }
    ~PrivateTmpfs() {
        if (entered_ && ::setns(host_ns_, CLONE_NEWNS) == 0) (void)::fchdir(cwd_);  // setns moves to the root
        if (host_ns_ >= 0) ::close(host_ns_);
        if (cwd_ >= 0) ::close(cwd_);
    }
    PrivateTmpfs(const PrivateTmpfs&) = delete;
    PrivateTmpfs& operator=(const PrivateTmpfs&) = delete;
    [[nodiscard]] const std::string& error() const { return error_; }

private:
    int host_ns_ = -1;
    int cwd_ = -1;
    bool entered_ = false;
    std::string error_;
};

}  // namespace volwatch::testing
