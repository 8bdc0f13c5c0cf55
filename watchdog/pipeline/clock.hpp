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
// Saturating: a value read back from the ledger or the API beyond about 290 years of the epoch
// (where a TimePoint's nanoseconds overflow, undefined behaviour) is taken as that far (found by
// fuzz/fuzz_snapshot with a crafted entry).
inline policy::TimePoint from_ms(long long v) {
  constexpr long long kMax = 9'000'000'000'000;  // ms: the year 2255
  return policy::TimePoint(std::chrono::milliseconds(v > kMax ? kMax : v < -kMax ? -kMax : v));
}

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
