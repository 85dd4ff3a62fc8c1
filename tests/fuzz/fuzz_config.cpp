// Fuzz target: host and volume config parsing must never crash, hang or
// accept an escaping path, whatever the bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "volwatch/config.hpp"
#include "volwatch/rebuilder_outputs.hpp"
#include "volwatch/safe_path.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto host = volwatch::parse_host_config(text, "fuzz-host.toml");
    volwatch::HostConfig trusted;
    trusted.rebuilders.emplace("initramfs", volwatch::Rebuilder{"initramfs", {"true"}, std::chrono::minutes(1)});
    auto volume = volwatch::parse_volume_config(text, "fuzz-volume.toml", host ? *host : trusted);
    if (volume) {
        for (const auto& cache : volume->caches) {
            for (const auto& source : cache.sources)
                if (!volwatch::lexical_path_problem(source).empty()) __builtin_trap();
            if (!volwatch::lexical_path_problem(cache.product).empty()) __builtin_trap();
            for (const auto& output : cache.outputs) {
                if (!volwatch::lexical_path_problem(output).empty() || !volwatch::output_pattern_problem(output).empty())
                    __builtin_trap();
                if (std::none_of(cache.sources.begin(), cache.sources.end(),
                                 [&](const std::string& source) { return volwatch::output_lies_beneath(output, source); }))
                    __builtin_trap();
            }
        }
        for (const auto& file : volume->helper_files)
            if (!volwatch::lexical_path_problem(file).empty()) __builtin_trap();
    }
    return 0;
}
