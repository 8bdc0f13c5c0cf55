#pragma once
// Bytes from the network (a Host header, a path, a proxy's X-Forwarded-For, a target's answer
// quoted in evidence) may be any bytes, and nlohmann's dump() throws on invalid UTF-8 (found by
// fuzz/fuzz_router: a Host header of one byte 0xBB made the 403 answer a 500). Every JSON text
// lastgood writes (ledger, API, incidents, notices) is dumped with this handler: such bytes
// become U+FFFD and the text is still written.
#include <nlohmann/json.hpp>

namespace lastgood {

inline constexpr auto kUtf8Replace = nlohmann::json::error_handler_t::replace;

}  // namespace lastgood
