#pragma once
// npm registry helpers shared by the npm_registry probe and the npm_package deployment.
#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "probes/http_client.hpp"

namespace lastgood::probes {

// "@scope/name" -> "@scope%2fname" (the registry's path form); plain names unchanged.
std::string npm_escape(const std::string& package);
// "2026-11-25T22:35:11.364Z" (RFC 3339, UTC or with an offset).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& s);
// Checks a tarball against dist.integrity (sha512, as npm does) or, lacking it, dist.shasum.
// Returns "" when it matches, otherwise why not.
std::string check_integrity(const std::string& tarball, const nlohmann::json& dist);

// One request on a fresh connection (registries are visited seldom); TLS verified.
boost::asio::awaitable<HttpResult> http_once(boost::asio::any_io_executor ex, std::string method, std::string url,
                                             std::vector<std::pair<std::string, std::string>> headers, std::string body,
                                             std::chrono::steady_clock::time_point deadline, std::size_t max_body);

}  // namespace lastgood::probes
