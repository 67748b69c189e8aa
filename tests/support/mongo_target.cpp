#include "support/mongo_target.hpp"

#include <atomic>
#include <cstdlib>
#include <cstdio>

#include <unistd.h>

namespace cachecar::test {

namespace {
const char* real_uri() {
    const char* v = std::getenv("CACHECAR_TEST_MONGO_URI");
    return (v != nullptr && *v != '\0') ? v : nullptr;
}
}  // namespace

std::string mongo_target::describe() {
    return real_uri() ? std::string("a real MongoDB at CACHECAR_TEST_MONGO_URI")
                      : std::string("the MongoDB wire-protocol test server (tests/support)");
}

mongo_target::mongo_target() {
    static std::atomic<bool> announced{false};
    if (!announced.exchange(true)) std::fprintf(stderr, "[mongo tests] running against %s\n", describe().c_str());
    if (const char* uri = real_uri()) {
        uri_ = uri;
    } else {
        server_ = std::make_unique<mongo_test_server>();
        uri_ = server_->uri();
    }
}

std::string mongo_target::uri() const { return uri_; }

std::string mongo_target::fresh_database() {
    static std::atomic<int> counter{0};
    return "cachecar_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
}

}  // namespace cachecar::test
