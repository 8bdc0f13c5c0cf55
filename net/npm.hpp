#pragma once
// The npm registry's wire forms, shared by the npm_registry probe and the npm_package deployment.
#include <string>

#include <nlohmann/json.hpp>

namespace lastgood::net {

// A package name as npm accepts it: "name" or "@scope/name", lowercase.
bool valid_npm_name(const std::string& package);
// "@scope/name" -> "@scope%2fname" (the registry's path form); plain names unchanged.
std::string npm_escape(const std::string& package);
// Checks a tarball against dist.integrity (sha512, as npm does) or, lacking it, dist.shasum.
// Returns "" when it matches, otherwise why not.
std::string check_integrity(const std::string& tarball, const nlohmann::json& dist);

}  // namespace lastgood::net
