#include <cachecar/http/request_checks.hpp>

#include <cachecar/util/address.hpp>
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


unsigned rejection_status(const error_code& ec, bool reading_head) {
    if (!ec) return 0;
    if (reading_head && (ec == bh::error::header_limit || ec == bh::error::buffer_overflow)) return 431;
    if (ec == bh::error::body_limit) return 413;  // e.g. a declared Content-Length over max_body_bytes
    if (ec.category() == error_code(bh::error::bad_target).category() && ec != bh::error::end_of_stream &&
        ec != bh::error::partial_message)
        return 400;
    return 0;
}

bool adopt_absolute_form(bh::request_header<>& h) {
    const std::string_view target = h.target();
    if (target.empty() || target.front() == '/' || target == "*") return true;  // origin- or asterisk-form
    if (h.method() == bh::verb::connect) return true;  // authority-form belongs to CONNECT
    const auto scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return false;
    const auto scheme = target.substr(0, scheme_end);
    if (!util::iequals(scheme, "http") && !util::iequals(scheme, "https")) return false;
    const auto rest = target.substr(scheme_end + 3);
    const auto path_start = rest.find_first_of("/?");
    const auto authority = rest.substr(0, path_start);
    if (authority.empty() || !util::valid_authority(authority)) return false;
    std::string origin_form = path_start == std::string_view::npos ? std::string("/") : std::string(rest.substr(path_start));
    if (origin_form.front() == '?') origin_form.insert(origin_form.begin(), '/');
    const std::string host(authority);
    h.target(origin_form);
    h.set(bh::field::host, host);  // replaces every Host line the client sent
    return true;
}

std::string_view request_head_problem(const bh::request_header<>& h) {
    // One pass, comparing Beast's field codes: this runs for every request.
    std::size_t te_count = 0, cl_count = 0, hosts = 0;
    std::string_view te, cl, host;
    for (const auto& f : h) {
        switch (f.name()) {
        case bh::field::transfer_encoding:
            ++te_count;
            te = f.value();
            break;
        case bh::field::content_length:
            ++cl_count;
            cl = f.value();
            break;
        case bh::field::host:
            ++hosts;
            host = f.value();
            break;
        default:
            break;
        }
    }
    if (te_count > 0 && cl_count > 0) return "Transfer-Encoding with Content-Length";  // the classic smuggling pair
    if (cl_count > 1) return "repeated Content-Length";
    if (cl_count == 1) {
        // Beast accepts a list of equal values ("6, 6", RFC 9110 8.6 allows either);
        // a reader that takes the first or rejects it would frame the message
        // differently, so only plain digits pass.
        cl = trim(cl);
        if (cl.empty() || cl.find_first_not_of("0123456789") != std::string_view::npos) return "invalid Content-Length";
    }
    if (te_count > 1) return "repeated Transfer-Encoding";
    if (te_count == 1) {
        // Only a lone "chunked": any other coding would reach the backend re-framed
        // but still encoded, and a list is where front and back ends disagree.
        if (!util::iequals(trim(te), "chunked")) return "unsupported Transfer-Encoding";
        // HTTP/1.0 has no chunked coding: its framing is faulty (RFC 9112 6.1).
        if (h.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request";
    }
    if (hosts > 1) return "repeated Host";
    if (hosts == 0 && h.version() >= 11) return "missing Host";
    if (hosts == 1 && !util::valid_authority(host)) return "invalid Host";
    if (h.target().find('#') != std::string_view::npos) return "fragment in the request target";
    return {};
}

}  // namespace cachecar::http
