// The Alertmanager payload: any JSON is checked for the webhook's shape without throwing, and a
// payload that passes can be read with the accessors the pipeline uses.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "watchdog/pipeline/alert_payload.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto j = nlohmann::json::parse(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size, nullptr, false);
  if (j.is_discarded()) return 0;
  if (!lastgood::watchdog::alert_payload_problem(j).empty()) return 0;
  for (const auto& a : j["alerts"]) {  // what passed must be readable as strings, as on_alertmanager reads it
    for (const auto& [k, v] : a["labels"].items()) (void)v.get<std::string>();
    if (a.contains("annotations"))
      for (const auto& [k, v] : a["annotations"].items()) (void)v.get<std::string>();
  }
  return 0;
}
