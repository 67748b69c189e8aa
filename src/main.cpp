// cachecar: command line, signals and process lifecycle. Everything else lives in the core.
#include <cachecar/app/app.hpp>
#include <cachecar/app/tier_checks.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/net.hpp>

#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <csignal>
#include <functional>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

namespace {

constexpr const char* usage_text =
    R"(usage: cachecar [-c FILE] [--check] [--version] [--help]

cachecar is a caching reverse proxy: it sits in front of an unmodified HTTP API,
answers reads from its cache tiers and purges them when writes succeed.

  -c, --config FILE   config file (default: conf/cachecar.yaml; if that does not
                      exist, the embedded default: memory tier, listen
                      127.0.0.1:8080, upstream http://127.0.0.1:3002)
      --check         validate the config and exit: 0 if valid, otherwise 1 and
                      one "FILE:LINE:COL: message" line per problem
      --version       print the version and exit
  -h, --help          print this help and exit

signals: SIGHUP reloads the config (an invalid one is rejected and the old one keeps
serving); SIGTERM/SIGINT stop accepting, finish in-flight requests (bounded by
limits.drain_timeout) and exit 0.
)";

struct options {
    std::string config_file;
    bool config_given = false;
    bool check = false;
};

int print_diagnostics(const std::vector<cachecar::config::diagnostic>& errors) {
    for (const auto& d : errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-c" || a == "--config") {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "cachecar: %s needs a file name\n%s", argv[i], usage_text);
                return 2;
            }
            opt.config_file = argv[++i];
            opt.config_given = true;
        } else if (a.starts_with("--config=")) {
            opt.config_file = std::string(a.substr(9));
            opt.config_given = true;
        } else if (a == "--check") {
            opt.check = true;
        } else if (a == "--version") {
            std::printf("cachecar %s\n", CACHECAR_VERSION);
            return 0;
        } else if (a == "-h" || a == "--help") {
            std::fputs(usage_text, stdout);
            return 0;
        } else {
            std::fprintf(stderr, "cachecar: unknown argument '%s'\n%s", argv[i], usage_text);
            return 2;
        }
    }

    cachecar::config::load_result loaded;
    if (!opt.config_given && !std::filesystem::exists("conf/cachecar.yaml")) {
        loaded = cachecar::config::load_string(cachecar::config::embedded_default_yaml(), "<embedded default>",
                                               cachecar::tier_checks());
    } else {
        if (!opt.config_given) opt.config_file = "conf/cachecar.yaml";
        loaded = cachecar::config::load_file(opt.config_file, cachecar::tier_checks());
    }
    if (!loaded.value) return print_diagnostics(loaded.errors);
    if (opt.check) {
        std::printf("%s: ok (%zu routes, %zu invalidations)\n", loaded.value->source_file.c_str(),
                    loaded.value->routes.size(), loaded.value->invalidations.size());
        return 0;
    }

    auto log = cachecar::logging::get("cachecar");
    spdlog::set_default_logger(log);

    // Signals are handled on their own context so a busy proxy cannot delay them.
    cachecar::net::io_context signals_io;
    cachecar::net::signal_set signals(signals_io, SIGHUP, SIGTERM, SIGINT);
    std::signal(SIGPIPE, SIG_IGN);

    std::unique_ptr<cachecar::app> daemon;
    try {
        daemon = std::make_unique<cachecar::app>(std::move(*loaded.value));
        // systemd Type=notify: READY=1 once listening, RELOADING=1/READY=1 around
        // reloads, STOPPING=1, and WATCHDOG=1 from the event loop. Without
        // NOTIFY_SOCKET (not under systemd) sd_notify does nothing.
        daemon->set_notifier([](const std::string& state) { sd_notify(0, state.c_str()); });
        std::uint64_t watchdog_usec = 0;
        if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
            daemon->enable_watchdog(std::chrono::microseconds(watchdog_usec / 2));
        }
        daemon->start();
    } catch (const std::exception& e) {
        log->critical("cannot start: {}", e.what());
        return 1;
    }

    std::function<void(cachecar::error_code, int)> on_signal = [&](cachecar::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            log->info("SIGHUP: reloading");
            daemon->reload();
            signals.async_wait(on_signal);
            return;
        }
        log->info("{}: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        daemon->stop();
        signals_io.stop();
    };
    signals.async_wait(on_signal);
    signals_io.run();
    daemon.reset();
    return 0;
}
