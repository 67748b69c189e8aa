// A backend that reads requests the way lenient web frameworks do, for poisoning
// tests: everything it reads goes into its answer, so a test can compare what a client
// got with what the backend would have said to that very request.
//
// What it reads, each the way some popular stack does:
// - headers through a CGI-style map (HTTP_X_API_KEY): `-` and `_` are the same
//   character, names are case-insensitive, repeated lines are joined with ", "
//   (Node, gunicorn, PHP, Rack);
// - the method from X-HTTP-Method-Override / X-HTTP-Method / X-Method-Override (Express
//   method-override, Symfony, ASP.NET);
// - the path from X-Original-URL / X-Rewrite-URL when present (Symfony, IIS), then
//   percent-decoded once, `\` as `/`, `;params` dropped from each segment (Tomcat,
//   Spring), `//` merged and dot segments resolved (WSGI, static file servers); a
//   trailing slash is a different resource (strict routers answer 404);
// - the query split on `&` and `;` (older Python, Rails), names case-insensitive,
//   the last value of a name winning (PHP, ASP.NET);
// - the host from X-Forwarded-Host, else Forwarded host=, else Host; the scheme from
//   X-Forwarded-Proto / X-Forwarded-Scheme / Forwarded proto= (and answers 301 to https
//   when told "http", the redirect-loop gadget); X-Forwarded-Prefix and -Port in links;
// - the user from Authorization, Cookie or X-API-Key ("profile of <user>");
// - X-Lang (joined lines) and Accept-Language (with Vary: Accept-Language);
// - the body, whatever the method;
// - and it refuses heads over 8 KiB with 400 (a smaller limit than cachecar's 16 KiB:
//   the HTTP Header Oversize lever of CPDoS).
// Paths it knows: /api/v1/items/{id}, /api/v1/videos, /api/v1/profile, /api/v1/feed,
// /api/v1/search, /api/v1/tracked, /static/*, /catalog, /upload, /not-cached[/*], and
// /echo (its body is the raw query, for desync gadgets); anything else is 404
// (storable by default: the CPDoS lever).
#pragma once

#include "support/test_origin.hpp"

#include <map>
#include <string>

namespace cachecar::test {

// What the model made of one request; `answer` is what it sends back.
struct model_reading {
    std::string method;
    std::string path;  // decoded and resolved
    std::map<std::string, std::string> query;
    std::string host, scheme, prefix, port, user, lang, accept_language, body;
};
model_reading model_read(const origin_request& req);

// The model's answer: 200 with the reading as text for a known path, 404 otherwise,
// 301 for an explicit "http" scheme.
origin_response model_backend(const origin_request& req, std::size_t sequence);

}  // namespace cachecar::test
