#include "config/duration.hpp"

#include <cctype>
#include <cstdint>
#include <limits>

namespace lastgood::config {

std::optional<Duration> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t total_ms = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    std::int64_t n = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (n > std::numeric_limits<std::int64_t>::max() / 10 - 10) return std::nullopt;
      n = n * 10 + (s[i] - '0');
      ++i;
    }
    std::int64_t unit_ms = 0;
    if (s.substr(i, 2) == "ms") {
      unit_ms = 1;
      i += 2;
    } else if (i < s.size()) {
      switch (s[i]) {
        case 's': unit_ms = 1000; break;
        case 'm': unit_ms = 60'000; break;
        case 'h': unit_ms = 3'600'000; break;
        case 'd': unit_ms = 86'400'000; break;
        default: return std::nullopt;
      }
      ++i;
    } else {
      return std::nullopt;  // a bare number has no unit
    }
    if (n > (std::numeric_limits<std::int64_t>::max() - total_ms) / unit_ms) return std::nullopt;
    total_ms += n * unit_ms;
  }
  return Duration{total_ms};
}

std::string format_duration(Duration d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  struct Unit { std::int64_t ms; const char* name; };
  static constexpr Unit units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : units) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms) + u.name;
      ms %= u.ms;
    }
  }
  return out;
}

}  // namespace lastgood::config
