#include "watchdog/api/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace lastgood::watchdog {

namespace {
std::string digest(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}
}  // namespace

Approvers::Approvers(const config::Config& cfg) {
  for (const auto& a : cfg.approvers)
    if (a.token.resolved() && !a.token.value().empty()) entries_.push_back({digest(a.token.value()), &a});
}

const config::Approver* Approvers::identify(const std::string& authorization) const {
  const std::string prefix = "Bearer ";
  if (authorization.size() <= prefix.size() || authorization.compare(0, prefix.size(), prefix) != 0) return nullptr;
  const std::string d = digest(authorization.substr(prefix.size()));
  const config::Approver* found = nullptr;
  for (const auto& e : entries_)  // every entry compared, in constant time, whatever matches
    if (CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0) found = e.approver;
  return found;
}

}  // namespace lastgood::watchdog
