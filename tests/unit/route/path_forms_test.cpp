// The readings of a path backends disagree on (web cache deception): which paths are
// ambiguous, and how the most lenient backends resolve them.
#include <cachecar/route/path_forms.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace cachecar::route {
namespace {

TEST(path_forms, ambiguous_paths) {
    struct row {
        const char* path;
        bool ambiguous;
    };
    const std::vector<row> table{
        {"/", false},
        {"/static/app.css", false},
        {"/items/X/", false},          // a trailing slash is keyed, not ambiguous
        {"/files/my%20doc.pdf", false},
        {"/a/b%2Dc", false},
        {"/static/..%2Fapi%2Fv1%2Fprofile", true},
        {"/static/%2e%2e/api", true},
        {"/static/%2E%2E/api", true},
        {"/static/../api", true},
        {"/static/./x", true},
        {"/static/.%2e/api", true},
        {"/static/..;/api", true},
        {"/static/x.css;/../api", true},
        {"/static/x;jsessionid=1", true},
        {"/static/..%5capi", true},
        {"/static/..\\api", true},
        {"/static//x", true},
        {"//static/x", true},
        {"/static/%3b", true},
        {"/static/%00", true},
        {"/static/%252e%252e/api", true},  // decoded twice by some
        {"/static/%zz", true},
        {"/static/%4", true},
        {"/static/\xc3\xa9", true},       // raw non-ASCII: clients encode it, backends differ
        {"/files/caf%C3%A9", false},         // encoded UTF-8 is one reading everywhere
        {"/static/..%c0%af/api", true},      // overlong '/', decoded as one by old IIS
        {"/static/%c0%ae%c0%ae/api", true},  // overlong '.'
        {"/static/%e0%80%af", true},
        {"/static/%ed%a0%80", true},         // a surrogate
        {"/static/%ff", true},
        {"/static/%f0%9f%98%80", false},     // an emoji
        {"*", false},
    };
    for (const auto& r : table) EXPECT_EQ(!path_ambiguity(r.path).empty(), r.ambiguous) << r.path << ": " << path_ambiguity(r.path);
}

TEST(path_forms, resolved_like_the_most_lenient_backend) {
    struct row {
        const char* path;
        const char* resolved;
    };
    const std::vector<row> table{
        {"/static/..%2Fapi%2Fv1%2Fprofile", "/api/v1/profile"},
        {"/static/%2e%2e/api/v1/profile", "/api/v1/profile"},
        {"/static/..;/api", "/api"},
        {"/static/x.css;/../../api/v1/profile", "/api/v1/profile"},
        {"/static/..\\api\\v1", "/api/v1"},
        {"/a//b/./c/", "/a/b/c/"},
        {"/../../x", "/x"},
        {"/", "/"},
        {"/a/%2525", "/a/%2525"},  // decoded once to "%25", re-encoded so the matcher decodes to "%25"
        {"/v/7%2F..%2F8", "/v/8"},
    };
    for (const auto& r : table) EXPECT_EQ(resolved_path(r.path), r.resolved) << r.path;
}

}  // namespace
}  // namespace cachecar::route
