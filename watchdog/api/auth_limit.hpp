#pragma once
// Failed authentications, limited per (client address, presented credential) and, less tightly,
// per client (design.md, HTTP surface). A request with a valid credential is never looked up
// here: nobody's failures can lock an approver, or Alertmanager, out. Time is passed in.
#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace lastgood::watchdog {

class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Limits {
    std::size_t per_credential = 10;  // failures a window with one (client, credential) pair
    std::size_t per_client = 100;     // failures a window from one client, whatever it presented
    Clock::duration window = std::chrono::minutes(1);
    std::size_t max_keys = 20'000;    // memory bound: the oldest keys are forgotten first
  };
  AuthLimiter() = default;
  explicit AuthLimiter(Limits l) : limits_(l) {}
  // Whether a request that did not authenticate is refused (429) rather than answered (401).
  bool blocked(const std::string& client, const std::string& credential, Clock::time_point now);
  // Counts one failed authentication.
  void failed(const std::string& client, const std::string& credential, Clock::time_point now);

 private:
  std::size_t recent(const std::string& key, Clock::time_point now);
  void note(const std::string& key, Clock::time_point now);
  Limits limits_;
  std::map<std::string, std::deque<Clock::time_point>> failures_;
  std::deque<std::string> order_;  // keys in the order they were first seen
};

// The client's address: the peer's, or (when the peer is one of `trusted_proxies`) the rightmost
// address of X-Forwarded-For that is not itself a trusted proxy.
std::string client_address(const std::string& remote, const std::string& forwarded_for, const std::vector<std::string>& trusted_proxies);

}  // namespace lastgood::watchdog
