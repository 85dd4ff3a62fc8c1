// The service manager's readiness protocol (sd_notify(3)) spoken directly:
// datagrams such as "READY=1" or "STATUS=..." to the unix socket named by
// $NOTIFY_SOCKET. No libsystemd needed; without the variable it does nothing.
#pragma once

#include <string>
#include <string_view>

#include "volwatch/error.hpp"
#include "volwatch/fd.hpp"

namespace volwatch {

class ServiceNotifier {
public:
    /// A notifier for $NOTIFY_SOCKET ("/path" or "@abstract"); inactive when
    /// unset. Unsets the variable so that child processes do not inherit it.
    [[nodiscard]] static ServiceNotifier from_environment();
    /// A notifier for `address`, as $NOTIFY_SOCKET would name it.
    explicit ServiceNotifier(std::string address);
    ServiceNotifier() = default;

    [[nodiscard]] bool active() const noexcept { return !address_.empty(); }
    /// Sends `state` ("READY=1", "STATUS=watching 2 volumes", lines joined by
    /// newlines) as one datagram. Does nothing when inactive.
    [[nodiscard]] Status send(std::string_view state);
    /// Sends STATUS=`text` only when it differs from the last one sent.
    [[nodiscard]] Status status(const std::string& text);

private:
    std::string address_;
    UniqueFd socket_;
    std::string last_status_;
};

}  // namespace volwatch
