#pragma once
// The state one rule keeps for one probe, and its verdict. Pure: time comes in as arguments.
#include <vector>

#include "policy/types.hpp"
#include "policy/window.hpp"

namespace lastgood::policy {

struct Verdict {
  bool inconclusive = false;  // too little data, or too many `error` results: never a breach
  bool breached = false;
  Evidence evidence;
};

class RuleState {
 public:
  RuleState(const Rule& rule, const SampleWindow& window);
  // Each new sample of the probe, after it was pushed to the window.
  void add(const Sample& s);
  // Slides the windows to `now` and judges.
  Verdict evaluate(const SampleWindow& w, TimePoint now);
  // The trigger changed state: count-based rules start over (x_of_y needs a full new window).
  void reset();
  // How far back this rule looks (the window keeps at least this much).
  Duration lookback() const;
  // The oldest sample any of this rule's counters still needs.
  std::uint64_t oldest_needed(std::uint64_t fallback) const;
  // Fills the evidence's names and details (kept off the per-sample path: evaluate() only
  // measures numbers; this runs for transitions, decisions and views).
  void describe(Evidence& e, const SampleWindow& w, TimePoint now) const;

  enum class Kind { consecutive_failures, x_of_y, error_rate, latency, burn_rate, spread, condition };
  static Kind kind_of(const std::string& name);

 private:
  std::string measure() const;
  const Rule& rule_;
  Kind kind_;
  std::uint32_t condition_bit_ = 0;
  // consecutive_failures
  int consecutive_fail_ = 0, trailing_errors_ = 0;
  bool judged_any_ = false;
  // x_of_y: the last `of` judged results as a ring
  std::vector<bool> ring_;
  size_t ring_pos_ = 0, ring_fill_ = 0;
  int ring_fails_ = 0;
  // error_rate and latency: one counter; burn_rate: two per window pair
  std::vector<SlidingCount> counters_;
  // condition
  std::uint32_t last_failed_ = 0;
  bool has_last_ = false;
};

// The latency percentile (nearest rank) of the judged samples in (now - window, now]; exact.
double percentile_ms(const SampleWindow& w, TimePoint now, Duration window, double percentile);

}  // namespace lastgood::policy
