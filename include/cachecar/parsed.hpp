// A value or a human-readable error message; used by parsers whose errors end up
// in `file:line:col: message` diagnostics (config, patterns, templates).
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace cachecar {

template <class T>
struct parsed {
    std::optional<T> value;
    std::string error;  // set iff !value

    static parsed ok(T v) { return parsed{std::move(v), {}}; }
    static parsed fail(std::string message) { return parsed{std::nullopt, std::move(message)}; }
    explicit operator bool() const { return value.has_value(); }
    const T& operator*() const { return *value; }
    const T* operator->() const { return &*value; }
};

}  // namespace cachecar
