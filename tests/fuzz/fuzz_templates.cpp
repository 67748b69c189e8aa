// Key and category templates: fuzzed template text (key fields, category and purge
// templates, a match pattern) parsed by route/pattern.hpp, then expanded by
// route/key_builder.hpp against fuzzed request parts. Checks:
//  - parsers answer a value or a message, never throw;
//  - keys are "<namespace>:<route>:<64 hex>", deterministic, and ignore the order of
//    query parameters across names (parse_query sorts by name; repeated names keep
//    their order, which backends read);
//  - expansion stays bounded (64 categories per template) and has no duplicates;
//  - a purge template always reaches itself, and a category's shape is stable.
#include "fuzz_common.hpp"

#include <cachecar/route/key_builder.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/route/pattern.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace cachecar;

// The query's parameters in reverse order, except that parameters of one (decoded)
// name keep their order among themselves: order across names is no meaning to a
// backend, order within a name is (the first or the last value wins).
std::string reordered_query(std::string_view q) {
    std::vector<std::string_view> items;
    while (true) {
        const auto amp = q.find('&');
        items.push_back(q.substr(0, amp));
        if (amp == std::string_view::npos) break;
        q.remove_prefix(amp + 1);
    }
    std::reverse(items.begin(), items.end());
    auto name_of = [](std::string_view item) {
        const auto parsed = route::parse_query(item.substr(0, item.find('=')));
        return parsed.empty() ? std::string() : parsed.front().first;
    };
    // Reversing flipped each name's values; flip them back, name by name.
    std::vector<std::string> names;
    for (auto item : items) names.push_back(name_of(item));
    std::set<std::string> done;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (!done.insert(names[i]).second) continue;  // flipped with its first occurrence
        std::vector<std::size_t> same;
        for (std::size_t j = i; j < items.size(); ++j) {
            if (names[j] == names[i]) same.push_back(j);
        }
        for (std::size_t a = 0, b = same.size() - 1; a < b; ++a, --b) std::swap(items[same[a]], items[same[b]]);
    }
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i != 0) out += '&';
        out += items[i];
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);

    route::compiled_route r;
    r.cfg.name = in.ConsumeRandomLengthString(32);
    r.cfg.shared = in.ConsumeBool();
    r.credential_headers = {"authorization", "cookie", "x-api-key"};
    const std::string ns = in.ConsumeRandomLengthString(32);

    // Key fields; any that parse become the route's key (none: the default key).
    const auto n_fields = in.ConsumeIntegralInRange<int>(0, 4);
    for (int i = 0; i < n_fields; ++i) {
        auto f = route::parse_key_field(in.ConsumeRandomLengthString(48));
        FUZZ_CHECK(f.value.has_value() == f.error.empty());
        if (f) r.key_fields.push_back(*f.value);
    }
    r.default_key = r.key_fields.empty();

    std::vector<route::category_template> categories;
    const auto n_categories = in.ConsumeIntegralInRange<int>(0, 4);
    for (int i = 0; i < n_categories; ++i) {
        auto c = route::parse_category_template(in.ConsumeRandomLengthString(64));
        FUZZ_CHECK(c.value.has_value() == c.error.empty());
        if (!c) continue;
        FUZZ_CHECK(route::purge_reaches(*c, *c));
        FUZZ_CHECK(c->shape() == c->shape());
        for (const auto& other : categories) (void)route::purge_reaches(*c, other);
        categories.push_back(*c);
    }
    r.categories = categories;

    // A match pattern, for the path parameters the templates may read.
    route::path_params params;
    if (auto m = route::parse_match(in.ConsumeRandomLengthString(64))) {
        for (const auto& name : m->pattern.param_names()) params.emplace_back(name, in.ConsumeRandomLengthString(16));
    }
    params.emplace_back(in.ConsumeRandomLengthString(8), in.ConsumeRandomLengthString(16));

    const std::string method = in.ConsumeRandomLengthString(8);
    const std::string path = in.ConsumeRandomLengthString(64);
    const std::string query = in.ConsumeRandomLengthString(128);
    std::vector<std::string> header_text;
    const auto n_headers = in.ConsumeIntegralInRange<int>(0, 6);
    for (int i = 0; i < 2 * n_headers; ++i) header_text.push_back(in.ConsumeRandomLengthString(32));
    std::vector<route::header_view> headers;
    for (int i = 0; i < n_headers; ++i) headers.push_back({header_text[2 * i], header_text[2 * i + 1]});
    const std::string body = in.ConsumeRemainingBytesAsString();

    const route::request_view req{method, path, query, headers, body, &params};
    const std::string key = route::request_key(ns, r, req);
    const std::string prefix = ns + ":" + r.cfg.name + ":";
    FUZZ_CHECK(key.size() == prefix.size() + 64 && key.compare(0, prefix.size(), prefix) == 0);
    FUZZ_CHECK(key == route::request_key(ns, r, req));

    const std::string reordered = reordered_query(query);
    const route::request_view req2{method, path, reordered, headers, body, &params};
    FUZZ_CHECK(key == route::request_key(ns, r, req2));

    const auto expanded = route::expand_categories(r.categories, req);
    FUZZ_CHECK(expanded.size() <= 64 * r.categories.size());
    FUZZ_CHECK(std::set<std::string>(expanded.begin(), expanded.end()).size() == expanded.size());
    return 0;
}
