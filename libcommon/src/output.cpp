#include "volwatch/output.hpp"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <stdexcept>
#include <unistd.h>

#include <fmt/format.h>

namespace volwatch {

bool use_color(int fd) {
    const char* no_color = std::getenv("NO_COLOR");
    if (no_color != nullptr && *no_color != '\0') return false;  // no-color.org: present and not empty
    const char* term = std::getenv("TERM");
    if (term != nullptr && std::string_view(term) == "dumb") return false;
    return ::isatty(fd) == 1;
}

namespace {

// Length of the well-formed UTF-8 sequence at the start of `text` (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8_sequence_length(std::string_view text, char32_t& code_point) {
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    unsigned char lead = byte(0);
    std::size_t length = 0;
    char32_t minimum = 0;
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
        minimum = 0x80;
        code_point = lead & 0x1fU;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        minimum = 0x800;
        code_point = lead & 0x0fU;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        minimum = 0x10000;
        code_point = lead & 0x07U;
    } else {
        return 0;
    }
    if (text.size() < length) return 0;
    for (std::size_t i = 1; i < length; ++i) {
        if ((byte(i) & 0xc0U) != 0x80) return 0;
        code_point = (code_point << 6) | (byte(i) & 0x3fU);
    }
    if (code_point < minimum || code_point > 0x10ffff || (code_point >= 0xd800 && code_point <= 0xdfff)) return 0;
    return length;
}

}  // namespace

void put(std::FILE* to, std::string_view text) { (void)std::fwrite(text.data(), 1, text.size(), to); }

void put_line(std::FILE* to, std::string_view text) {
    put(to, text);
    (void)std::fputc('\n', to);
}

std::string escape_for_terminal(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    while (!text.empty()) {
        char32_t code_point = 0;
        std::size_t length = utf8_sequence_length(text, code_point);
        if (length == 0) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[0]));
            length = 1;
        } else if (code_point == '\n') {
            out += "\\n";
        } else if (code_point == '\t') {
            out += "\\t";
        } else if (code_point == '\r') {
            out += "\\r";
        } else if (code_point < 0x20 || code_point == 0x7f) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned>(code_point));
        } else if (code_point >= 0x80 && code_point <= 0x9f) {
            // C1 controls: some terminals take U+009B as CSI.
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(code_point));
        } else {
            out.append(text.substr(0, length));
        }
        text.remove_prefix(length);
    }
    return out;
}

std::string paint(std::string_view text, Tone tone, bool enabled) {
    if (!enabled) return std::string(text);
    const char* code = "0";
    switch (tone) {
    case Tone::good: code = "32"; break;
    case Tone::warn: code = "33"; break;
    case Tone::bad: code = "31"; break;
    case Tone::dim: code = "2"; break;
    }
    return fmt::format("\033[{}m{}\033[0m", code, text);
}

std::string format_clock(double unix_seconds) {
    std::time_t when = static_cast<std::time_t>(unix_seconds);
    std::time_t now = std::time(nullptr);
    std::tm local {}, today {};
    ::localtime_r(&when, &local);
    ::localtime_r(&now, &today);
    char buffer[64];
    if (local.tm_year == today.tm_year && local.tm_yday == today.tm_yday)
        std::strftime(buffer, sizeof buffer, "%H:%M:%S", &local);
    else
        std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &local);
    return buffer;
}

std::string format_utc(double unix_seconds) {
    if (unix_seconds <= 0) return "";
    std::time_t when = static_cast<std::time_t>(unix_seconds);
    std::tm utc {};
    ::gmtime_r(&when, &utc);
    char buffer[64];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return buffer;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

void PrometheusWriter::family(const std::string& name, const std::string& help, const std::string& type) {
    if (families_.contains(name)) return;
    order_.push_back(name);
    families_[name] = Family{help, type, {}};
}

void PrometheusWriter::sample(const std::string& name, const Labels& labels, double value) {
    auto it = families_.find(name);
    if (it == families_.end()) throw std::logic_error("undeclared Prometheus family " + name);
    std::string line = name;
    if (!labels.empty()) {
        line += '{';
        for (std::size_t i = 0; i < labels.size(); ++i) {
            if (i > 0) line += ',';
            line += fmt::format("{}=\"{}\"", labels[i].first, escape_label_value(labels[i].second));
        }
        line += '}';
    }
    if (std::isnan(value)) line += " NaN";
    else if (value == std::floor(value) && std::fabs(value) < 1e15) line += fmt::format(" {}", static_cast<long long>(value));
    else line += fmt::format(" {}", value);
    it->second.samples.push_back(std::move(line));
}

std::string PrometheusWriter::str() const {
    std::string out;
    for (const auto& name : order_) {
        const Family& family = families_.at(name);
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name, family.type);
        for (const auto& sample : family.samples) out += sample + "\n";
    }
    return out;
}

}  // namespace volwatch
