#pragma once
// A trigger's state machine: ok -> pending (condition true, waiting out `for`) -> firing ->
// ok (after `recover_after` of healthy time), plus inconclusive when the rule cannot judge.
#include <optional>

#include "policy/rules.hpp"

namespace lastgood::policy {

class TriggerMachine {
 public:
  // Applies a verdict at `now`; returns the previous state when the state changed.
  std::optional<TriggerState> step(const Verdict& v, TimePoint now, Duration for_, Duration recover_after);
  TriggerState state() const { return state_; }
  // When the current breach began (the first breached verdict of this episode).
  std::optional<TimePoint> breach_started() const { return breach_since_; }
  TimePoint since() const { return since_; }

 private:
  void go(TriggerState s, TimePoint now) {
    state_ = s;
    since_ = now;
  }
  TriggerState state_ = TriggerState::inconclusive;
  TimePoint since_{};
  std::optional<TimePoint> breach_since_, healthy_since_;
};

}  // namespace lastgood::policy
