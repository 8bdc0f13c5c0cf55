#pragma once
// How the policy's values are written into ledger entries and API answers.
#include <nlohmann/json.hpp>

#include "policy/types.hpp"

namespace lastgood::watchdog {

nlohmann::json to_json(const policy::Evidence& e);
nlohmann::json to_json(const policy::Decision& d);
// The decision a proposal_created entry holds, read back (replay): what a proposal needs of it.
policy::Decision decision_from_json(const std::string& service, const nlohmann::json& d);

}  // namespace lastgood::watchdog
