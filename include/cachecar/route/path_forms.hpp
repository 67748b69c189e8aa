// The readings of a request path that backends disagree on. cachecar's matcher splits
// the raw path at '/' and percent-decodes each segment; a backend may instead decode
// %2F into a separator, treat '\' as '/', drop ";params" (Tomcat, Spring), merge "//"
// and resolve "." and ".." (WSGI, static file servers), or decode twice. Where the
// readings can differ, one URL names two resources: the web cache deception lever.
// Pure functions; http/routing uses them to keep such requests out of the cache and
// to purge for both readings of a write.
#pragma once

#include <string>
#include <string_view>

namespace cachecar::route {

// Why backends may read `path` (a raw origin-form path, without the query) as a
// different resource than the matcher does, or "" when every reading agrees:
// a dot segment (".", "..", also percent-encoded), an encoded '/' or '\', a raw '\',
// a ';' (raw or encoded), an empty segment ("//"), an encoded NUL or control
// character, an encoded '%' (double decoding), a malformed escape, encoded bytes that
// are not UTF-8 (the overlong "%c0%af" was '/' to old servers), or a raw byte outside
// printable ASCII. Encoded UTF-8 ("caf%C3%A9") is not ambiguous.
std::string_view path_ambiguity(std::string_view path);

// The path as the most lenient backends resolve it: decoded once, '\' as '/', ";..."
// dropped from each segment, empty segments merged, dot segments removed (RFC 3986
// 5.2.4); a final '/' kept. Returned in a form the matcher decodes back to exactly
// that ('%' re-encoded as "%25"), so it can be routed like a raw path.
std::string resolved_path(std::string_view path);

}  // namespace cachecar::route
