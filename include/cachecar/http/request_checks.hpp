// The checks a client request passes before the handler sees it, as pure functions:
// the session (server.cpp) runs them between its reads, and the request fuzz target
// (tests/fuzz) runs the very same ones on raw bytes. Nothing here does I/O.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/net.hpp>

#include <cstddef>
#include <string_view>

namespace cachecar::http {

using request_parser = beast::http::request_parser<beast::http::string_body>;

// Where the request head ends in the bytes read so far.
struct head_scan {
    std::size_t size = 0;     // head length through the blank line; 0: not seen yet
    bool over_limit = false;  // no end of head within max_header_bytes: answer 431
};
head_scan scan_head(std::string_view seen, std::size_t max_header_bytes);

// Checks the raw request head (request line and fields, through the blank line) for
// what Beast 1.81 tolerates but a backend may read differently: obsolete line
// folding, bare CR or LF, and control characters. Returns why it is rejected, or "".
std::string_view raw_head_problem(std::string_view head);

// Sets the parser's header and body limits from the config.
void apply_limits(request_parser& parser, const config::limits_config& limits);

// The status to answer a failed read with: 431 (head too large, only while reading
// the head), 413 (body over the limit), 400 (malformed), or 0 for no answer at all
// (end of stream, partial message, timeout, reset).
unsigned rejection_status(const error_code& ec, bool reading_head);

// Checks framing rules Beast 1.81 does not enforce itself: Transfer-Encoding together
// with Content-Length, either field repeated, or a coding other than a lone
// "chunked". False means 400 and close rather than risk a front/back disagreement
// on where the message ends.
bool acceptable_framing(const beast::http::request_header<>& head);

}  // namespace cachecar::http
