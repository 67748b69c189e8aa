// Shared by the fuzz targets: a check that stops the run on a broken invariant.
// (assert() would vanish under NDEBUG; RelWithDebInfo defines it.)
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond) FUZZ_CHECK_ABOUT(cond, "")

// The same, printing `about` (a C string: what was being checked) on failure.
#define FUZZ_CHECK_ABOUT(cond, about)                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: invariant broken: %s\n%s\n", __FILE__, __LINE__, #cond, \
                         static_cast<const char*>(about));                                     \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)
