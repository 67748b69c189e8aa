// What an operator sees through the admin API, for tests that check cachecar's own
// account of a fault: tier states from /health and counters from /metrics.
#pragma once

#include <cstdint>
#include <string>

namespace cachecar::test {

// The tier's state in GET /health ("up", "down", "disabled"); "?" if /health did not
// answer 200 with that tier.
std::string tier_state(std::uint16_t admin_port, const std::string& tier);

// The sum of every series in GET /metrics whose printed form starts with `prefix`:
// a whole series (R"(cachecar_tier_up{tier="redis"})") gives its value, a partial one
// (R"(cachecar_tier_failures_total{tier="redis")") adds up the rest of its labels.
// Labels are in their printed order. 0 if none (counters appear on first use).
double metric(std::uint16_t admin_port, const std::string& prefix);

}  // namespace cachecar::test
