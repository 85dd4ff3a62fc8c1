// Output helpers shared by every program: colour rules, times, and writers
// for the Prometheus text format. Human lines go to stdout, diagnostics to
// stderr as "prog: subject: message".
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace volwatch {

enum class OutputFormat { human, json, prometheus };

/// Colour only on a terminal and never when NO_COLOR is set to a non-empty value.
[[nodiscard]] bool use_color(int fd);

/// `text` made safe to show on a terminal: control characters become C-style
/// escapes ("\n", "\t", "\r", "\x1b", "\x7f"), C1 controls "\u009b", and
/// bytes that are not valid UTF-8 "\xff"; everything else is unchanged. Use it
/// for every path or untrusted string (volume config values, file names,
/// commands from lock records) that reaches human output or stderr.
[[nodiscard]] std::string escape_for_terminal(std::string_view text);

/// Writes `text` to `to` through stdio, and `put_line` adds a newline. The
/// programs that run once per lock (vlock, vunlock's library half) print
/// with these, not iostreams: a program that never touches std::cout skips
/// the C++ locale's set-up and its copied-on-write tables at every start
/// (docs/benchmarks.md, issue 13). As with std::cout, a failed write is not
/// an error of the program (a closed stderr must not turn a granted lock
/// into a failure).
void put(std::FILE* to, std::string_view text);
void put_line(std::FILE* to, std::string_view text);

enum class Tone { good, warn, bad, dim };
/// `text` wrapped in the ANSI colour for `tone` when `enabled`.
[[nodiscard]] std::string paint(std::string_view text, Tone tone, bool enabled);

/// Local wall-clock "HH:MM:SS" for a unix time, with the date in front when
/// it is not today ("2026-11-24 12:03:04").
[[nodiscard]] std::string format_clock(double unix_seconds);

/// RFC 3339 UTC time ("2026-11-25T12:03:04Z"), "" for 0.
[[nodiscard]] std::string format_utc(double unix_seconds);

/// Collects gauge samples and writes them grouped by family, each family
/// once with its HELP and TYPE, as the node_exporter textfile collector wants.
class PrometheusWriter {
public:
    using Labels = std::vector<std::pair<std::string, std::string>>;
    /// Declares a family (name must match [a-zA-Z_:][a-zA-Z0-9_:]*).
    void family(const std::string& name, const std::string& help, const std::string& type = "gauge");
    /// Adds one sample to a declared family.
    void sample(const std::string& name, const Labels& labels, double value);
    [[nodiscard]] std::string str() const;

private:
    struct Family {
        std::string help;
        std::string type;
        std::vector<std::string> samples;
    };
    std::vector<std::string> order_;
    std::map<std::string, Family> families_;
};

/// Escapes a Prometheus label value (backslash, quote, newline).
[[nodiscard]] std::string escape_label_value(std::string_view value);

}  // namespace volwatch
