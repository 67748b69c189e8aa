// Where the MongoDB tests run: a real MongoDB when CACHECAR_TEST_MONGO_URI is set,
// otherwise the wire-protocol test server (tests/support/mongo_test_server), which
// the suite starts itself. Fault tests need the test server's controls and skip,
// saying so, against a real MongoDB.
#pragma once

#include "support/mongo_test_server.hpp"

#include <memory>
#include <string>

namespace cachecar::test {

class mongo_target {
public:
    mongo_target();

    bool real() const { return !server_; }
    std::string uri() const;
    // A database name no other test (or earlier run) uses.
    std::string fresh_database();
    // The test server, or null against a real MongoDB.
    mongo_test_server* server() { return server_.get(); }
    // Printed once per process so the log says which kind ran.
    static std::string describe();

private:
    std::unique_ptr<mongo_test_server> server_;
    std::string uri_;
};

}  // namespace cachecar::test
