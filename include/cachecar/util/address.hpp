// Addresses as text: IP prefixes (for trusted proxies) and the RFC 3986 authority a
// Host field must be. Pure functions, shared by the config loader (validation) and
// the request path (matching), so `--check` accepts exactly what runs.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cachecar::util {

// An IPv4 or IPv6 network: "10.0.0.0/8", "fd00::/8", or one address ("127.0.0.1",
// "::1", the whole-address prefix). IPv4 is held as IPv4-mapped IPv6, so a prefix of
// either family also matches the other form of the same address.
struct ip_prefix {
    std::array<std::uint8_t, 16> bytes{};
    unsigned length = 0;  // in bits, of the 128-bit form
};
std::optional<ip_prefix> parse_ip_prefix(std::string_view text);

// Whether the textual address (as Asio prints a peer: "127.0.0.1", "::1",
// "::ffff:10.0.0.1") lies in the prefix. False for anything that is not an address.
bool prefix_contains(const ip_prefix& prefix, std::string_view address);

// RFC 9110 7.2 / RFC 3986 3.2.2: uri-host [ ":" port ], where uri-host is an
// IP-literal in brackets, an IPv4 address or a reg-name (unreserved, pct-encoded and
// sub-delims characters; may be empty), and port is digits. What a Host field value
// must be; anything else is answered 400 (RFC 9112 3.2).
bool valid_authority(std::string_view text);

}  // namespace cachecar::util
