// The step between a parsed request and serving it: which rule of the config
// snapshot answers it, and the borrowed view the key and category templates read.
// Pure; proxy.cpp and the request fuzz target (tests/fuzz) both go through here.
#pragma once

#include <cachecar/proxy/http_names.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/route/request_view.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachecar::proxy {

// A write route (invalidation) is checked first, then the cacheable routes; neither
// means pass-through.
struct route_decision {
    route::match_result<route::compiled_invalidation> invalidation;
    // A write whose path backends may read another way (route/path_forms.hpp) also
    // purges what its resolved reading matches: whichever the backend took, its
    // entries go.
    route::match_result<route::compiled_invalidation> invalidation_resolved;
    route::match_result<route::compiled_route> cacheable;
    // Set when `cacheable` matched but its cache must not be used for this request:
    // "ambiguous_path" (it could name another resource to the backend) or
    // "method_override" (the backend is asked to treat it as another method).
    std::string_view bypass;
};
// `method` is the method to route by: the request's, or what method_override says.
route_decision decide_route(const route::matcher& routes, const request& req, std::string_view method = {});

// A request as the key builder reads it: a view of the prepared request (after
// http/forwarding) with the addressing fields every key holds. The view points into
// this object and into `prepared`; neither may move while it is used.
class keyed_request {
public:
    keyed_request(const request& prepared, const route::path_params& params, bool alias_underscores);
    keyed_request(const keyed_request&) = delete;
    keyed_request& operator=(const keyed_request&) = delete;
    const route::request_view& view() const { return view_; }

private:
    std::vector<route::header_view> headers_;
    std::vector<std::pair<std::string, std::string>> addressing_storage_;
    std::vector<route::header_view> addressing_;
    route::request_view view_;
};

}  // namespace cachecar::proxy
