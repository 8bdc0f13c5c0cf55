#pragma once
// Times as registries and APIs send them.
#include <chrono>
#include <optional>
#include <string>

namespace lastgood::net {

// "2026-11-25T22:35:11.364Z" (RFC 3339, UTC or with an offset); nullopt for anything else,
// including years outside 1970..2200 (system_clock's nanoseconds overflow beyond 2262).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& s);

}  // namespace lastgood::net
