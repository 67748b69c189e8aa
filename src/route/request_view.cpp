#include <cachecar/route/request_view.hpp>

namespace cachecar::route {

std::optional<std::string> request_view::header(std::string_view name) const {
    std::optional<std::string> out;
    for_each_header_line(name, [&](std::string_view v) {
        if (out) {
            *out += ", ";
            *out += v;
        } else {
            out.emplace(v);
        }
    });
    return out;
}

std::optional<std::string_view> request_view::param(std::string_view name) const {
    if (params == nullptr) return std::nullopt;
    for (const auto& [key, value] : *params)
        if (key == name) return std::string_view(value);
    return std::nullopt;
}

}  // namespace cachecar::route
