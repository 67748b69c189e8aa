#include "support/admin_probe.hpp"

#include "support/http_client.hpp"

#include <boost/json.hpp>

#include <sstream>

namespace cachecar::test {

std::string tier_state(std::uint16_t admin_port, const std::string& tier) {
    auto r = http_get(admin_port, "/health");
    if (r.status != 200) return "?";
    boost::system::error_code ec;
    auto doc = boost::json::parse(r.body, ec);
    if (ec || !doc.is_object()) return "?";
    const auto* tiers = doc.as_object().if_contains("tiers");
    const auto* state = tiers && tiers->is_object() ? tiers->as_object().if_contains(tier) : nullptr;
    return state && state->is_string() ? std::string(state->as_string()) : "?";
}

double metric(std::uint16_t admin_port, const std::string& prefix) {
    std::istringstream lines(http_get(admin_port, "/metrics").body);
    double sum = 0;
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(prefix, 0) != 0) continue;
        const auto space = line.rfind(' ');
        if (space != std::string::npos) sum += std::stod(line.substr(space + 1));
    }
    return sum;
}

}  // namespace cachecar::test
