#include <cachecar/http/request_checks.hpp>
#include <cachecar/route/key_builder.hpp>

#include <gtest/gtest.h>

#include <string>

namespace cachecar::http {
namespace {

namespace bh = beast::http;

// Parses a whole request the way the session does after the head checks.
struct parsed_request {
    error_code ec;
    beast::http::request_parser<beast::http::string_body> parser;  // the whole body, for these checks
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

// The head's problem after Beast has parsed it ("" = acceptable), with absolute-form
// adopted first as the session does.
std::string head_problem(std::string_view head) {
    parsed_request p;
    parse(p, head);
    EXPECT_FALSE(p.ec && p.ec != bh::error::need_more) << p.ec.message() << " for " << head;
    if (!adopt_absolute_form(p.parser.get())) return "bad absolute-form target";
    return std::string(request_head_problem(p.parser.get()));
}

TEST(request_checks, framing) {
    auto framing_ok = [](std::string_view head) { return head_problem(head).empty(); };
    EXPECT_TRUE(framing_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"));
    EXPECT_TRUE(framing_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n"));
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"));
    // Beast itself refuses "chunked" next to Content-Length, but not another coding.
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"));
    EXPECT_FALSE(framing_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"));
}

TEST(request_checks, rfc9112_rules_beast_lets_through) {
    struct row {
        const char* rule;
        std::string head;
        std::string problem;  // "" = acceptable
    };
    const std::vector<row> table{
        {"HTTP/1.0 with Transfer-Encoding (RFC 9112 6.1)",
         "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"},
        {"HTTP/1.1 without Host (RFC 9112 3.2)", "GET / HTTP/1.1\r\n\r\n", "missing Host"},
        {"HTTP/1.0 without Host is fine", "GET / HTTP/1.0\r\n\r\n", ""},
        {"two Host lines", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "repeated Host"},
        {"two equal Host lines", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "repeated Host"},
        {"Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "invalid Host"},
        {"Host with user info", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "invalid Host"},
        {"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host"},
        {"Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", "invalid Host"},
        {"Host with a bad port", "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", "invalid Host"},
        {"Host with an open bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "invalid Host"},
        {"Host with a bad IPv6 literal", "GET / HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n", "invalid Host"},
        {"Host: name and port", "GET / HTTP/1.1\r\nHost: app.test:8080\r\n\r\n", ""},
        {"Host: IPv6 literal and port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ""},
        {"Host: percent-encoded reg-name", "GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n", ""},
        {"empty Host (RFC 9110 7.2 allows it)", "GET / HTTP/1.1\r\nHost:\r\n\r\n", ""},
        {"a fragment in the target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", "fragment in the request target"},
        {"absolute-form: its authority becomes Host (RFC 9112 3.2.2)",
         "GET http://app.test/a?b HTTP/1.1\r\nHost: evil.example\r\n\r\n", ""},
        {"absolute-form with a bad authority", "GET http://a@b/x HTTP/1.1\r\nHost: a\r\n\r\n", "bad absolute-form target"},
        {"absolute-form with another scheme", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", "bad absolute-form target"},
    };
    for (const auto& r : table) EXPECT_EQ(head_problem(r.head), r.problem) << r.rule;
}

TEST(request_checks, absolute_form_becomes_origin_form_with_its_host) {
    parsed_request p;
    parse(p, "GET http://App.Test:8080/a/b?c=1 HTTP/1.1\r\nHost: evil.example\r\nHost: other\r\n\r\n");
    ASSERT_TRUE(adopt_absolute_form(p.parser.get()));
    const auto& h = p.parser.get();
    EXPECT_EQ(h.target(), "/a/b?c=1");
    EXPECT_EQ(line_count(h, "host"), 1u);
    EXPECT_EQ(*single_value(h, "host"), "App.Test:8080");
    parsed_request q;
    parse(q, "GET http://a.test?x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    ASSERT_TRUE(adopt_absolute_form(q.parser.get()));
    EXPECT_EQ(q.parser.get().target(), "/?x");
}

TEST(request_checks, body_over_the_limit_is_413) {
    config::limits_config limits;
    limits.max_upload_bytes = 4;
    parsed_request p;
    parse(p, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", limits);
    EXPECT_EQ(rejection_status(p.ec, true), 413u);
}

}  // namespace
}  // namespace cachecar::http
