// Two kinds of failure (STYLE §4): expected outcomes come back as values
// (Result<T>); real failures throw Failure, caught once in each program's main.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

#include "volwatch/exit_codes.hpp"

namespace volwatch {

/// A failure worth reporting: the exit code and one line of text, without the
/// program name (the top level adds "prog: ").
struct Problem {
    ExitCode code = ExitCode::internal;
    std::string message;
};

/// A real failure: thrown by libcommon, printed once as "prog: message".
class Failure : public std::runtime_error {
public:
    Failure(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    explicit Failure(Problem problem) : Failure(problem.code, problem.message) {}
    [[nodiscard]] ExitCode code() const noexcept { return code_; }

private:
    ExitCode code_;
};

/// A value or the Problem that prevented it (std::expected is C++23).
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
    Result(Problem problem) : state_(std::in_place_index<1>, std::move(problem)) {}  // NOLINT

    [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    [[nodiscard]] T& value() & { return checked(); }
    [[nodiscard]] const T& value() const& { return const_cast<Result*>(this)->checked(); }
    [[nodiscard]] T&& value() && { return std::move(checked()); }
    T* operator->() { return &checked(); }
    const T* operator->() const { return &const_cast<Result*>(this)->checked(); }
    T& operator*() & { return checked(); }
    const T& operator*() const& { return const_cast<Result*>(this)->checked(); }

    /// The problem; only valid when !ok().
    [[nodiscard]] const Problem& problem() const { return std::get<1>(state_); }

    /// The value, or throws the problem as a Failure.
    T& or_throw() & { return checked(); }
    T&& or_throw() && { return std::move(checked()); }

private:
    T& checked() {
        if (!ok()) throw Failure(std::get<1>(state_));
        return std::get<0>(state_);
    }
    std::variant<T, Problem> state_;
};

/// A Result with no value.
struct Unit {};
using Status = Result<Unit>;
inline Status success() { return Unit{}; }

}  // namespace volwatch
