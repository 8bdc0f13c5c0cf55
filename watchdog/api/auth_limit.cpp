#include "watchdog/api/auth_limit.hpp"

#include <algorithm>

#include <openssl/evp.h>

namespace lastgood::watchdog {

namespace {

// Failures are keyed by a short digest of what was presented, never by the credential itself.
std::string digest(const std::string& credential) {
  if (credential.empty()) return "none";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(credential.data(), credential.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 8 && i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

std::size_t AuthLimiter::recent(const std::string& key, Clock::time_point now) {
  auto it = failures_.find(key);
  if (it == failures_.end()) return 0;
  while (!it->second.empty() && it->second.front() <= now - limits_.window) it->second.pop_front();
  return it->second.size();
}

void AuthLimiter::note(const std::string& key, Clock::time_point now) {
  auto [it, fresh] = failures_.try_emplace(key);
  if (fresh) order_.push_back(key);
  it->second.push_back(now);
  if (it->second.size() > std::max(limits_.per_client, limits_.per_credential) + 1) it->second.pop_front();  // bounded per key
  while (failures_.size() > limits_.max_keys && !order_.empty()) {
    failures_.erase(order_.front());
    order_.pop_front();
  }
}

bool AuthLimiter::blocked(const std::string& client, const std::string& credential, Clock::time_point now) {
  return recent(client + "|" + digest(credential), now) >= limits_.per_credential || recent(client, now) >= limits_.per_client;
}

void AuthLimiter::failed(const std::string& client, const std::string& credential, Clock::time_point now) {
  note(client + "|" + digest(credential), now);
  note(client, now);
}

std::string client_address(const std::string& remote, const std::string& forwarded_for, const std::vector<std::string>& trusted_proxies) {
  std::string peer = remote.substr(0, remote.rfind(':'));
  auto trusted = [&](const std::string& a) { return std::find(trusted_proxies.begin(), trusted_proxies.end(), a) != trusted_proxies.end(); };
  if (forwarded_for.empty() || !trusted(peer)) return peer;
  std::string rest = forwarded_for;
  while (!rest.empty()) {
    const auto comma = rest.rfind(',');
    const std::string hop = trim(comma == std::string::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string::npos ? std::string() : rest.substr(0, comma);
    if (hop.empty()) continue;
    if (!trusted(hop)) return hop.substr(0, 64);
  }
  return peer;
}

}  // namespace lastgood::watchdog
