#pragma once
// http:// and https:// URLs: the one parser for config (validated at load), Location headers
// (network data) and one-shot requests.
#include <optional>
#include <string>

namespace lastgood::net {

struct Url {
  std::string scheme;  // "http" | "https"
  std::string host;    // without the brackets of an IPv6 literal
  std::string port;
  std::string target;  // path and query, starting with '/'
  bool tls() const { return scheme == "https"; }
  std::string origin() const { return scheme + "://" + host + ":" + port; }
};

// nullopt for anything but an http(s) URL with a host (and an optional port from 1 to 65535, a
// path and a query).
std::optional<Url> parse_url(const std::string& url);
// Resolves a Location header against the URL it came from.
std::optional<Url> resolve_location(const Url& base, const std::string& location);

}  // namespace lastgood::net
