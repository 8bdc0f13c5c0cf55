#pragma once
// The "firebase_hosting" deployment kind: observe the live channel's releases (every page, sorted
// by releaseTime; the newest is live, its version id the release); roll back by creating a
// release on the live channel that points at the good version (which must be FINALIZED), with a
// message naming lastgood, the trigger and the evidence. Auth: a service-account key (RS256 JWT
// exchanged at its token_uri, cached until shortly before expiry), token_env/token_file, or the
// metadata server.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "actions/action.hpp"

namespace lastgood::actions {

struct FirebaseHostingSpec final : config::KindSpec {
  std::string site;
  std::string api_base = "https://firebasehosting.googleapis.com/v1beta1/";
  // Exactly one of the three.
  std::string credentials_file;
  std::optional<config::Secret> token;
  bool metadata_server = false;
  std::string token_uri;  // overrides the key's own token_uri
  // Another site whose versions a rollback may take (as `firebase hosting:clone SOURCE@V SITE:live`):
  // a target that is not among this site's releases is cloned from it into this site, then released.
  std::string source_site;
};

extern const Kind firebase_hosting_kind;

// Exposed for tests: base64url without padding, and an RS256 JWT signed with a PEM private key
// (empty on a bad key).
std::string base64url(const std::string& raw);
std::string sign_jwt_rs256(const nlohmann::json& claims, const std::string& private_key_pem);

}  // namespace lastgood::actions
