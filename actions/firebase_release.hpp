#pragma once
#include <nlohmann/json.hpp>

#include "actions/action.hpp"

namespace lastgood::actions {
// firebase_hosting: observe the live channel's releases (every page, sorted by releaseTime; the
// newest is live, its version id the release); roll back by creating a release on the live
// channel that points at the good version (which must be FINALIZED), with a message naming
// lastgood, the trigger and the evidence. Auth: a service-account key (RS256 JWT exchanged at its
// token_uri, cached until shortly before expiry), token_env/token_file, or the metadata server.
std::unique_ptr<Action> make_firebase_release(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);

// Exposed for tests: base64url without padding, and an RS256 JWT signed with a PEM private key
// (empty on a bad key).
std::string base64url(const std::string& raw);
std::string sign_jwt_rs256(const nlohmann::json& claims, const std::string& private_key_pem);
}
