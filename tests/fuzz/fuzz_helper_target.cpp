// Fuzz target: the [[helpers]] target-spec parser must never crash, and what
// it accepts must be what it claims: a path is absolute and normal, a UUID
// is hexadecimal, nothing holds a control character, and the accepted text
// parses again to the same spec (it is the bootstamp's key).
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "volwatch/helper_device.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto spec = volwatch::parse_target_spec(text);
    if (!spec) {
        if (spec.problem().message.empty()) __builtin_trap();
        return 0;
    }
    using volwatch::TargetKind;
    if (std::any_of(spec->text.begin(), spec->text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
        __builtin_trap();
    switch (spec->kind) {
    case TargetKind::directory:
    case TargetKind::device_path:
        if (spec->text.empty() || spec->text.front() != '/' || spec->text != spec->value) __builtin_trap();
        if ((spec->kind == TargetKind::device_path) != (spec->text.rfind("/dev/", 0) == 0)) __builtin_trap();
        break;
    case TargetKind::uuid:
    case TargetKind::partuuid:
        if (spec->value.empty() || !std::all_of(spec->value.begin(), spec->value.end(),
                                                [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == '-'; }))
            __builtin_trap();
        break;
    case TargetKind::label:
        if (spec->value.empty() || spec->value.find('/') != std::string::npos) __builtin_trap();
        break;
    }
    auto again = volwatch::parse_target_spec(spec->text);
    if (!again || again->kind != spec->kind || again->text != spec->text) __builtin_trap();
    return 0;
}
