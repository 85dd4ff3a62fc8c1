// A fast 128-bit non-cryptographic digest for source states, config digests
// and file contents. It detects change; it does not resist a forger (the
// volume is writable by whoever could forge, so nothing would be gained).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "volwatch/error.hpp"

namespace volwatch {

class Digest {
public:
    /// Adds bytes; the result depends on their order.
    void update(const void* data, std::size_t size) noexcept;
    void update(std::string_view text) noexcept { update(text.data(), text.size()); }
    /// Adds one integer (its 8 bytes, little-endian on every platform).
    void update_u64(std::uint64_t value) noexcept;
    /// 32 lowercase hex digits.
    [[nodiscard]] std::string hex() const;
    [[nodiscard]] std::uint64_t low() const noexcept;
    [[nodiscard]] std::uint64_t high() const noexcept;

private:
    void mix(std::uint64_t word) noexcept;
    // Both lanes with the pending tail mixed in, as if the input ended here.
    [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> lanes() const noexcept;
    std::uint64_t a_ = 0x243f6a8885a308d3ULL;
    std::uint64_t b_ = 0x13198a2e03707344ULL;
    std::uint64_t length_ = 0;
    unsigned char tail_[8] = {};
    unsigned tail_size_ = 0;
};

/// Mixes one 64-bit value into a well-spread 64-bit value (splitmix64 finaliser).
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/// Digest of the whole content of the open file `fd` (read from offset 0).
[[nodiscard]] Result<std::string> digest_file(int fd);

}  // namespace volwatch
