#include "volwatch/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "volwatch/digest.hpp"
#include "volwatch/fd.hpp"
#include "volwatch/safe_path.hpp"

namespace volwatch {
namespace {

// Thrown inside this file only; converted to a Result at the public boundary.
struct ConfigProblem {
    std::string message;
};

class Reader {
public:
    Reader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const toml::source_region& where, std::string_view key, std::string_view what) const {
        if (where.begin.line > 0)
            throw ConfigProblem{fmt::format("{}:{}: {}: {}", file_, where.begin.line, key, what)};
        throw ConfigProblem{fmt::format("{}: {}: {}", file_, key, what)};
    }

    std::string string(const toml::node& node, std::string_view key) const {
        const auto* s = node.as_string();
        if (s == nullptr) fail(node.source(), key, fmt::format("expected a string, found {}", type_name(node)));
        const std::string& value = s->get();
        if (value.find('\0') != std::string::npos) fail(node.source(), key, "contains a NUL byte");
        return value;
    }

    bool boolean(const toml::node& node, std::string_view key) const {
        const auto* b = node.as_boolean();
        if (b == nullptr) fail(node.source(), key, fmt::format("expected true or false, found {}", type_name(node)));
        return b->get();
    }

    int positive_int(const toml::node& node, std::string_view key) const {
        const auto* i = node.as_integer();
        if (i == nullptr) fail(node.source(), key, fmt::format("expected an integer, found {}", type_name(node)));
        if (i->get() < 1 || i->get() > 1'000'000) fail(node.source(), key, "must be between 1 and 1000000");
        return static_cast<int>(i->get());
    }

    Duration duration(const toml::node& node, std::string_view key) const {
        std::string text = string(node, key);
        auto parsed = parse_duration(text);
        if (!parsed) fail(node.source(), key, parsed.problem().message);
        return *parsed;
    }

    std::vector<std::string> strings(const toml::node& node, std::string_view key, bool allow_empty) const {
        const auto* array = node.as_array();
        if (array == nullptr) fail(node.source(), key, fmt::format("expected an array of strings, found {}", type_name(node)));
        if (array->empty() && !allow_empty) fail(node.source(), key, "must not be empty");
        std::vector<std::string> out;
        out.reserve(array->size());
        for (std::size_t i = 0; i < array->size(); ++i)
            out.push_back(string((*array)[i], fmt::format("{}[{}]", key, i)));
        return out;
    }

    std::filesystem::path absolute_path(const toml::node& node, std::string_view key) const {
        std::string value = string(node, key);
        if (value.empty() || value.front() != '/') fail(node.source(), key, fmt::format("\"{}\" is not an absolute path", value));
        return std::filesystem::path(value).lexically_normal();
    }

    std::string relative_path(const toml::node& node, std::string_view key) const {
        std::string value = string(node, key);
        std::string problem = lexical_path_problem(value);
        if (!problem.empty()) fail(node.source(), key, fmt::format("\"{}\": {}", value, problem));
        return value;
    }

    const toml::table& table(const toml::node& node, std::string_view key) const {
        const auto* t = node.as_table();
        if (t == nullptr) fail(node.source(), key, fmt::format("expected a table, found {}", type_name(node)));
        return *t;
    }

    void unknown_key(const toml::key& key, std::string_view path) const {
        toml::source_region where = key.source();
        fail(where, path, "unknown key");
    }

    const std::string& file() const { return file_; }

    static std::string_view type_name(const toml::node& node) {
        switch (node.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a number";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date:
        case toml::node_type::time:
        case toml::node_type::date_time: return "a date or time";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        default: return "nothing";
        }
    }

private:
    std::string file_;
};

toml::table parse_toml(std::string_view text, const std::string& name) {
    if (text.size() > max_config_bytes)
        throw ConfigProblem{fmt::format("{}: file too large ({} bytes; the limit is {})", name, text.size(), max_config_bytes)};
    try {
        return toml::parse(text, std::string_view(name));
    } catch (const toml::parse_error& error) {
        const auto& where = error.source().begin;
        throw ConfigProblem{fmt::format("{}:{}:{}: invalid TOML: {}", name, where.line, where.column, error.description())};
    }
}

std::string joined_key(std::string_view prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key);
}

// [A-Za-z0-9][A-Za-z0-9._+-]{0,63}. The first character matters: {cache}
// hands the name to a host rebuilder as one argument, and "--force" or "-rf"
// there would be read as an option chosen by the untrusted volume.
bool valid_name(std::string_view name) {
    auto alphanumeric = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
    if (name.empty() || name.size() > 64 || !alphanumeric(name.front())) return false;
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return alphanumeric(c) || c == '.' || c == '_' || c == '+' || c == '-'; });
}

constexpr std::string_view name_rule =
    "must start with a letter or digit and may use only letters, digits, '.', '_', '+' and '-' (1 to 64)";

// The placeholder a "{" at `open` starts, if it is one: "{word}" with word of
// letters, digits and '_'. A "{" right after "$" is shell syntax (${VAR} in an
// "sh -c" script), and "{}" or "{a b}" are not placeholders either.
std::optional<std::string_view> placeholder_at(std::string_view arg, std::size_t open) {
    if (open > 0 && arg[open - 1] == '$') return std::nullopt;
    std::size_t close = arg.find('}', open);
    if (close == std::string_view::npos || close == open + 1) return std::nullopt;
    std::string_view word = arg.substr(open + 1, close - open - 1);
    bool is_word = std::all_of(word.begin(), word.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
    return is_word ? std::optional<std::string_view>(word) : std::nullopt;
}

bool is_placeholder(std::string_view word) {
    return word == "root" || word == "volume" || word == "cache" || word == "product";
}

Rebuilder read_rebuilder(const Reader& reader, std::string_view name, const toml::node& node) {
    std::string key = fmt::format("rebuilders.{}", name);
    if (!valid_name(name)) reader.fail(node.source(), key, fmt::format("a rebuilder name {}", name_rule));
    const toml::table& table = reader.table(node, key);
    Rebuilder rebuilder;
    rebuilder.name = std::string(name);
    bool has_argv = false;
    for (auto&& [k, v] : table) {
        std::string sub = joined_key(key, k.str());
        if (k == "argv") {
            rebuilder.argv = reader.strings(v, sub, false);
            if (rebuilder.argv.front().empty()) reader.fail(v.source(), sub, "the command (argv[0]) is empty");
            // A typo such as {prodcut} would otherwise run with the literal text.
            for (std::size_t i = 0; i < rebuilder.argv.size(); ++i) {
                const std::string& arg = rebuilder.argv[i];
                for (std::size_t open = arg.find('{'); open != std::string::npos; open = arg.find('{', open + 1)) {
                    auto word = placeholder_at(arg, open);
                    if (word && !is_placeholder(*word))
                        reader.fail((*v.as_array())[i].source(), fmt::format("{}[{}]", sub, i),
                                    fmt::format("unknown placeholder {{{}}} in \"{}\"; the placeholders are {{root}}, "
                                                "{{volume}}, {{cache}} and {{product}}",
                                                *word, arg));
                }
            }
            has_argv = true;
        } else if (k == "timeout") {
            rebuilder.timeout = reader.duration(v, sub);
            if (rebuilder.timeout.count() <= 0) reader.fail(v.source(), sub, "must be greater than zero");
        } else {
            reader.unknown_key(k, sub);
        }
    }
    if (!has_argv) reader.fail(node.source(), joined_key(key, "argv"), "missing required key");
    return rebuilder;
}

HelperMapping read_helper_mapping(const Reader& reader, std::size_t index, const toml::node& node) {
    std::string key = fmt::format("helpers[{}]", index);
    const toml::table& table = reader.table(node, key);
    HelperMapping mapping;
    mapping.line = static_cast<int>(node.source().begin.line);
    bool has_volume = false, has_targets = false;
    for (auto&& [k, v] : table) {
        std::string sub = joined_key(key, k.str());
        if (k == "volume") {
            mapping.volume = reader.string(v, sub);
            if (mapping.volume.rfind("UUID=", 0) != 0 && (mapping.volume.empty() || mapping.volume.front() != '/'))
                reader.fail(v.source(), sub, "must be an absolute path or UUID=...");
            has_volume = true;
        } else if (k == "targets") {
            const auto* array = v.as_array();
            if (array == nullptr) reader.fail(v.source(), sub, fmt::format("expected an array of strings, found {}", Reader::type_name(v)));
            if (array->empty()) reader.fail(v.source(), sub, "must not be empty");
            for (std::size_t i = 0; i < array->size(); ++i)
                mapping.targets.push_back(reader.absolute_path((*array)[i], fmt::format("{}[{}]", sub, i)));
            has_targets = true;
        } else {
            reader.unknown_key(k, sub);
        }
    }
    if (!has_volume) reader.fail(node.source(), joined_key(key, "volume"), "missing required key");
    if (!has_targets) reader.fail(node.source(), joined_key(key, "targets"), "missing required key");
    return mapping;
}

HostConfig read_host(const toml::table& root, const Reader& reader) {
    HostConfig host;
    for (auto&& [k, v] : root) {
        std::string key(k.str());
        if (key == "lock_dir") host.lock_dir = reader.absolute_path(v, key);
        else if (key == "settle") host.settle = reader.duration(v, key);
        else if (key == "settle_max") host.settle_max = reader.duration(v, key);
        else if (key == "startup_delay") host.startup_delay = reader.duration(v, key);
        else if (key == "max_failures") host.max_failures = reader.positive_int(v, key);
        else if (key == "max_attempts") host.max_attempts = reader.positive_int(v, key);
        else if (key == "discover") host.discover = reader.boolean(v, key);
        else if (key == "hold_unmount") host.hold_unmount = reader.boolean(v, key);
        else if (key == "watch_backend") {
            std::string value = reader.string(v, key);
            if (value == "auto") host.watch_backend = WatchBackend::automatic;
            else if (value == "fanotify") host.watch_backend = WatchBackend::fanotify;
            else if (value == "inotify") host.watch_backend = WatchBackend::inotify;
            else reader.fail(v.source(), key, fmt::format("\"{}\" is not one of auto, fanotify, inotify", value));
        } else if (key == "volumes" || key == "defer_while") {
            const auto* array = v.as_array();
            if (array == nullptr) reader.fail(v.source(), key, fmt::format("expected an array of strings, found {}", Reader::type_name(v)));
            auto& list = key == "volumes" ? host.volumes : host.defer_while;
            for (std::size_t i = 0; i < array->size(); ++i)
                list.push_back(reader.absolute_path((*array)[i], fmt::format("{}[{}]", key, i)));
        } else if (key == "rebuilders") {
            for (auto&& [name, node] : reader.table(v, key))
                host.rebuilders.emplace(std::string(name.str()), read_rebuilder(reader, name.str(), node));
        } else if (key == "helpers") {
            const auto* array = v.as_array();
            if (array == nullptr || !array->is_array_of_tables())
                reader.fail(v.source(), key, "expected [[helpers]] tables");
            for (std::size_t i = 0; i < array->size(); ++i)
                host.helpers.push_back(read_helper_mapping(reader, i, (*array)[i]));
        } else {
            reader.unknown_key(k, key);
        }
    }
    if (host.settle_max < host.settle) {
        if (const toml::node* node = root.get("settle_max"))
            reader.fail(node->source(), "settle_max", "must not be shorter than settle");
        // Only settle was written: point at it, not at a settle_max the file lacks.
        const toml::node* settle = root.get("settle");
        reader.fail(settle ? settle->source() : toml::source_region{}, "settle",
                    fmt::format("is longer than the default settle_max ({}); set settle_max too",
                                format_duration(host.settle_max)));
    }
    return host;
}

CacheSpec read_cache(const Reader& reader, std::size_t index, const toml::node& node, const HostConfig& host) {
    std::string key = fmt::format("cache[{}]", index);
    const toml::table& table = reader.table(node, key);
    CacheSpec cache;
    cache.line = static_cast<int>(node.source().begin.line);
    bool has_name = false, has_sources = false, has_product = false, has_rebuild = false;
    for (auto&& [k, v] : table) {
        std::string sub = joined_key(key, k.str());
        if (k == "name") {
            cache.name = reader.string(v, sub);
            if (!valid_name(cache.name))
                reader.fail(v.source(), sub, fmt::format("\"{}\": a cache name {}", cache.name, name_rule));
            has_name = true;
        } else if (k == "sources") {
            const auto* array = v.as_array();
            if (array == nullptr) reader.fail(v.source(), sub, fmt::format("expected an array of strings, found {}", Reader::type_name(v)));
            if (array->empty()) reader.fail(v.source(), sub, "must not be empty");
            for (std::size_t i = 0; i < array->size(); ++i)
                cache.sources.push_back(reader.relative_path((*array)[i], fmt::format("{}[{}]", sub, i)));
            has_sources = true;
        } else if (k == "product") {
            cache.product = reader.relative_path(v, sub);
            has_product = true;
        } else if (k == "depth") {
            std::string value = reader.string(v, sub);
            if (value == "shallow") cache.depth = Depth::shallow;
            else if (value == "deep") cache.depth = Depth::deep;
            else reader.fail(v.source(), sub, fmt::format("\"{}\" is not one of shallow, deep", value));
        } else if (k == "rebuild") {
            cache.rebuild = reader.string(v, sub);
            if (!host.rebuilders.contains(cache.rebuild))
                reader.fail(v.source(), sub,
                            fmt::format("rebuilder \"{}\" is not defined in the host config{}", cache.rebuild,
                                        host.source.empty() ? "" : fmt::format(" ({})", host.source.string())));
            has_rebuild = true;
        } else {
            reader.unknown_key(k, sub);
        }
    }
    if (!has_name) reader.fail(node.source(), joined_key(key, "name"), "missing required key");
    if (!has_sources) reader.fail(node.source(), joined_key(key, "sources"), "missing required key");
    if (!has_product) reader.fail(node.source(), joined_key(key, "product"), "missing required key");
    if (!has_rebuild) reader.fail(node.source(), joined_key(key, "rebuild"), "missing required key");
    return cache;
}

VolumeConfig read_volume(const toml::table& root, const Reader& reader, const HostConfig& host) {
    VolumeConfig config;
    bool has_version = false;
    std::set<std::string> names;
    for (auto&& [k, v] : root) {
        std::string key(k.str());
        if (key == "version") {
            const auto* i = v.as_integer();
            if (i == nullptr) reader.fail(v.source(), key, fmt::format("expected an integer, found {}", Reader::type_name(v)));
            if (i->get() != 1) reader.fail(v.source(), key, fmt::format("unsupported version {} (this volwatch reads version 1)", i->get()));
            has_version = true;
        } else if (key == "cache") {
            const auto* array = v.as_array();
            if (array == nullptr || !array->is_array_of_tables()) reader.fail(v.source(), key, "expected [[cache]] tables");
            for (std::size_t i = 0; i < array->size(); ++i) {
                CacheSpec cache = read_cache(reader, i, (*array)[i], host);
                if (!names.insert(cache.name).second) {
                    const toml::node* name_node = (*array)[i].as_table()->get("name");
                    reader.fail(name_node->source(), fmt::format("cache[{}].name", i),
                                fmt::format("duplicate cache name \"{}\"", cache.name));
                }
                config.caches.push_back(std::move(cache));
            }
        } else if (key == "helpers") {
            const toml::table& table = reader.table(v, key);
            for (auto&& [hk, hv] : table) {
                std::string sub = joined_key(key, hk.str());
                if (hk == "files") {
                    const auto* array = hv.as_array();
                    if (array == nullptr) reader.fail(hv.source(), sub, fmt::format("expected an array of strings, found {}", Reader::type_name(hv)));
                    std::set<std::string> seen;
                    for (std::size_t i = 0; i < array->size(); ++i) {
                        std::string item_key = fmt::format("{}[{}]", sub, i);
                        std::string path = reader.relative_path((*array)[i], item_key);
                        std::string normal = std::filesystem::path(path).lexically_normal().string();
                        if (!seen.insert(normal).second) reader.fail((*array)[i].source(), item_key, fmt::format("duplicate file \"{}\"", path));
                        config.helper_files.push_back(path);
                    }
                } else {
                    reader.unknown_key(hk, sub);
                }
            }
        } else {
            reader.unknown_key(k, key);
        }
    }
    if (!has_version) reader.fail(toml::source_region{}, "version", "missing required key (write version = 1)");
    if (config.caches.empty() && config.helper_files.empty())
        reader.fail(toml::source_region{}, "cache", "the file defines no [[cache]] and no [helpers] files");
    return config;
}

// Reads the whole of `fd`, refusing anything larger than the config limit.
std::string read_limited(int fd, const std::string& name) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw ConfigProblem{fmt::format("{}: {}", name, std::strerror(errno))};
    if (!S_ISREG(st.st_mode)) throw ConfigProblem{fmt::format("{}: not a regular file", name)};
    if (static_cast<std::uintmax_t>(st.st_size) > max_config_bytes)
        throw ConfigProblem{fmt::format("{}: file too large ({} bytes; the limit is {})", name, st.st_size, max_config_bytes)};
    std::string text;
    char buffer[16384];
    for (;;) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw ConfigProblem{fmt::format("{}: {}", name, std::strerror(errno))};
        }
        if (n == 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > max_config_bytes)
            throw ConfigProblem{fmt::format("{}: file too large (the limit is {} bytes)", name, max_config_bytes)};
    }
    return text;
}

}  // namespace

HostConfigLocation locate_host_config(const std::optional<std::filesystem::path>& flag) {
    if (flag) return {*flag, true};
    if (const char* env = std::getenv("VOLWATCH_CONFIG"); env != nullptr && *env != '\0') return {env, true};
    return {default_host_config_path, false};
}

Result<HostConfig> parse_host_config(std::string_view text, const std::string& name) {
    try {
        toml::table root = parse_toml(text, name);
        HostConfig host = read_host(root, Reader(name));
        host.source = name;
        return host;
    } catch (const ConfigProblem& problem) {
        return Problem{ExitCode::bad_host_config, problem.message};
    }
}

Result<HostConfig> load_host_config(const HostConfigLocation& where) {
    std::string name = where.path.string();
    // O_NONBLOCK: a FIFO named by mistake is refused as "not a regular file"
    // instead of blocking the program until someone writes to it.
    UniqueFd fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
        if (errno == ENOENT && !where.explicit_choice) return HostConfig{};
        return Problem{ExitCode::bad_host_config, fmt::format("{}: cannot open host config: {}", name, std::strerror(errno))};
    }
    try {
        std::string text = read_limited(fd.get(), name);
        return parse_host_config(text, name);
    } catch (const ConfigProblem& problem) {
        return Problem{ExitCode::bad_host_config, problem.message};
    }
}

Result<HostConfig> load_host_config(const HostOverrides& overrides) {
    auto host = load_host_config(locate_host_config(overrides.config));
    if (!host) return host;
    if (overrides.lock_dir) {
        if (overrides.lock_dir->empty()) return Problem{ExitCode::usage, "--lock-dir: empty path"};
        host->lock_dir = std::filesystem::absolute(*overrides.lock_dir).lexically_normal();
    }
    return host;
}

Result<VolumeConfig> parse_volume_config(std::string_view text, const std::string& name, const HostConfig& host) {
    try {
        toml::table root = parse_toml(text, name);
        VolumeConfig config = read_volume(root, Reader(name), host);
        config.source = name;
        return config;
    } catch (const ConfigProblem& problem) {
        return Problem{ExitCode::bad_volume_config, problem.message};
    }
}

Result<VolumeConfig> load_volume_config(int root_fd, const std::filesystem::path& display_root, const HostConfig& host) {
    std::string name = (display_root / volume_config_relpath).string();
    int error = 0;
    auto fd = open_beneath(root_fd, volume_config_relpath, O_RDONLY | O_NOCTTY | O_NONBLOCK, &error);
    if (!fd) {
        if (error == ENOENT) return Problem{ExitCode::unknown_volume, fmt::format("{}: no volume config", name)};
        return Problem{ExitCode::bad_volume_config, fmt::format("{}: {}", name, fd.problem().message)};
    }
    std::string text;
    try {
        text = read_limited(fd->get(), name);
    } catch (const ConfigProblem& problem) {
        return Problem{ExitCode::bad_volume_config, problem.message};
    }
    auto parsed = parse_volume_config(text, name, host);
    if (!parsed) return parsed;

    // Paths passed the lexical checks; now resolve what exists, so a symlink
    // leading out of the volume or onto another mount is a config error too.
    toml::table root;
    try {
        root = toml::parse(text, std::string_view(name));
    } catch (const toml::parse_error&) {
        return parsed;  // unreachable: the text parsed a moment ago
    }
    auto check = [&](const std::string& relpath, const toml::node* node, const std::string& key) -> std::optional<Problem> {
        int err = 0;
        auto opened = open_beneath(root_fd, relpath, O_PATH, &err);
        if (opened || err == ENOENT || err == ENOTDIR) return std::nullopt;
        std::string where = node != nullptr && node->source().begin.line > 0
                                ? fmt::format("{}:{}", name, node->source().begin.line)
                                : name;
        return Problem{ExitCode::bad_volume_config, fmt::format("{}: {}: \"{}\": {}", where, key, relpath, opened.problem().message)};
    };
    const toml::array* caches = root["cache"].as_array();
    for (std::size_t i = 0; i < parsed->caches.size(); ++i) {
        const CacheSpec& cache = parsed->caches[i];
        const toml::table* table = caches != nullptr ? (*caches)[i].as_table() : nullptr;
        const toml::array* sources = table != nullptr ? (*table)["sources"].as_array() : nullptr;
        for (std::size_t s = 0; s < cache.sources.size(); ++s) {
            const toml::node* node = sources != nullptr ? sources->get(s) : nullptr;
            if (auto problem = check(cache.sources[s], node, fmt::format("cache[{}].sources[{}]", i, s))) return *problem;
        }
        if (auto problem = check(cache.product, table != nullptr ? table->get("product") : nullptr, fmt::format("cache[{}].product", i)))
            return *problem;
    }
    const toml::array* files = root["helpers"]["files"].as_array();
    for (std::size_t i = 0; i < parsed->helper_files.size(); ++i) {
        const toml::node* node = files != nullptr ? files->get(i) : nullptr;
        if (auto problem = check(parsed->helper_files[i], node, fmt::format("helpers.files[{}]", i))) return *problem;
    }
    return parsed;
}

std::string config_digest(const CacheSpec& cache, const HostConfig& host) {
    Digest digest;
    auto field = [&](std::string_view text) {
        digest.update_u64(text.size());
        digest.update(text);
    };
    field("cache");
    field(cache.name);
    for (const auto& source : cache.sources) field(source);
    field("product");
    field(cache.product);
    field(cache.depth == Depth::deep ? "deep" : "shallow");
    field("rebuild");
    field(cache.rebuild);
    if (auto it = host.rebuilders.find(cache.rebuild); it != host.rebuilders.end()) {
        // The raw argv, not its expansion: mounting the volume elsewhere must
        // not make every cache stale. The timeout does not shape the product.
        for (const auto& arg : it->second.argv) field(arg);
    }
    return digest.hex();
}

std::vector<std::string> expand_argv(const std::vector<std::string>& argv, const std::map<std::string, std::string>& values) {
    std::vector<std::string> out;
    out.reserve(argv.size());
    for (const auto& arg : argv) {
        std::string expanded;
        std::size_t i = 0;
        while (i < arg.size()) {
            if (arg[i] == '{') {
                std::size_t close = arg.find('}', i);
                if (close != std::string::npos) {
                    auto it = values.find(arg.substr(i + 1, close - i - 1));
                    if (it != values.end()) {
                        expanded += it->second;
                        i = close + 1;
                        continue;
                    }
                }
            }
            expanded += arg[i++];
        }
        out.push_back(std::move(expanded));
    }
    return out;
}

}  // namespace volwatch
