// YAML text in, a validated config or diagnostics out (config::load_string, what
// `cachecar --check`, start-up and reload run). It must never crash or let an
// exception escape (libFuzzer reports an escaping exception as a crash), and its
// answer must be usable:
//  - exactly one of a config and a non-empty list of diagnostics;
//  - every diagnostic prints as one "file:line:col: message" line (line and column
//    from 1, or 0:0 for no position; a message; no line break that would split it
//    in --check output);
//  - an accepted config compiles into a route::matcher (the loader promises the
//    matcher that everything it lets through compiles).
#include "fuzz_common.hpp"

#include <cachecar/config/config.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/route/matcher.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace cachecar;

constexpr std::string_view file_name = "fuzz.yaml";

void check_diagnostic(const config::diagnostic& d) {
    const std::string text = d.to_string();
    const char* about = text.c_str();
    FUZZ_CHECK_ABOUT(d.file == file_name, about);
    // 0:0 is the loader's "no position" (as for an unreadable file); otherwise from 1.
    FUZZ_CHECK_ABOUT((d.line >= 1 && d.column >= 1) || (d.line == 0 && d.column == 0), about);
    FUZZ_CHECK_ABOUT(!d.message.empty(), about);
    FUZZ_CHECK_ABOUT(text.find('\n') == std::string::npos, about);
    FUZZ_CHECK_ABOUT(text.find('\r') == std::string::npos, about);
    const std::string prefix =
        std::string(file_name) + ":" + std::to_string(d.line) + ":" + std::to_string(d.column) + ": ";
    FUZZ_CHECK_ABOUT(text.compare(0, prefix.size(), prefix) == 0, about);
    FUZZ_CHECK_ABOUT(text.size() > prefix.size(), about);
}

}  // namespace

// Validating a mongodb:// URI goes through libmongoc, which logs every bad one;
// at hundreds of inputs a second that is most of the run time and all of the output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    cachecar::logging::get("mongo")->set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view yaml(reinterpret_cast<const char*>(data), size);
    const auto loaded = config::load_string(yaml, std::string(file_name));
    FUZZ_CHECK(loaded.value.has_value() == loaded.errors.empty());
    static const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;  // for replaying one input by hand
    if (verbose)
        for (const auto& d : loaded.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    for (const auto& d : loaded.errors) check_diagnostic(d);
    if (loaded.value) {
        const route::matcher routes(*loaded.value);  // throws (= crash) if the loader let a bad rule through
        FUZZ_CHECK(routes.routes().size() == loaded.value->routes.size());
        FUZZ_CHECK(routes.invalidations().size() == loaded.value->invalidations.size());
    }
    return 0;
}
