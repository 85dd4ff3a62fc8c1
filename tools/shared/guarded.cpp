#include "guarded.hpp"

#include <exception>
#include <cstdio>

#include <fmt/format.h>

#include "volwatch/output.hpp"

namespace volwatch::cli {

int usage_error(std::string_view name, std::string_view message) {
    put(stderr, fmt::format("{}: {}\nTry '{} --help'.\n", name, escape_for_terminal(message), name));
    return to_int(ExitCode::usage);
}

int run_guarded(std::string_view name, const std::function<ExitCode()>& body) {
    try {
        return to_int(body());
    } catch (const Failure& failure) {
        put_line(stderr, fmt::format("{}: {}", name, escape_for_terminal(failure.what())));
        return to_int(failure.code());
    } catch (const std::exception& e) {
        put_line(stderr, fmt::format("{}: internal error: {}", name, escape_for_terminal(e.what())));
        return to_int(ExitCode::internal);
    }
}

}  // namespace volwatch::cli
