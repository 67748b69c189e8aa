// The access log: one line per request, text or JSON.
#include "stages.hpp"

#include <boost/json.hpp>
#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

namespace cachecar::proxy {

namespace {

// UTC, millisecond resolution: "2026-11-21T23:57:39.742Z".
std::string iso_now() {
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms);
}

}  // namespace

void handler::on_complete(const request& req, const http::reply& r, const http::connection_info& conn,
                          const http::delivery& d) {
    // Both counted: the status line was out, so the client's connection was closed.
    if (!d.complete) metrics_.get("cachecar_stream_aborts_total", {{"side", d.source_failed ? "upstream" : "client"}})++;
    if (!access_log_->should_log(spdlog::level::info)) return;
    const auto ms = std::chrono::duration<double, std::milli>(d.elapsed).count();
    const auto body_bytes = d.body_bytes;
    const auto stamp = iso_now();
    if (logging::access_format() == config::logging_config::access_format::json) {
        // One JSON object per line; serialised by Boost.JSON so every field is escaped.
        boost::json::object line{{"ts", stamp},
                                 {"client", conn.client_address},
                                 {"method", std::string(req.method_string())},
                                 {"target", std::string(req.target())},
                                 {"status", r.status},
                                 {"bytes", body_bytes},
                                 {"route", std::string(r.access.route)},
                                 {"result", std::string(r.access.result)},
                                 {"tier", std::string(r.access.tier)},
                                 {"total_ms", ms}};
        if (r.access.upstream_seconds >= 0) line["upstream_ms"] = r.access.upstream_seconds * 1000.0;
        if (!d.complete) line["cut"] = d.source_failed ? "upstream" : "client";
        access_log_->info(boost::json::serialize(line));
        return;
    }
    // " cut=..." only on answers cut short, so the usual line stays as it was.
    const std::string_view cut = d.complete ? "" : d.source_failed ? " cut=upstream" : " cut=client";
    if (r.access.upstream_seconds >= 0) {
        access_log_->info("{} {} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms={:.2f} total_ms={:.2f}{}", stamp,
                          conn.client_address, req.method_string(), req.target(), r.status, body_bytes,
                          r.access.route, r.access.result, r.access.tier, r.access.upstream_seconds * 1000.0, ms, cut);
    } else {
        access_log_->info("{} {} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms=- total_ms={:.2f}{}", stamp,
                          conn.client_address, req.method_string(), req.target(), r.status, body_bytes,
                          r.access.route, r.access.result, r.access.tier, ms, cut);
    }
}

}  // namespace cachecar::proxy
