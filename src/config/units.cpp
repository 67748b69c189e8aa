#include <cachecar/config/config.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <utility>

namespace cachecar::config {

namespace {

// Splits "123abc" into 123 and "abc"; nullopt without leading digits or on overflow.
std::optional<std::pair<std::uint64_t, std::string_view>> split_number(std::string_view text) {
    std::uint64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        const auto digit = static_cast<std::uint64_t>(text[i] - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    if (i == 0) return std::nullopt;
    return std::pair{value, text.substr(i)};
}

std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t limit) {
    if (b != 0 && a > limit / b) return std::nullopt;
    return a * b;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
    auto split = split_number(text);
    if (!split) return std::nullopt;
    static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 5> units{{
        {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};
    for (const auto& [unit, factor] : units) {
        if (split->second != unit) continue;
        auto ms = checked_mul(split->first, factor,
                              static_cast<std::uint64_t>(std::numeric_limits<duration::rep>::max()));
        if (!ms) return std::nullopt;
        return duration(static_cast<duration::rep>(*ms));
    }
    return std::nullopt;  // includes a bare number: units are required
}

std::optional<std::size_t> parse_size(std::string_view text) {
    auto split = split_number(text);
    if (!split) return std::nullopt;
    static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 10> units{{
        {"", 1},
        {"B", 1},
        {"KB", 1000ull},
        {"MB", 1000ull * 1000},
        {"GB", 1000ull * 1000 * 1000},
        {"TB", 1000ull * 1000 * 1000 * 1000},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
    }};
    for (const auto& [unit, factor] : units) {
        if (split->second != unit) continue;
        auto bytes = checked_mul(split->first, factor, std::numeric_limits<std::size_t>::max());
        if (!bytes) return std::nullopt;
        return static_cast<std::size_t>(*bytes);
    }
    return std::nullopt;
}

std::string_view to_string(tier_kind kind) {
    switch (kind) {
        case tier_kind::memory: return "memory";
        case tier_kind::redis: return "redis";
        case tier_kind::mongo: return "mongo";
    }
    return "unknown";
}

std::string diagnostic::to_string() const {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

}  // namespace cachecar::config
