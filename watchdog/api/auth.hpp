#pragma once
// Approvers identified by bearer token. Tokens are kept only as SHA-256 digests and compared in
// constant time; nothing here logs or returns a token.
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace lastgood::watchdog {

class Approvers {
 public:
  explicit Approvers(const config::Config& cfg);
  bool any() const { return !entries_.empty(); }
  // The approver whose token is in `authorization` ("Bearer TOKEN"), or nullptr.
  const config::Approver* identify(const std::string& authorization) const;

 private:
  struct Entry {
    std::string digest;  // raw SHA-256 of the token
    const config::Approver* approver;
  };
  std::vector<Entry> entries_;
};

}  // namespace lastgood::watchdog
