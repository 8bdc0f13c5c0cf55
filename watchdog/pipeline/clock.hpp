#pragma once
// The wall clock the pipeline's parts read, injected so that unit tests run them on a fake one.
#include <chrono>
#include <cstdint>
#include <string>

#include "policy/types.hpp"

namespace lastgood::watchdog {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual policy::TimePoint now() const = 0;
};

class SystemClock final : public Clock {
 public:
  policy::TimePoint now() const override { return std::chrono::system_clock::now(); }
};

// Milliseconds since the epoch, as the ledger and the API write times.
inline long long ms(policy::TimePoint t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count(); }
inline policy::TimePoint from_ms(long long v) { return policy::TimePoint(std::chrono::milliseconds(v)); }

// Proposal and action ids: "p<ms>-<n>", "a<ms>-<n>", one counter for both; with several
// replicas "-<replica>" follows, so that ids made by two replicas never meet in etcd.
class Ids {
 public:
  std::string make(char prefix, policy::TimePoint at) { return prefix + std::to_string(ms(at)) + "-" + std::to_string(next_++) + tag_; }
  void set_tag(const std::string& replica) { tag_ = "-" + replica; }

 private:
  std::uint64_t next_ = 1;
  std::string tag_;
};

}  // namespace lastgood::watchdog
