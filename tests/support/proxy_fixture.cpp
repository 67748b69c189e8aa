#include "support/proxy_fixture.hpp"

#include <cstdlib>
#include <stdexcept>

namespace cachecar::test {

std::string with_upstream(std::string yaml, std::uint16_t port) {
    const std::string marker = "{UPSTREAM}";
    for (auto pos = yaml.find(marker); pos != std::string::npos; pos = yaml.find(marker)) {
        yaml.replace(pos, marker.size(), std::to_string(port));
    }
    return yaml;
}

unsigned test_io_threads() {
    const char* env = std::getenv("CACHECAR_TEST_THREADS");
    if (env == nullptr || *env == '\0') return 2;
    const int n = std::atoi(env);
    if (n < 1) throw std::invalid_argument(std::string("CACHECAR_TEST_THREADS must be >= 1, got ") + env);
    return static_cast<unsigned>(n);
}

config::config must_load(const std::string& yaml, const std::string& file_name) {
    auto loaded = config::load_string(yaml, file_name);
    std::string problems;
    for (const auto& d : loaded.errors) problems += d.to_string() + "\n";
    EXPECT_TRUE(loaded.value.has_value()) << problems << "in:\n" << yaml;
    if (!loaded.value) throw std::runtime_error("invalid test config:\n" + problems);
    return std::move(*loaded.value);
}

void proxy_fixture::start(const std::string& routes_yaml, const std::string& server_extra) {
    std::string yaml = "server:\n"
                       "  listen: 127.0.0.1:0\n"
                       "  admin_listen: 127.0.0.1:0\n"
                       "  upstream: http://127.0.0.1:{UPSTREAM}\n"
                       "  namespace: test\n"
                       "  threads: " + std::to_string(test_io_threads()) + "\n" +
                       server_extra + "tiers:\n  memory: { max_bytes: 64MiB }\n" + routes_yaml;
    cachecar_ = std::make_unique<app>(must_load(with_upstream(yaml, origin_.port())));
    cachecar_->start();
}

void proxy_fixture::TearDown() {
    if (cachecar_) cachecar_->stop();
    cachecar_.reset();
}

}  // namespace cachecar::test
