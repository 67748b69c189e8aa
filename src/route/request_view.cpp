#include <cachecar/route/request_view.hpp>

#include <cachecar/util/ascii.hpp>

namespace cachecar::route {

std::optional<std::string_view> request_view::header(std::string_view name) const {
    for (const auto& h : headers)
        if (util::iequals(h.name, name)) return h.value;
    return std::nullopt;
}

std::optional<std::string_view> request_view::param(std::string_view name) const {
    if (params == nullptr) return std::nullopt;
    for (const auto& [key, value] : *params)
        if (key == name) return std::string_view(value);
    return std::nullopt;
}

}  // namespace cachecar::route
