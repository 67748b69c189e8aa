#include <cachecar/http/message.hpp>
#include <cachecar/util/ascii.hpp>

#include <string>
#include <vector>

namespace cachecar::http {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

void for_each_list_item(std::string_view list, const std::function<void(std::string_view)>& f) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = trim(list.substr(0, comma));
        if (!item.empty()) f(item);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

void strip_hop_by_hop(beast::http::fields& fields) {
    std::vector<std::string> named;
    auto [first, last] = fields.equal_range(beast::http::field::connection);
    for (auto it = first; it != last; ++it) {
        for_each_list_item(it->value(), [&](std::string_view token) { named.emplace_back(token); });
    }
    for (const auto& name : named) fields.erase(name);
    for (auto f : {beast::http::field::connection, beast::http::field::keep_alive, beast::http::field::proxy_connection,
                   beast::http::field::te, beast::http::field::trailer, beast::http::field::transfer_encoding,
                   beast::http::field::upgrade}) {
        fields.erase(f);
    }
}

bool is_idempotent(beast::http::verb method) {
    using beast::http::verb;
    switch (method) {
    case verb::get:
    case verb::head:
    case verb::options:
    case verb::trace:
    case verb::put:
    case verb::delete_:
        return true;
    default:
        return false;
    }
}

bool has_directive(std::string_view header_value, std::string_view directive) {
    bool found = false;
    for_each_list_item(header_value, [&](std::string_view token) {
        auto name = trim(token.substr(0, token.find('=')));
        if (util::iequals(name, directive)) found = true;
    });
    return found;
}

split_target split(std::string_view target) {
    auto q = target.find('?');
    if (q == std::string_view::npos) return {target, {}};
    return {target.substr(0, q), target.substr(q + 1)};
}

}  // namespace cachecar::http
