#pragma once
// The shape of Alertmanager's webhook payload (version 4), checked before anything of it is used.
#include <string>

#include <nlohmann/json.hpp>

namespace lastgood::watchdog {

// "" when `payload` has Alertmanager's types; else what is wrong, naming where (alerts/3/labels/x).
std::string alert_payload_problem(const nlohmann::json& payload);

}  // namespace lastgood::watchdog
