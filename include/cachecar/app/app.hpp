// The daemon as an object: tiers, proxy, admin API and their threads, built from a
// validated config. main.cpp adds only the CLI, signals and systemd notification;
// integration tests run it in-process.
#pragma once

#include <cachecar/admin/admin_api.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/stats/metrics.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <memory>

namespace cachecar {

class app {
public:
    explicit app(config::config cfg);
    ~app();
    app(const app&) = delete;
    app& operator=(const app&) = delete;

    // Binds the listeners and starts the I/O threads; returns once serving. Throws
    // std::system_error / boost::system::system_error if a listener cannot bind.
    void start();
    std::uint16_t port() const;
    std::uint16_t admin_port() const;  // 0 when the admin API is disabled

    // Re-reads the config file it was loaded from and swaps it in atomically; an
    // invalid file is rejected with its diagnostics and the running config stays.
    admin::reload_outcome reload();
    admin::reload_outcome apply(config::config next);

    // Graceful stop: stop accepting, let in-flight requests finish (bounded by
    // drain_timeout), then stop the threads. Blocks; safe to call from any thread
    // that is not one of the app's I/O threads. Returns false if the drain timed out.
    bool stop();

    stats::registry& metrics();

    // Service-manager notifications ("READY=1", "RELOADING=1", "STOPPING=1",
    // "WATCHDOG=1"); main() wires this to sd_notify. Set before start().
    void set_notifier(std::function<void(const std::string& state)> notify);
    // Sends "WATCHDOG=1" every `interval` from the I/O threads' event loop, so a
    // wedged loop stops the pings and the service manager restarts the process.
    void enable_watchdog(std::chrono::microseconds interval);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar
