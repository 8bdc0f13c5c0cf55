#include <catch2/catch.hpp>

#include "config/duration.hpp"

using lastgood::config::Duration;
using lastgood::config::format_duration;
using lastgood::config::parse_duration;
using namespace std::chrono_literals;

TEST_CASE("durations parse in ms, s, m, h and d, alone or combined", "[config][duration]") {
  auto [text, want] = GENERATE(table<const char*, Duration>({
      {"750ms", 750ms}, {"30s", 30s}, {"5m", 5min}, {"2h", 2h}, {"7d", 24h * 7}, {"1h30m", 90min}, {"0s", 0ms}, {"1m500ms", 60500ms},
  }));
  INFO(text);
  auto d = parse_duration(text);
  REQUIRE(d);
  CHECK(*d == want);
}

TEST_CASE("things that are not durations are refused", "[config][duration]") {
  auto text = GENERATE("", "10", "s", "5 m", "-5s", "1.5s", "5M", "5mm", "3w", "99999999999999999999s", "1h-");
  INFO(text);
  CHECK_FALSE(parse_duration(text));
}

TEST_CASE("durations format the way configs write them", "[config][duration]") {
  CHECK(format_duration(90min) == "1h30m");
  CHECK(format_duration(750ms) == "750ms");
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(24h * 7) == "7d");
  CHECK(*parse_duration(format_duration(Duration{123456789})) == Duration{123456789});
}
