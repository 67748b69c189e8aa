#include <cachecar/proxy/routing.hpp>

#include <cachecar/proxy/forwarding.hpp>
#include <cachecar/route/path_forms.hpp>

namespace cachecar::proxy {

route_decision decide_route(const route::matcher& routes, const request& req, std::string_view method) {
    const auto [path, query] = split(req.target());
    if (method.empty()) method = req.method_string();
    route_decision d;
    const auto ambiguity = route::path_ambiguity(path);
    d.invalidation = routes.find_invalidation(method, path);
    if (!ambiguity.empty()) {
        const auto resolved = route::resolved_path(path);
        d.invalidation_resolved = routes.find_invalidation(method, resolved);
        if (d.invalidation_resolved && d.invalidation && d.invalidation_resolved.target == d.invalidation.target &&
            d.invalidation_resolved.params == d.invalidation.params)
            d.invalidation_resolved = {};  // the same purge twice
        if (!d.invalidation && d.invalidation_resolved) std::swap(d.invalidation, d.invalidation_resolved);
    }
    if (d.invalidation) return d;
    d.cacheable = routes.find_route(method, path);
    if (d.cacheable) {
        if (!ambiguity.empty()) {
            d.bypass = "ambiguous_path";
        } else if (method != req.method_string()) {
            d.bypass = "method_override";
        }
    }
    return d;
}

keyed_request::keyed_request(const request& prepared, const route::path_params& params, bool alias_underscores)
    : addressing_storage_(addressing_fields(prepared, alias_underscores)) {
    headers_.reserve(16);
    for (const auto& f : prepared) headers_.push_back({f.name_string(), f.value()});
    addressing_.reserve(addressing_storage_.size());
    for (const auto& [name, value] : addressing_storage_) addressing_.push_back({name, value});
    const auto [path, query] = split(prepared.target());
    view_ = route::request_view{prepared.method_string(), path, query, headers_, prepared.body(), &params,
                                addressing_, alias_underscores};
}

}  // namespace cachecar::proxy
