#include "net/url.hpp"

#include <charconv>

#include <re2/re2.h>

namespace lastgood::net {

std::optional<Url> parse_url(const std::string& url) {
  // RE2: a Location header is network data, matched in time linear in its length.
  static const RE2 re(R"(^(https?)://(\[[0-9a-fA-F:.]+\]|[^/:?#\s]+)(?::(\d{1,5}))?([/?][^\s#]*)?$)");
  re2::StringPiece scheme, host, port, target;
  if (!RE2::FullMatch(url, re, &scheme, &host, &port, &target)) return std::nullopt;
  Url u;
  u.scheme = std::string(scheme);
  u.host = std::string(host);
  if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  u.port = port.data() ? std::string(port) : (u.scheme == "https" ? "443" : "80");
  u.target = target.data() ? std::string(target) : "/";
  if (u.target.front() == '?') u.target = "/" + u.target;
  int number = 0;
  std::from_chars(u.port.data(), u.port.data() + u.port.size(), number);
  if (number < 1 || number > 65535) return std::nullopt;
  return u;
}

std::optional<Url> resolve_location(const Url& base, const std::string& location) {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return parse_url(location);
  if (location.rfind("//", 0) == 0) return parse_url(base.scheme + ":" + location);
  Url u = base;
  if (!location.empty() && location.front() == '/') {
    u.target = location;
  } else {
    auto slash = base.target.find_last_of('/', base.target.find('?'));
    u.target = base.target.substr(0, slash == std::string::npos ? 0 : slash + 1) + location;
    if (u.target.empty() || u.target.front() != '/') u.target = "/" + u.target;
  }
  return u;
}

}  // namespace lastgood::net
