// Raw client bytes through everything a request meets before it is served: the
// session's head scan and raw-head checks, Beast's request_parser with the
// configured limits, the framing checks, then the router and the key and category
// templates of the matched rule. Each step is the function the server itself calls
// (http/request_checks.hpp, proxy/routing.hpp, proxy/forwarding.hpp, route/key_builder.hpp), in the order
// server.cpp and proxy.cpp call them; only the socket is replaced by a test stream.
#include "fuzz_common.hpp"

#include <cachecar/config/config.hpp>
#include <cachecar/proxy/forwarding.hpp>
#include <cachecar/http/request_checks.hpp>
#include <cachecar/proxy/routing.hpp>
#include <cachecar/route/key_builder.hpp>
#include <cachecar/route/matcher.hpp>

#include <boost/beast/_experimental/test/stream.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

namespace bh = boost::beast::http;
using namespace cachecar;

// The production matrix (conf/production.yaml) plus the shapes it does not use:
// path parameters in a cacheable route, a trailing wildcard, a header key field,
// a shared route and extra credential headers. Limits are small so that the 431 and
// 413 paths are reachable with inputs of a few kilobytes.
constexpr std::string_view route_table = R"(
server:
  listen: 127.0.0.1:8080
  upstream: http://127.0.0.1:3002
  admin_listen: 127.0.0.1:9901
  namespace: momentry
limits:
  max_header_bytes: 1KiB
  max_body_bytes: 2KiB
  max_upload_bytes: 2KiB
routes:
  - name: videos_list
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    key: [query.page, query.limit]
    categories: [videos]
  - name: lookup
    match: GET /api/v1/lookup
    tiers: [memory]
    ttl: 60m
    key: [query.uuid]
    categories: [video_meta, "video:{query.uuid}"]
  - name: search
    match: POST /api/v1/search
    tiers: [memory]
    ttl: 5m
    key: [body]
    categories: [search]
  - name: search_hybrid
    match: POST /api/v1/search/hybrid
    tiers: [memory]
    ttl: 10m
    key: [body, header.Accept-Language]
    categories: [search, "lang:{header.accept-language}"]
  - name: video
    match: GET /api/v1/videos/{uuid}/frames/{n}
    tiers: [memory]
    ttl: 1m
    key: [path.uuid, path.n, method]
    categories: ["video:{path.uuid}", "frame:{path.uuid}:{path.n}:{query.size}"]
    credential_headers: [X-Tenant]
  - name: static
    match: GET /static/*
    tiers: [memory]
    ttl: 1h
    shared: true
  - name: health
    match: GET /health
    tiers: [memory]
    ttl: 30s
invalidate:
  - match: POST /api/v1/register
    purge: [videos]
  - match: DELETE /api/v1/videos/{uuid}
    purge: [videos, "video:{path.uuid}"]
  - match: POST /api/v1/vectorize
    purge: [search, "lang:{header.accept-language}"]
)";

struct fixture {
    config::config cfg;
    route::matcher routes;
    proxy::forwarding_policy policy;
    boost::asio::io_context io;

    static config::config load() {
        auto loaded = config::load_string(route_table, "fuzz_request");
        if (!loaded.value) {
            for (const auto& d : loaded.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
            std::abort();
        }
        return std::move(*loaded.value);
    }
    fixture() : cfg(load()), routes(cfg), policy(proxy::forwarding_policy::from(cfg.server)) {}
};

fixture& table() {
    static fixture f;  // built on the first input; leaks nothing (static storage)
    return f;
}

// What the session would answer; the fuzzer only needs to know it got this far.
enum class outcome { no_answer, rejected, served };

void check_key(const std::string& key, const route::compiled_route& r, std::string_view ns) {
    // "<namespace>:<route>:<64 hex>"
    const std::string prefix = std::string(ns) + ":" + r.cfg.name + ":";
    FUZZ_CHECK(key.size() == prefix.size() + 64);
    FUZZ_CHECK(key.compare(0, prefix.size(), prefix) == 0);
    for (std::size_t i = prefix.size(); i < key.size(); ++i)
        FUZZ_CHECK((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'));
}

// One request off the connection, as server.cpp's session loop takes it: read until
// the end of the head (at most max_header_bytes), check the raw head, parse with
// the limits, check framing, read the body; then route and key it as proxy.cpp does.
outcome next_request(fixture& t, boost::beast::test::stream& client, boost::beast::flat_buffer& buffer,
                     bool& keep_alive) {
    const auto& limits = t.cfg.limits;
    boost::system::error_code ec;
    http::head_scan scan;
    for (;;) {
        scan = http::scan_head({static_cast<const char*>(buffer.data().data()), buffer.size()}, limits.max_header_bytes);
        if (scan.size != 0) break;
        if (scan.over_limit) {
            FUZZ_CHECK(http::rejection_status(bh::error::header_limit, true) == 431);
            return outcome::rejected;
        }
        const auto want = std::min<std::size_t>(8192, limits.max_header_bytes - buffer.size());
        const auto n = client.read_some(buffer.prepare(want), ec);
        buffer.commit(n);
        if (ec) return outcome::no_answer;  // the client went away mid-head
    }
    FUZZ_CHECK(scan.size <= limits.max_header_bytes);
    if (!http::raw_head_problem({static_cast<const char*>(buffer.data().data()), scan.size}).empty())
        return outcome::rejected;

    // The session reads bodies in pieces (buffer_body); the target takes them whole.
    bh::request_parser<bh::string_body> parser;
    http::apply_limits(parser, limits);
    buffer.max_size(limits.max_header_bytes + limits.max_upload_bytes + 65536);
    bh::read_header(client, buffer, parser, ec);
    if (ec) return http::rejection_status(ec, true) != 0 ? outcome::rejected : outcome::no_answer;
    if (!http::adopt_absolute_form(parser.get())) return outcome::rejected;
    if (!http::request_head_problem(parser.get()).empty()) return outcome::rejected;
    std::optional<bh::request_header<>> head;
    if (parser.get().chunked()) head = parser.get().base();
    if (!parser.is_done()) {
        bh::read(client, buffer, parser, ec);
        if (ec) return http::rejection_status(ec, false) != 0 ? outcome::rejected : outcome::no_answer;
    }
    if (head) parser.get().base() = std::move(*head);  // trailers are not fields
    FUZZ_CHECK(parser.get().body().size() <= limits.max_upload_bytes);

    http::request req = parser.release();
    keep_alive = req.keep_alive();
    const auto decision = proxy::decide_route(t.routes, req, proxy::overridden_method(req, t.policy).method);
    FUZZ_CHECK(!(decision.invalidation && decision.cacheable));
    FUZZ_CHECK(!decision.invalidation_resolved || decision.invalidation);
    proxy::prepare_forwarded_request(req, t.policy, "127.0.0.1",
                                    decision.cacheable ? decision.cacheable.target : nullptr);
    // What is forwarded never carries a field cachecar would not key or forward.
    for (const auto& f : req) FUZZ_CHECK(f.name_string().find('_') == std::string_view::npos);
    FUZZ_CHECK(http::line_count(req.base(), "host") == 1);
    if (decision.cacheable) {
        const auto& r = *decision.cacheable.target;
        const proxy::keyed_request keyed(req, decision.cacheable.params, false);
        const auto key = route::request_key(t.cfg.server.key_namespace, r, keyed.view());
        check_key(key, r, t.cfg.server.key_namespace);
        FUZZ_CHECK(key == route::request_key(t.cfg.server.key_namespace, r, keyed.view()));  // deterministic
        (void)route::expand_categories(r.categories, keyed.view());
        (void)route::unkeyed_query_parameter(r, http::split(req.target()).query);
    } else if (decision.invalidation) {
        const proxy::keyed_request keyed(req, decision.invalidation.params, false);
        (void)route::expand_categories(decision.invalidation.target->purges, keyed.view());
    }
    (void)proxy::make_upstream_request(req, "127.0.0.1", static_cast<bool>(decision.cacheable), true);
    return outcome::served;
}

void run(std::string_view bytes) {
    auto& t = table();
    boost::beast::test::stream client(t.io, bytes);
    client.close_remote();  // the input, then end of stream
    boost::beast::flat_buffer buffer;
    // Pipelined requests share the buffer, as on a keep-alive connection; a few
    // are enough to cover leftovers from one request feeding the next.
    for (int i = 0; i < 8; ++i) {
        bool keep_alive = false;
        if (next_request(t, client, buffer, keep_alive) != outcome::served || !keep_alive) return;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    run(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
