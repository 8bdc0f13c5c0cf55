#pragma once
#include <string>

namespace lastgood::watchdog {
// Sets up spdlog on stderr: "text" (human; colours on a terminal) or "json" (one JSON object a
// line: ts, level, msg). Returns false for an unknown format or level.
bool setup_logging(const std::string& format, const std::string& level);
}
