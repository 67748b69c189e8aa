#include <cachecar/util/address.hpp>

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <string>

namespace cachecar::util {

namespace {

// Text -> 16 bytes (IPv4 as ::ffff:a.b.c.d); nullopt if not an address.
std::optional<std::array<std::uint8_t, 16>> parse_address(std::string_view text, bool& v4) {
    if (text.empty() || text.size() > 45) return std::nullopt;
    const std::string s(text);
    std::array<std::uint8_t, 16> out{};
    in_addr a4{};
    if (::inet_pton(AF_INET, s.c_str(), &a4) == 1) {
        v4 = true;
        out[10] = 0xff;
        out[11] = 0xff;
        std::memcpy(out.data() + 12, &a4, 4);
        return out;
    }
    in6_addr a6{};
    if (::inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
        v4 = false;
        std::memcpy(out.data(), &a6, 16);
        return out;
    }
    return std::nullopt;
}

bool is_unreserved_or_sub_delim(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

std::optional<ip_prefix> parse_ip_prefix(std::string_view text) {
    const auto slash = text.find('/');
    bool v4 = false;
    auto address = parse_address(text.substr(0, slash), v4);
    if (!address) return std::nullopt;
    ip_prefix p;
    p.bytes = *address;
    const unsigned family_bits = v4 ? 32 : 128;
    unsigned length = family_bits;
    if (slash != std::string_view::npos) {
        const auto digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3) return std::nullopt;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
        if (ec != std::errc{} || end != digits.data() + digits.size() || length > family_bits) return std::nullopt;
    }
    p.length = v4 ? length + 96 : length;
    // Host bits must be zero: "10.0.0.1/8" is most likely a typo for a host or for 10.0.0.0/8.
    for (unsigned bit = p.length; bit < 128; ++bit) {
        if ((p.bytes[bit / 8] >> (7 - bit % 8)) & 1) return std::nullopt;
    }
    return p;
}

bool prefix_contains(const ip_prefix& prefix, std::string_view address) {
    bool v4 = false;
    auto a = parse_address(address, v4);
    if (!a) return false;
    for (unsigned bit = 0; bit < prefix.length; ++bit) {
        const auto mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
        if (((*a)[bit / 8] & mask) != (prefix.bytes[bit / 8] & mask)) return false;
    }
    return true;
}

bool valid_authority(std::string_view text) {
    std::string_view host = text, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return false;
        const auto literal = text.substr(1, close - 1);
        bool v4 = false;
        // IPv6 literals only (IPvFuture is not something a client sends a proxy).
        if (!parse_address(literal, v4) || v4) return false;
        const auto rest = text.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') return false;
        port = rest.empty() ? std::string_view() : rest.substr(1);
        if (!rest.empty() && port.empty()) return true;  // "host:" is allowed (port = *DIGIT)
        host = {};
    } else {
        const auto colon = text.find(':');
        if (colon != std::string_view::npos) {
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
            if (port.find(':') != std::string_view::npos) return false;
        }
        for (std::size_t i = 0; i < host.size(); ++i) {
            const char c = host[i];
            if (c == '%') {
                if (i + 2 >= host.size() || !is_hex(host[i + 1]) || !is_hex(host[i + 2])) return false;
                i += 2;
            } else if (!is_unreserved_or_sub_delim(c)) {
                return false;
            }
        }
    }
    for (char c : port) {
        if (c < '0' || c > '9') return false;
    }
    return port.size() <= 5;
}

}  // namespace cachecar::util
