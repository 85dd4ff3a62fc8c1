// The systemd journal as a log sink (DESIGN §7): records go to journald
// natively through libsystemd's sd_journal_sendv, with a MESSAGE_ID per event
// and VOLWATCH_* fields, so `journalctl MESSAGE_ID=...` finds them and
// `journalctl -x` explains them from volwatch.catalog.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "volwatch/log.hpp"

namespace volwatch {

/// The journal fields of `record` as "NAME=value": MESSAGE (with
/// " event=NAME" for events), PRIORITY, SYSLOG_IDENTIFIER, and for events
/// MESSAGE_ID, VOLWATCH_EVENT and each VOLWATCH_* field that is set.
[[nodiscard]] std::vector<std::string> journal_fields(std::string_view program, const LogRecord& record);

/// True when journald's socket (/run/systemd/journal/socket) exists.
[[nodiscard]] bool journal_present();
/// True when standard error is the journal's stream: $JOURNAL_STREAM names
/// its device and inode, as systemd sets it for a service's output.
[[nodiscard]] bool stderr_is_journal_stream();

/// The journal when it is present, else syslog(3) (make_syslog_sink). A
/// record the journal refuses goes to syslog instead.
[[nodiscard]] std::unique_ptr<LogSink> make_journal_sink(std::string program);

}  // namespace volwatch
