#pragma once
// Durations in config files: "750ms", "30s", "5m", "2h", "7d", or compounds like "1h30m".
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lastgood::config {

using Duration = std::chrono::milliseconds;

// Parses a duration string; std::nullopt when it is not one. Never throws.
std::optional<Duration> parse_duration(std::string_view text);

// Formats a duration the way config files write it ("1h30m", "750ms", "0s").
std::string format_duration(Duration d);

}  // namespace lastgood::config
