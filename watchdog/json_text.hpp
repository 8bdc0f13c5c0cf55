#pragma once
// Bytes from the network (a Host header, a path, a proxy's X-Forwarded-For, a target's answer
// quoted in evidence) may be any bytes, and nlohmann's dump() throws on invalid UTF-8. Every JSON
// text lastgood writes (ledger, API, incidents, notices) goes through json_text(): such bytes
// become U+FFFD and the text is still written.
#include <string>

#include <nlohmann/json.hpp>

namespace lastgood {

inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lastgood
