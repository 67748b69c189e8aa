#include <cachecar/app/tier_checks.hpp>

#include <cachecar/cache/mongo/mongo_tier.hpp>
#include <cachecar/cache/redis/redis_client.hpp>

namespace cachecar {

const config::tier_checks& tier_checks() {
    static const config::tier_checks checks{
        [](std::string_view url) {
            auto parsed = cache::redis::parse_redis_url(url);
            return parsed ? std::string() : parsed.error;
        },
        [](std::string_view uri) {
            auto valid = cache::mongo::validate_uri(std::string(uri));
            return valid ? std::string() : valid.error;
        },
    };
    return checks;
}

}  // namespace cachecar
