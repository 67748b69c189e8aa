#include <cachecar/http/message.hpp>

#include <string>
#include <vector>

namespace cachecar::http {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

void for_each_list_item(std::string_view list, const std::function<void(std::string_view)>& f) {
    std::size_t start = 0;
    bool quoted = false;
    for (std::size_t i = 0; i <= list.size(); ++i) {
        if (i < list.size()) {
            const char c = list[i];
            if (quoted) {
                if (c == '\\') {
                    ++i;  // quoted-pair: the next octet is literal, even '"' or ','
                } else if (c == '"') {
                    quoted = false;
                }
                continue;
            }
            if (c == '"') {
                quoted = true;
                continue;
            }
            if (c != ',') continue;
        }
        auto item = trim(list.substr(start, i - start));
        if (!item.empty()) f(item);
        start = i + 1;
    }
}

bool has_directive(std::string_view list, std::string_view directive) {
    bool found = false;
    for_each_list_item(list, [&](std::string_view token) {
        auto name = trim(token.substr(0, token.find('=')));
        if (util::iequals(name, directive)) found = true;
    });
    return found;
}

void erase_field(beast::http::fields& fields, std::string_view name, bool alias_underscores) {
    for (auto it = fields.begin(); it != fields.end();) {
        if (same_field_name(it->name_string(), name, alias_underscores)) {
            it = fields.erase(it);
        } else {
            ++it;
        }
    }
}

void strip_hop_by_hop(beast::http::fields& fields, bool alias_underscores) {
    // One pass by Beast's field codes (every request and response goes through here);
    // the names Connection lists are collected on the way and removed after.
    std::vector<std::string> named;
    for (auto it = fields.begin(); it != fields.end();) {
        using beast::http::field;
        switch (it->name()) {
        case field::connection:
            for_each_list_item(it->value(), [&](std::string_view token) {
                if (!util::iequals(token, "host")) named.emplace_back(token);
            });
            [[fallthrough]];
        case field::keep_alive:
        case field::proxy_connection:
        case field::te:
        case field::trailer:
        case field::transfer_encoding:
        case field::upgrade:
            it = fields.erase(it);
            break;
        default:
            ++it;
        }
    }
    for (const auto& name : named) erase_field(fields, name, alias_underscores);
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

split_target split(std::string_view target) {
    auto q = target.find('?');
    if (q == std::string_view::npos) return {target, {}};
    return {target.substr(0, q), target.substr(q + 1)};
}

}  // namespace cachecar::http
