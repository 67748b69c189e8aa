#include "env_expand.hpp"

#include <cstdlib>

namespace cachecar::config {

namespace {
bool is_name_char(char c, bool first) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
    return !first && c >= '0' && c <= '9';
}
}  // namespace

env_lookup process_env() {
    return [](const std::string& name) -> std::optional<std::string> {
        // getenv is fine here: the config is loaded before any thread that could
        // call setenv exists, and reloads never modify the environment.
        if (const char* v = std::getenv(name.c_str())) return std::string(v);
        return std::nullopt;
    };
}

parsed<std::string> expand_env(std::string_view text, const env_lookup& lookup) {
    using result_t = parsed<std::string>;
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '$' || i + 1 >= text.size() || text[i + 1] != '{') {
            out.push_back(text[i++]);
            continue;
        }
        const std::size_t close = text.find('}', i + 2);
        if (close == std::string_view::npos)
            return result_t::fail("unterminated \"${\" in \"" + std::string(text) + "\"");
        std::string_view body = text.substr(i + 2, close - i - 2);
        std::string_view name = body;
        std::optional<std::string_view> fallback;
        if (auto sep = body.find(":-"); sep != std::string_view::npos) {
            name = body.substr(0, sep);
            fallback = body.substr(sep + 2);
        }
        bool good = !name.empty();
        for (std::size_t k = 0; k < name.size() && good; ++k) good = is_name_char(name[k], k == 0);
        if (!good)
            return result_t::fail("bad environment reference \"${" + std::string(body) +
                                  "}\" (expected ${NAME} or ${NAME:-default})");
        auto value = lookup(std::string(name));
        if (value && !value->empty()) {
            out += *value;
        } else if (fallback) {
            out += *fallback;
        } else if (!value) {
            return result_t::fail("environment variable \"" + std::string(name) +
                                  "\" is not set (use ${" + std::string(name) + ":-default} to give a default)");
        }  // set but empty without a default expands to ""
        i = close + 1;
    }
    return result_t::ok(std::move(out));
}

}  // namespace cachecar::config
