#include <cachecar/http/routing.hpp>

namespace cachecar::http {

route_decision decide_route(const route::matcher& routes, const request& req) {
    const auto [path, query] = split(req.target());
    const auto method = req.method_string();
    route_decision d;
    d.invalidation = routes.find_invalidation(method, path);
    if (!d.invalidation) d.cacheable = routes.find_route(method, path);
    return d;
}

std::vector<route::header_view> header_views(const request& req) {
    std::vector<route::header_view> out;
    out.reserve(16);
    for (const auto& f : req) out.push_back({f.name_string(), f.value()});
    return out;
}

route::request_view make_request_view(const request& req, const std::vector<route::header_view>& headers,
                                      const route::path_params& params) {
    const auto [path, query] = split(req.target());
    return route::request_view{req.method_string(), path, query, headers, req.body(), &params};
}

}  // namespace cachecar::http
