#include <cachecar/route/matcher.hpp>

#include "text.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace cachecar::route {

namespace {

constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

// Splits a request path into decoded segments. An empty final segment is dropped,
// so "/a/b/" matches the pattern "/a/b". Returns false for targets that are not
// origin-form paths (e.g. "*" or absolute-form): those never match a route.
bool split_path(std::string_view path, std::vector<std::string>& out) {
    if (path.empty()) return true;  // treated as "/"
    if (path.front() != '/') return false;
    std::string_view rest = path.substr(1);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.empty()) return true;
    for (std::size_t start = 0;;) {
        std::size_t slash = rest.find('/', start);
        auto seg = rest.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        out.push_back(text::percent_decode(seg, false));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return true;
}

// A trie by path segment. Every node knows the lowest config index below it so a
// lookup can stop exploring branches that cannot beat the best match found so far;
// the cost of a lookup depends on the path depth and the branching at each level,
// not on how many routes exist.
class trie {
public:
    void insert(const path_pattern& pattern, const std::string& method, std::size_t index) {
        node* n = &root_;
        n->subtree_min = std::min(n->subtree_min, index);
        for (const auto& seg : pattern.segments) {
            std::unique_ptr<node>& child = seg.is_param ? n->param : n->literal[seg.text];
            if (!child) child = std::make_unique<node>();
            n = child.get();
            n->subtree_min = std::min(n->subtree_min, index);
        }
        add(pattern.trailing_wildcard ? n->wildcard : n->exact, method, index);
    }

    std::size_t find(std::initializer_list<std::string_view> methods, const std::vector<std::string>& segs) const {
        std::size_t best = none;
        search(root_, 0, methods, segs, best);
        return best;
    }

private:
    using candidates = std::vector<std::pair<std::string, std::size_t>>;  // method -> lowest index

    struct node {
        std::unordered_map<std::string, std::unique_ptr<node>> literal;
        std::unique_ptr<node> param;
        candidates exact;     // patterns ending here
        candidates wildcard;  // patterns ending here with "/*"
        std::size_t subtree_min = none;
    };

    static void add(candidates& c, const std::string& method, std::size_t index) {
        for (auto& [m, i] : c) {
            if (m == method) {
                i = std::min(i, index);  // a later duplicate can never win
                return;
            }
        }
        c.emplace_back(method, index);
    }

    static void consider(const candidates& c, std::initializer_list<std::string_view> methods, std::size_t& best) {
        for (const auto& [m, i] : c)
            if (i < best && std::find(methods.begin(), methods.end(), m) != methods.end()) best = i;
    }

    static void search(const node& n, std::size_t depth, std::initializer_list<std::string_view> methods,
                       const std::vector<std::string>& segs, std::size_t& best) {
        if (n.subtree_min >= best) return;
        consider(n.wildcard, methods, best);  // "*" also matches zero further segments
        if (depth == segs.size()) {
            consider(n.exact, methods, best);
            return;
        }
        const std::string& seg = segs[depth];
        if (auto it = n.literal.find(seg); it != n.literal.end()) search(*it->second, depth + 1, methods, segs, best);
        if (n.param && !seg.empty()) search(*n.param, depth + 1, methods, segs, best);
    }

    node root_;
};

path_params capture(const path_pattern& pattern, const std::vector<std::string>& segs) {
    path_params params;
    for (std::size_t i = 0; i < pattern.segments.size(); ++i)
        if (pattern.segments[i].is_param) params.emplace_back(pattern.segments[i].text, segs[i]);
    return params;
}

path_pattern compile_pattern(const std::string& method, const std::string& path, const std::string& what) {
    auto mp = parse_match(method + " " + path);
    if (!mp) throw std::invalid_argument(what + ": bad pattern \"" + method + " " + path + "\": " + mp.error);
    return std::move(mp.value->pattern);
}

void check_path_param(const template_part& part, const path_pattern& pattern, const std::string& what) {
    if (part.from != source::path) return;
    auto names = pattern.param_names();
    if (std::find(names.begin(), names.end(), part.text) == names.end())
        throw std::invalid_argument(what + ": path." + part.text + " is not a parameter of the pattern");
}

std::vector<category_template> compile_categories(const std::vector<std::string>& templates,
                                                  const path_pattern& pattern, const std::string& what) {
    std::vector<category_template> out;
    for (const auto& t : templates) {
        auto ct = parse_category_template(t);
        if (!ct) throw std::invalid_argument(what + ": bad category \"" + t + "\": " + ct.error);
        for (const auto& part : ct.value->parts) check_path_param(part, pattern, what);
        out.push_back(std::move(*ct.value));
    }
    return out;
}

compiled_route compile_route(std::size_t index, const config::route_config& cfg) {
    const std::string what = "route \"" + cfg.name + "\"";
    compiled_route r;
    r.index = index;
    r.cfg = cfg;
    r.pattern = compile_pattern(cfg.method, cfg.path_pattern, what);
    r.default_key = !cfg.key.has_value();
    if (cfg.key) {
        for (const auto& f : *cfg.key) {
            auto field = parse_key_field(f);
            if (!field) throw std::invalid_argument(what + ": bad key field \"" + f + "\": " + field.error);
            check_path_param(*field.value, r.pattern, what);
            r.key_fields.push_back(*field.value);
        }
    }
    r.categories = compile_categories(cfg.categories, r.pattern, what);
    r.credential_headers = {"authorization", "proxy-authorization", "cookie", "x-api-key"};
    for (const auto& h : cfg.credential_headers) {
        auto lower = text::to_lower(h);
        if (std::find(r.credential_headers.begin(), r.credential_headers.end(), lower) == r.credential_headers.end())
            r.credential_headers.push_back(std::move(lower));
    }
    return r;
}

}  // namespace

struct matcher::impl {
    std::vector<compiled_route> routes;
    std::vector<compiled_invalidation> invalidations;
    trie route_trie;
    trie invalidation_trie;
};

matcher::matcher(const config::config& cfg) : impl_(std::make_unique<impl>()) {
    impl_->routes.reserve(cfg.routes.size());
    for (std::size_t i = 0; i < cfg.routes.size(); ++i) {
        impl_->routes.push_back(compile_route(i, cfg.routes[i]));
        const auto& r = impl_->routes.back();
        impl_->route_trie.insert(r.pattern, r.cfg.method, i);
    }
    impl_->invalidations.reserve(cfg.invalidations.size());
    for (std::size_t i = 0; i < cfg.invalidations.size(); ++i) {
        const auto& c = cfg.invalidations[i];
        const std::string what = "invalidate entry " + std::to_string(i);
        compiled_invalidation inv;
        inv.index = i;
        inv.cfg = c;
        inv.pattern = compile_pattern(c.method, c.path_pattern, what);
        inv.purges = compile_categories(c.purge, inv.pattern, what);
        impl_->invalidation_trie.insert(inv.pattern, c.method, i);
        impl_->invalidations.push_back(std::move(inv));
    }
}

matcher::matcher(matcher&&) noexcept = default;
matcher& matcher::operator=(matcher&&) noexcept = default;
matcher::~matcher() = default;

match_result<compiled_route> matcher::find_route(std::string_view method, std::string_view path) const {
    std::vector<std::string> segs;
    if (!split_path(path, segs)) return {};
    // A HEAD is answered from the GET entry (the session drops the body), so GET
    // routes serve it; an explicit HEAD route listed earlier still wins.
    std::size_t best = method == "HEAD" ? impl_->route_trie.find({"HEAD", "GET"}, segs)
                                        : impl_->route_trie.find({method}, segs);
    if (best == none) return {};
    const auto& r = impl_->routes[best];
    return {&r, capture(r.pattern, segs)};
}

match_result<compiled_invalidation> matcher::find_invalidation(std::string_view method, std::string_view path) const {
    std::vector<std::string> segs;
    if (!split_path(path, segs)) return {};
    std::size_t best = impl_->invalidation_trie.find({method}, segs);
    if (best == none) return {};
    const auto& inv = impl_->invalidations[best];
    return {&inv, capture(inv.pattern, segs)};
}

const std::vector<compiled_route>& matcher::routes() const { return impl_->routes; }
const std::vector<compiled_invalidation>& matcher::invalidations() const { return impl_->invalidations; }

}  // namespace cachecar::route
