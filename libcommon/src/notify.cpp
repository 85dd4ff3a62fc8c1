#include "volwatch/notify.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>

namespace volwatch {

ServiceNotifier ServiceNotifier::from_environment() {
    const char* value = std::getenv("NOTIFY_SOCKET");
    std::string address = value != nullptr ? value : "";
    ::unsetenv("NOTIFY_SOCKET");
    return ServiceNotifier(std::move(address));
}

ServiceNotifier::ServiceNotifier(std::string address) : address_(std::move(address)) {}

Status ServiceNotifier::send(std::string_view state) {
    if (!active()) return success();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (address_.size() >= sizeof(addr.sun_path) || (address_[0] != '/' && address_[0] != '@'))
        return Problem{ExitCode::internal, fmt::format("NOTIFY_SOCKET={}: not a unix socket address", address_)};
    std::memcpy(addr.sun_path, address_.data(), address_.size());
    if (address_[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() + (address_[0] == '/' ? 1 : 0));
    if (!socket_) {
        socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!socket_) return Problem{ExitCode::internal, fmt::format("notify socket: {}", std::strerror(errno))};
    }
    if (::sendto(socket_.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), length) < 0)
        return Problem{ExitCode::internal, fmt::format("NOTIFY_SOCKET={}: {}", address_, std::strerror(errno))};
    return success();
}

Status ServiceNotifier::status(const std::string& text) {
    if (!active() || text == last_status_) return success();
    last_status_ = text;
    return send("STATUS=" + text);
}

}  // namespace volwatch
