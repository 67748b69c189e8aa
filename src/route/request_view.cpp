#include <cachecar/route/request_view.hpp>

namespace cachecar::route {

namespace {
bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}
}  // namespace

std::optional<std::string_view> request_view::header(std::string_view name) const {
    for (const auto& h : headers)
        if (iequals(h.name, name)) return h.value;
    return std::nullopt;
}

std::optional<std::string_view> request_view::param(std::string_view name) const {
    if (params == nullptr) return std::nullopt;
    for (const auto& [key, value] : *params)
        if (key == name) return std::string_view(value);
    return std::nullopt;
}

}  // namespace cachecar::route
