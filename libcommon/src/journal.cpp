#include "volwatch/journal.hpp"

#include <cstdlib>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>
// CODE_FILE= and CODE_LINE= would name this file for every record: noise.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

namespace volwatch {
namespace {

constexpr const char* journal_socket = "/run/systemd/journal/socket";

class JournalSink final : public LogSink {
public:
    explicit JournalSink(std::string program) : program_(std::move(program)) {}

    void write(const LogRecord& record) override {
        std::vector<std::string> fields = journal_fields(program_, record);
        std::vector<struct iovec> iov;
        iov.reserve(fields.size());
        for (auto& field : fields) iov.push_back({field.data(), field.size()});
        // The journal went away (journald restarting at shutdown): the line
        // must still be somewhere.
        if (::sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) fallback().write(record);
    }

private:
    LogSink& fallback() {
        if (!fallback_) fallback_ = make_syslog_sink(program_);
        return *fallback_;
    }

    std::string program_;
    std::unique_ptr<LogSink> fallback_;
};

}  // namespace

std::vector<std::string> journal_fields(std::string_view program, const LogRecord& record) {
    std::vector<std::string> fields;
    fields.push_back(fmt::format("MESSAGE={}", log_line(record)));
    fields.push_back(fmt::format("PRIORITY={}", syslog_priority(record.level)));
    fields.push_back(fmt::format("SYSLOG_IDENTIFIER={}", program));
    if (record.event == nullptr) return fields;
    fields.push_back(fmt::format("MESSAGE_ID={}", record.event->message_id));
    fields.push_back(fmt::format("VOLWATCH_EVENT={}", record.event->name));
    if (record.fields == nullptr) return fields;
    const EventFields& f = *record.fields;
    for (const auto& volume : f.volumes) fields.push_back(fmt::format("VOLWATCH_VOLUME={}", volume));
    if (!f.volume_id.empty()) fields.push_back(fmt::format("VOLWATCH_VOLUME_ID={}", f.volume_id));
    if (!f.cache.empty()) fields.push_back(fmt::format("VOLWATCH_CACHE={}", f.cache));
    if (!f.status.empty()) fields.push_back(fmt::format("VOLWATCH_STATUS={}", f.status));
    if (f.pid) fields.push_back(fmt::format("VOLWATCH_PID={}", *f.pid));
    if (f.seconds) fields.push_back(fmt::format("VOLWATCH_SECONDS={:.1f}", *f.seconds));
    return fields;
}

bool journal_present() {
    struct stat st {};
    return ::stat(journal_socket, &st) == 0 && S_ISSOCK(st.st_mode);
}

bool stderr_is_journal_stream() {
    const char* value = std::getenv("JOURNAL_STREAM");
    if (value == nullptr) return false;
    struct stat st {};
    if (::fstat(2, &st) != 0) return false;
    return fmt::format("{}:{}", st.st_dev, st.st_ino) == value;
}

std::unique_ptr<LogSink> make_journal_sink(std::string program) {
    if (!journal_present()) return make_syslog_sink(std::move(program));
    return std::make_unique<JournalSink>(std::move(program));
}

}  // namespace volwatch
