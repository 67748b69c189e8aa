#include <cachecar/route/pattern.hpp>

#include <gtest/gtest.h>

namespace cachecar::route {
namespace {

TEST(parse_match, literal_and_param_segments) {
    auto m = parse_match("GET /api/v1/videos/{uuid}");
    ASSERT_TRUE(m) << m.error;
    EXPECT_EQ(m->method, "GET");
    EXPECT_EQ(m->path, "/api/v1/videos/{uuid}");
    ASSERT_EQ(m->pattern.segments.size(), 4u);
    EXPECT_FALSE(m->pattern.segments[0].is_param);
    EXPECT_EQ(m->pattern.segments[0].text, "api");
    EXPECT_TRUE(m->pattern.segments[3].is_param);
    EXPECT_EQ(m->pattern.segments[3].text, "uuid");
    EXPECT_FALSE(m->pattern.trailing_wildcard);
    EXPECT_EQ(m->pattern.param_names(), std::vector<std::string>{"uuid"});
}

TEST(parse_match, wildcard_root_and_case) {
    auto m = parse_match("  delete   /a/*  ");
    ASSERT_TRUE(m) << m.error;
    EXPECT_EQ(m->method, "DELETE");
    EXPECT_EQ(m->path, "/a/*");
    ASSERT_EQ(m->pattern.segments.size(), 1u);
    EXPECT_TRUE(m->pattern.trailing_wildcard);

    auto root = parse_match("GET /");
    ASSERT_TRUE(root);
    EXPECT_TRUE(root->pattern.segments.empty());

    auto all = parse_match("GET /*");
    ASSERT_TRUE(all);
    EXPECT_TRUE(all->pattern.segments.empty());
    EXPECT_TRUE(all->pattern.trailing_wildcard);

    auto slash = parse_match("GET /a/b/");
    ASSERT_TRUE(slash);
    EXPECT_EQ(slash->pattern.segments.size(), 2u);  // a trailing slash is ignored
}

TEST(parse_match, literal_segments_are_decoded) {
    auto m = parse_match("GET /a%20b");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->pattern.segments[0].text, "a b");
}

TEST(parse_match, errors) {
    auto error_of = [](std::string_view text) {
        auto m = parse_match(text);
        EXPECT_FALSE(m) << text;
        return m.error;
    };
    EXPECT_EQ(error_of(""), "empty match (expected \"METHOD /path\")");
    EXPECT_EQ(error_of("GET"), "missing path (expected \"METHOD /path\")");
    EXPECT_EQ(error_of("/a"), "missing method (expected \"METHOD /path\")");
    EXPECT_EQ(error_of("GET a/b"), "path must start with '/'");
    EXPECT_EQ(error_of("G(T /a"), "bad method \"G(T\"");
    EXPECT_EQ(error_of("GET /a extra"), "unexpected text after the path");
    EXPECT_EQ(error_of("GET /a/{}"), "empty parameter name '{}'");
    EXPECT_EQ(error_of("GET /a/{a}{b}"), "a parameter must fill a whole segment: \"{a}{b}\"");
    EXPECT_EQ(error_of("GET /a/x{a}"), "a parameter must fill a whole segment: \"x{a}\"");
    EXPECT_EQ(error_of("GET /a/{a"), "a parameter must fill a whole segment: \"{a\"");
    EXPECT_EQ(error_of("GET /a/{a-b}"), "bad parameter name \"a-b\" (use letters, digits and '_')");
    EXPECT_EQ(error_of("GET /*/a"), "'*' is only allowed as the final segment");
    EXPECT_EQ(error_of("GET /a*"), "'*' must be a whole final segment: \"a*\"");
    EXPECT_EQ(error_of("GET /{id}/x/{id}"), "duplicate parameter {id}");
    EXPECT_EQ(error_of("GET /a?x=1"), "path may not contain a query or fragment ('?', '#')");
    EXPECT_EQ(error_of("GET /a//b"), "empty path segment ('//')");
}

TEST(parse_key_field, sources) {
    auto q = parse_key_field("query.page");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->from, source::query);
    EXPECT_EQ(q->text, "page");
    auto h = parse_key_field("header.Accept-Language");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->from, source::header);
    EXPECT_EQ(h->text, "accept-language");
    auto p = parse_key_field("path.uuid");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->from, source::path);
    EXPECT_EQ(parse_key_field("body")->from, source::body);
    EXPECT_EQ(parse_key_field("method")->from, source::method);
}

TEST(parse_key_field, errors) {
    EXPECT_EQ(parse_key_field("bogus").error,
              "bad key field \"bogus\" (expected path.NAME, query.NAME, header.NAME, body or method)");
    EXPECT_FALSE(parse_key_field("query."));
    EXPECT_FALSE(parse_key_field("body.x"));
    EXPECT_EQ(parse_key_field("header.a b").error, "bad header name \"a b\"");
    EXPECT_EQ(parse_key_field("path.a-b").error, "bad path parameter name \"a-b\"");
}

TEST(category_template, parts_and_shape) {
    auto c = parse_category_template("video:{query.uuid}");
    ASSERT_TRUE(c) << c.error;
    ASSERT_EQ(c->parts.size(), 2u);
    EXPECT_EQ(c->parts[0].from, source::literal);
    EXPECT_EQ(c->parts[0].text, "video:");
    EXPECT_EQ(c->parts[1].from, source::query);
    EXPECT_EQ(c->parts[1].text, "uuid");
    EXPECT_TRUE(c->has_placeholders());
    EXPECT_EQ(c->shape(), "video:{}");

    auto lit = parse_category_template("videos");
    ASSERT_TRUE(lit);
    EXPECT_FALSE(lit->has_placeholders());
    EXPECT_EQ(lit->shape(), "videos");

    auto multi = parse_category_template("{method}:{body}/{header.X-T}");
    ASSERT_TRUE(multi) << multi.error;
    EXPECT_EQ(multi->shape(), "{}:{}/{}");
    EXPECT_EQ(multi->parts[4].text, "x-t");
}

TEST(category_template, errors) {
    EXPECT_EQ(parse_category_template("").error, "a category may not be empty");
    EXPECT_EQ(parse_category_template("*").error, "\"*\" is reserved (purge all)");
    EXPECT_EQ(parse_category_template("a{").error, "unbalanced '{'");
    EXPECT_EQ(parse_category_template("a}").error, "unbalanced '}'");
    EXPECT_EQ(parse_category_template("a{b{c}}").error, "nested '{'");
    EXPECT_EQ(parse_category_template("a{}").error, "empty placeholder '{}'");
    EXPECT_EQ(parse_category_template("a{x.y}").error,
              "bad placeholder {x.y}: bad key field \"x.y\" (expected path.NAME, query.NAME, header.NAME, body or "
              "method)");
}

bool reaches(std::string_view purge, std::string_view produced) {
    auto p = parse_category_template(purge);
    auto q = parse_category_template(produced);
    EXPECT_TRUE(p && q);
    return purge_reaches(*p, *q);
}

TEST(purge_reaches, literal_and_placeholder_combinations) {
    EXPECT_TRUE(reaches("videos", "videos"));
    EXPECT_FALSE(reaches("videos", "video"));
    EXPECT_TRUE(reaches("video:{path.uuid}", "video:{query.uuid}"));
    EXPECT_TRUE(reaches("video:42", "video:{query.uuid}"));
    EXPECT_TRUE(reaches("video:", "video:{query.uuid}"));  // an absent value expands to ""
    EXPECT_FALSE(reaches("video:{path.uuid}", "videos"));
    EXPECT_FALSE(reaches("vid:{path.uuid}", "video:{query.uuid}"));
    EXPECT_TRUE(reaches("{header.x}", "anything"));
    EXPECT_TRUE(reaches("video:{path.id}", "video:{query.id}:{query.lang}"));
    EXPECT_FALSE(reaches("video:42", "audio:{query.id}"));
    EXPECT_FALSE(reaches("a{path.x}b", "c{query.y}"));
    EXPECT_TRUE(reaches("a{path.x}", "{query.y}b"));
}

}  // namespace
}  // namespace cachecar::route
