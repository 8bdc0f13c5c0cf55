#include "probes/npm.hpp"

#include <cctype>
#include <ctime>
#include <iomanip>
#include <sstream>

#include <openssl/evp.h>

namespace lastgood::probes {

std::string npm_escape(const std::string& package) {
  auto slash = package.find('/');
  if (package.empty() || package[0] != '@' || slash == std::string::npos) return package;
  return package.substr(0, slash) + "%2f" + package.substr(slash + 1);
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail() || s.size() < 19) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2262): a time far outside that,
  // which a registry may send, would overflow. Found by fuzz/fuzz_url ("20" parsed as year 20).
  if (tm.tm_year < 1970 - 1900 || tm.tm_year > 2200 - 1900) return std::nullopt;
  auto t = std::chrono::system_clock::from_time_t(timegm(&tm));
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    size_t end = pos + 1;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
    std::string frac = s.substr(pos + 1, end - pos - 1);
    frac.resize(3, '0');
    t += std::chrono::milliseconds(std::stoi(frac.substr(0, 3)));
    pos = end;
  }
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-') && s.size() >= pos + 6) {
    // From the network: digits are checked, never handed to std::stoi (which throws).
    auto two = [&](size_t at) {
      const auto d = [&](size_t i) { return std::isdigit(static_cast<unsigned char>(s[i])) != 0; };
      return d(at) && d(at + 1) ? (s[at] - '0') * 10 + (s[at + 1] - '0') : -1;
    };
    const int sign = s[pos] == '+' ? 1 : -1;
    const int h = two(pos + 1), m = two(pos + 4);
    if (h < 0 || m < 0 || s[pos + 3] != ':') return std::nullopt;
    t -= sign * (std::chrono::hours(h) + std::chrono::minutes(m));
  }
  return t;
}

namespace {
std::string digest(const std::string& data, const EVP_MD* md) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}
std::string b64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}
std::string hex(const std::string& raw) {
  static const char* h = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += h[c >> 4];
    out += h[c & 15];
  }
  return out;
}
}  // namespace

std::string check_integrity(const std::string& tarball, const nlohmann::json& dist) {
  if (dist.contains("integrity") && dist["integrity"].is_string()) {
    // "sha512-BASE64" (possibly several, space-separated): npm checks the strongest it knows.
    std::istringstream in(dist["integrity"].get<std::string>());
    std::string item;
    while (in >> item) {
      if (item.rfind("sha512-", 0) != 0) continue;
      const std::string want = item.substr(7);
      const std::string got = b64(digest(tarball, EVP_sha512()));
      return got == want ? "" : "tarball sha512 " + got.substr(0, 16) + "... does not match dist.integrity " + want.substr(0, 16) + "...";
    }
  }
  if (dist.contains("shasum") && dist["shasum"].is_string()) {
    const std::string got = hex(digest(tarball, EVP_sha1()));
    return got == dist["shasum"].get<std::string>() ? "" : "tarball sha1 " + got + " does not match dist.shasum " + dist["shasum"].get<std::string>();
  }
  return "the registry gives neither dist.integrity (sha512) nor dist.shasum";
}

boost::asio::awaitable<HttpResult> http_once(boost::asio::any_io_executor ex, std::string method, std::string url,
                                             std::vector<std::pair<std::string, std::string>> headers, std::string body,
                                             std::chrono::steady_clock::time_point deadline, std::size_t max_body) {
  auto u = parse_url(url);
  if (!u) co_return HttpError{HttpError::Stage::protocol, false, "not a URL: " + url};
  HttpConnection conn(ex, *u, u->tls() ? default_tls_context() : nullptr);
  HttpRequest req;
  req.method = std::move(method);
  req.target = u->target;
  req.headers = std::move(headers);
  req.body = std::move(body);
  co_return co_await conn.request(std::move(req), deadline, max_body);
}

}  // namespace lastgood::probes
