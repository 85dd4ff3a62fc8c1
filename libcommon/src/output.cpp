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
