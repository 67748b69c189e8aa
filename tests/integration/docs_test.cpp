// The README is the operator's manual: it must cover every config key the loader
// accepts, and `cachecar --help` must agree with it.
#include <cachecar/config/config.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace {

std::string readme() {
    std::ifstream in(CACHECAR_SOURCE_DIR "/README.md");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(docs, readme_documents_every_config_key) {
    const auto text = readme();
    ASSERT_FALSE(text.empty());
    const auto keys = cachecar::config::schema_keys();
    EXPECT_GT(keys.size(), 50u);
    for (const auto& k : keys) {
        std::string row = "| `";  // appended piecewise: GCC 12 misreports "a" + s + "b" (-Warray-bounds)
        row.append(k).append("` |");
        EXPECT_NE(text.find(row), std::string::npos) << "README's configuration reference lacks " << k;
    }
}

TEST(docs, help_options_match_the_readme) {
    std::string help;
    FILE* p = ::popen(CACHECAR_BINARY " --help", "r");
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, p)) help.append(buf, n);
    EXPECT_EQ(::pclose(p), 0);
    const auto text = readme();
    for (const char* option : {"--config FILE", "--check", "--version", "--help", "SIGHUP", "SIGTERM"}) {
        EXPECT_NE(help.find(option), std::string::npos) << "--help lacks " << option;
        EXPECT_NE(text.find(option), std::string::npos) << "README lacks " << option;
    }
}

}  // namespace
