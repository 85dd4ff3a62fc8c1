#include "volwatch/notify.hpp"

#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace volwatch {
namespace {

std::string receive(int fd) {
    char buffer[512];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
}

UniqueFd bound_socket(const std::string& address) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, address.data(), address.size());
    if (address[0] == '@') addr.sun_path[0] = '\0';
    auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + (address[0] == '/' ? 1 : 0));
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), length), 0);
    return fd;
}

TEST(ServiceNotifier, SendsDatagramsToAPathSocket) {
    testing::TempDir dir;
    std::string path = (dir / "notify").string();
    UniqueFd server = bound_socket(path);
    ServiceNotifier notifier(path);
    ASSERT_TRUE(notifier.active());
    ASSERT_TRUE(notifier.send("READY=1").ok());
    EXPECT_EQ(receive(server.get()), "READY=1");
    ASSERT_TRUE(notifier.status("watching 1 volume").ok());
    EXPECT_EQ(receive(server.get()), "STATUS=watching 1 volume");
    // The same status again is not resent.
    ASSERT_TRUE(notifier.status("watching 1 volume").ok());
    EXPECT_EQ(receive(server.get()), "");
}

TEST(ServiceNotifier, SupportsAbstractSockets) {
    std::string address = "@volwatch-test-" + std::to_string(::getpid());
    UniqueFd server = bound_socket(address);
    ServiceNotifier notifier(address);
    ASSERT_TRUE(notifier.send("READY=1").ok());
    EXPECT_EQ(receive(server.get()), "READY=1");
}

TEST(ServiceNotifier, FromEnvironmentUnsetsTheVariableAndIsInactiveWithoutIt) {
    ::setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
    ServiceNotifier notifier = ServiceNotifier::from_environment();
    EXPECT_TRUE(notifier.active());
    EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
    EXPECT_FALSE(notifier.send("READY=1").ok());  // nobody listens there
    ServiceNotifier none = ServiceNotifier::from_environment();
    EXPECT_FALSE(none.active());
    EXPECT_TRUE(none.send("READY=1").ok());
}

}  // namespace
}  // namespace volwatch
