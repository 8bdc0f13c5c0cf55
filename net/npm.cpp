#include "net/npm.hpp"

#include <sstream>

#include <openssl/evp.h>
#include <re2/re2.h>

namespace lastgood::net {

bool valid_npm_name(const std::string& package) {
  static const RE2 re(R"((@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*)");
  return RE2::FullMatch(package, re);
}

std::string npm_escape(const std::string& package) {
  auto slash = package.find('/');
  if (package.empty() || package[0] != '@' || slash == std::string::npos) return package;
  return package.substr(0, slash) + "%2f" + package.substr(slash + 1);
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

}  // namespace lastgood::net
