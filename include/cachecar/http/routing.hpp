// The step between a parsed request and serving it: which rule of the config
// snapshot answers it, and the borrowed view the key and category templates read.
// Pure; proxy.cpp and the request fuzz target (tests/fuzz) both go through here.
#pragma once

#include <cachecar/http/message.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/route/request_view.hpp>

#include <vector>

namespace cachecar::http {

// At most one of the two is set: a write route (invalidation) is checked first, then
// the cacheable routes; neither means pass-through.
struct route_decision {
    route::match_result<route::compiled_invalidation> invalidation;
    route::match_result<route::compiled_route> cacheable;
};
route_decision decide_route(const route::matcher& routes, const request& req);

// The request's fields as borrowed views, in arrival order (they point into `req`).
std::vector<route::header_view> header_views(const request& req);

// A view of `req` for key and category templates; `headers` is header_views(req) and
// `params` the matcher's captures. Everything points into its arguments.
route::request_view make_request_view(const request& req, const std::vector<route::header_view>& headers,
                                      const route::path_params& params);

}  // namespace cachecar::http
