#include "volwatch/digest.hpp"

#include <cerrno>
#include <cstring>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

namespace volwatch {
namespace {

std::uint64_t load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

constexpr std::uint64_t rotl(std::uint64_t x, int r) noexcept { return (x << r) | (x >> (64 - r)); }

}  // namespace

void Digest::mix(std::uint64_t word) noexcept {
    a_ = rotl(a_ ^ (word * 0x9e3779b97f4a7c15ULL), 27) * 0xc2b2ae3d27d4eb4fULL;
    b_ = rotl(b_ + word, 31) * 0x165667b19e3779f9ULL ^ a_;
}

void Digest::update(const void* data, std::size_t size) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    length_ += size;
    while (size > 0 && tail_size_ > 0 && tail_size_ < 8) {
        tail_[tail_size_++] = *p++;
        --size;
        if (tail_size_ == 8) {
            mix(load_le64(tail_));
            tail_size_ = 0;
            break;
        }
    }
    while (size >= 8) {
        mix(load_le64(p));
        p += 8;
        size -= 8;
    }
    while (size > 0) {
        tail_[tail_size_++] = *p++;
        --size;
    }
}

void Digest::update_u64(std::uint64_t value) noexcept {
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
    update(bytes, sizeof bytes);
}

std::pair<std::uint64_t, std::uint64_t> Digest::lanes() const noexcept {
    std::uint64_t a = a_, b = b_;
    if (tail_size_ > 0) {
        unsigned char padded[8] = {};
        std::memcpy(padded, tail_, tail_size_);
        std::uint64_t w = load_le64(padded);
        a = rotl(a ^ (w * 0x9e3779b97f4a7c15ULL), 27) * 0xc2b2ae3d27d4eb4fULL;
        b = rotl(b + w, 31) * 0x165667b19e3779f9ULL ^ a;
    }
    return {a, b};
}

std::uint64_t Digest::low() const noexcept {
    auto [a, b] = lanes();
    return mix64(a ^ mix64(b + length_));
}

std::uint64_t Digest::high() const noexcept {
    auto [a, b] = lanes();
    return mix64(b ^ mix64(a + ~length_));
}

std::string Digest::hex() const { return fmt::format("{:016x}{:016x}", high(), low()); }

Result<std::string> digest_file(int fd) {
    Digest digest;
    std::vector<unsigned char> buffer(1 << 16);
    off_t offset = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buffer.data(), buffer.size(), offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return Problem{ExitCode::internal, fmt::format("read failed: {}", std::strerror(errno))};
        }
        if (n == 0) break;
        digest.update(buffer.data(), static_cast<std::size_t>(n));
        offset += n;
    }
    return digest.hex();
}

}  // namespace volwatch
