// Polls a condition until it holds or a limit passes: for effects that land
// asynchronously (background stores, purge broadcasts, reconnects).
#pragma once

#include <chrono>
#include <thread>

namespace cachecar::test {

template <class Probe>
bool eventually(Probe probe, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (probe()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return probe();
}

}  // namespace cachecar::test
