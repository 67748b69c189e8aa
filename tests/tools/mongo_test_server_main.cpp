// Runs the MongoDB wire-protocol test server as a process, for benchmarks and manual
// checks: `cachecar_mongo_test_server [--port N]`. Prints "listening on PORT" and
// serves until SIGINT/SIGTERM.
#include "support/mongo_test_server.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }
}  // namespace

int main(int argc, char** argv) {
    std::uint16_t port = 0;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--port" && i + 1 < argc) {
            port = static_cast<std::uint16_t>(std::atoi(argv[++i]));
        } else {
            std::fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
            return 2;
        }
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    cachecar::test::mongo_test_server server(port);
    std::printf("listening on %u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    while (!stop_requested) ::pause();
    return 0;
}
