#include <cachecar/http/request_checks.hpp>

#include <cachecar/util/ascii.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace cachecar::http {

namespace bh = beast::http;

head_scan scan_head(std::string_view seen, std::size_t max_header_bytes) {
    if (auto end = seen.find("\r\n\r\n"); end != std::string_view::npos) return {end + 4, false};
    return {0, seen.size() >= max_header_bytes};
}

std::string_view raw_head_problem(std::string_view head) {
    for (std::size_t i = 0; i < head.size(); ++i) {
        const auto c = static_cast<unsigned char>(head[i]);
        if (c == '\n') {
            if (i == 0 || head[i - 1] != '\r') return "bare LF";
            if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) return "obsolete line folding";
        } else if (c == '\r') {
            if (i + 1 >= head.size() || head[i + 1] != '\n') return "bare CR";
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return "control character";
        }
    }
    return {};
}

void apply_limits(request_parser& parser, const config::limits_config& limits) {
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(limits.max_body_bytes);
}

unsigned rejection_status(const error_code& ec, bool reading_head) {
    if (!ec) return 0;
    if (reading_head && (ec == bh::error::header_limit || ec == bh::error::buffer_overflow)) return 431;
    if (ec == bh::error::body_limit) return 413;  // e.g. a declared Content-Length over max_body_bytes
    if (ec.category() == error_code(bh::error::bad_target).category() && ec != bh::error::end_of_stream &&
        ec != bh::error::partial_message)
        return 400;
    return 0;
}

bool acceptable_framing(const bh::request_header<>& h) {
    const auto te_count = h.count(bh::field::transfer_encoding);
    const auto cl_count = h.count(bh::field::content_length);
    if (te_count > 0 && cl_count > 0) return false;  // RFC 9112 6.3: the classic smuggling pair
    if (cl_count > 1 || te_count > 1) return false;
    if (te_count == 1) {
        // Only a lone "chunked": any other coding would reach the backend re-framed
        // but still encoded, and a list is where front and back ends disagree.
        if (!util::iequals(trim(h[bh::field::transfer_encoding]), "chunked")) return false;
    }
    return true;
}

}  // namespace cachecar::http
