// The checks a client request passes before the handler sees it, as pure functions:
// the session (server.cpp) runs them between its reads, and the request fuzz target
// (tests/fuzz) runs the very same ones on raw bytes. Nothing here does I/O.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/net.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

namespace cachecar::http {

// The session's parser: it reads the head, then the body into pieces (http/body.hpp).
using request_parser = beast::http::request_parser<beast::http::buffer_body>;

// Where the request head ends in the bytes read so far.
struct head_scan {
    std::size_t size = 0;     // head length through the blank line; 0: not seen yet
    bool over_limit = false;  // no end of head within max_header_bytes: answer 431
};
head_scan scan_head(std::string_view seen, std::size_t max_header_bytes);

// Checks a raw message head (start line and fields, through the blank line) for what
// Beast 1.81 tolerates but another reader may take differently: obsolete line folding,
// bare CR or LF, and control characters. Returns why it is rejected, or "". Used on
// client requests and on the backend's responses alike.
std::string_view raw_head_problem(std::string_view head);

// Sets the parser's header and body limits from the config: the head up to
// max_header_bytes, the body up to max_upload_bytes (0: no limit; a body cachecar
// must hold, because a key reads it, is bounded again by max_body_bytes).
template <class Parser>
void apply_limits(Parser& parser, const config::limits_config& limits) {
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    if (limits.max_upload_bytes == 0) {
        parser.body_limit(boost::none);
    } else {
        parser.body_limit(limits.max_upload_bytes);
    }
}

// The status to answer a failed read with: 431 (head too large, only while reading
// the head), 413 (body over the limit), 400 (malformed), or 0 for no answer at all
// (end of stream, partial message, timeout, reset).
unsigned rejection_status(const error_code& ec, bool reading_head);

// A request target in absolute-form ("http://host/path?q") becomes origin-form, and
// its authority the Host (RFC 9112 3.2.2: the target's authority wins over any Host
// field), so routing, the key and the backend all see one host and one path. False
// when the target is absolute-form with another scheme or a bad authority (answer 400).
bool adopt_absolute_form(beast::http::request_header<>& head);

// Checks a parsed request head for what RFC 9112 answers with 400 but Beast 1.81 lets
// through, each a way for cachecar and the backend to read one message differently:
// - framing: Transfer-Encoding with Content-Length, either field repeated, a
//   Content-Length that is not plain digits (also "6, 6"), a coding other than a lone
//   "chunked", Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1, 6.3);
// - Host: missing in HTTP/1.1, repeated, or not a valid authority (RFC 9112 3.2);
// - a fragment ('#') in the target, which is never sent (RFC 9112 3.2).
// Returns why it is rejected, or "" when the head is acceptable.
std::string_view request_head_problem(const beast::http::request_header<>& head);

}  // namespace cachecar::http
