#include <cachecar/http/request_checks.hpp>
#include <cachecar/http/routing.hpp>
#include <cachecar/route/key_builder.hpp>

#include <gtest/gtest.h>

#include <string>

namespace cachecar::http {
namespace {

namespace bh = beast::http;

// Parses a whole request the way the session does after the head checks.
struct parsed_request {
    error_code ec;
    request_parser parser;
};
void parse(parsed_request& out, std::string_view bytes, const config::limits_config& limits = {}) {
    apply_limits(out.parser, limits);
    out.parser.eager(true);
    auto n = out.parser.put(net::buffer(bytes.data(), bytes.size()), out.ec);
    if (!out.ec && !out.parser.is_done() && n == bytes.size()) out.parser.put_eof(out.ec);
}

TEST(request_checks, scan_head_finds_the_blank_line_within_the_limit) {
    EXPECT_EQ(scan_head("GET / HTTP/1.1\r\n\r\nbody", 100).size, 18u);
    EXPECT_EQ(scan_head("GET / HTTP/1.1\r\nHost: a\r\n", 100).size, 0u);
    EXPECT_FALSE(scan_head("GET / HTTP/1.1\r\nHost: a\r\n", 100).over_limit);
    EXPECT_TRUE(scan_head("GET / HTTP/1.1\r\nHost: a\r\n", 10).over_limit);
}

TEST(request_checks, raw_head_problems) {
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "");
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\nHost: a\r\n\r\n"), "bare LF");
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\rHost: a\r\n\r\n"), "bare CR");
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), "obsolete line folding");
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), "control character");
    EXPECT_EQ(raw_head_problem("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), "");
}

TEST(request_checks, rejection_status_per_error) {
    EXPECT_EQ(rejection_status({}, true), 0u);
    EXPECT_EQ(rejection_status(bh::error::header_limit, true), 431u);
    EXPECT_EQ(rejection_status(bh::error::buffer_overflow, true), 431u);
    EXPECT_EQ(rejection_status(bh::error::buffer_overflow, false), 400u);
    EXPECT_EQ(rejection_status(bh::error::body_limit, false), 413u);
    EXPECT_EQ(rejection_status(bh::error::bad_method, true), 400u);
    EXPECT_EQ(rejection_status(bh::error::end_of_stream, true), 0u);
    EXPECT_EQ(rejection_status(bh::error::partial_message, false), 0u);
    EXPECT_EQ(rejection_status(net::error::operation_aborted, true), 0u);
}

TEST(request_checks, framing) {
    auto framing_ok = [](std::string_view head) {
        parsed_request p;
        parse(p, head);
        EXPECT_FALSE(p.ec && p.ec != bh::error::need_more) << p.ec.message();
        return acceptable_framing(p.parser.get());
    };
    EXPECT_TRUE(framing_ok("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    EXPECT_TRUE(framing_ok("POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n"));
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"));
    // Beast itself refuses "chunked" next to Content-Length, but not another coding.
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"));
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"));
}

TEST(request_checks, body_over_the_limit_is_413) {
    config::limits_config limits;
    limits.max_body_bytes = 4;
    parsed_request p;
    parse(p, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", limits);
    EXPECT_EQ(rejection_status(p.ec, true), 413u);
}

TEST(routing, write_routes_first_then_cacheable_then_pass_through) {
    auto loaded = config::load_string(R"(
routes:
  - { name: one, match: "GET /v/{id}", tiers: [memory], ttl: 1m, key: [path.id], categories: ["v:{path.id}"] }
invalidate:
  - { match: "DELETE /v/{id}", purge: ["v:{path.id}"] }
)");
    ASSERT_TRUE(loaded.value);
    const route::matcher routes(*loaded.value);

    request get{bh::verb::get, "/v/a%20b?x=1", 11};
    get.set(bh::field::authorization, "Bearer t");
    auto d = decide_route(routes, get);
    ASSERT_TRUE(d.cacheable);
    EXPECT_FALSE(d.invalidation);
    const auto headers = header_views(get);
    const auto view = make_request_view(get, headers, d.cacheable.params);
    EXPECT_EQ(view.path, "/v/a%20b");
    EXPECT_EQ(view.query, "x=1");
    EXPECT_EQ(route::expand_categories(d.cacheable.target->categories, view), std::vector<std::string>{"v:a b"});
    const auto key = route::request_key("ns", *d.cacheable.target, view);
    EXPECT_EQ(key.rfind("ns:one:", 0), 0u);
    EXPECT_NE(key, route::build_key("ns", *d.cacheable.target, view, ""));  // keyed per credential

    request del{bh::verb::delete_, "/v/a", 11};
    d = decide_route(routes, del);
    EXPECT_TRUE(d.invalidation);
    EXPECT_FALSE(d.cacheable);

    request other{bh::verb::get, "/elsewhere", 11};
    d = decide_route(routes, other);
    EXPECT_FALSE(d.invalidation || d.cacheable);
}

}  // namespace
}  // namespace cachecar::http
