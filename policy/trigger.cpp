#include "policy/trigger.hpp"

namespace lastgood::policy {

std::optional<TriggerState> TriggerMachine::step(const Verdict& v, TimePoint now, Duration for_, Duration recover_after) {
  const TriggerState before = state_;
  if (v.inconclusive) {
    // Blind: never a breach, and never a recovery either (a firing trigger stays firing).
    if (state_ == TriggerState::ok || state_ == TriggerState::pending) {
      breach_since_.reset();
      go(TriggerState::inconclusive, now);
    }
  } else if (v.breached) {
    healthy_since_.reset();
    switch (state_) {
      case TriggerState::ok:
      case TriggerState::inconclusive:
        breach_since_ = now;
        go(for_.count() == 0 ? TriggerState::firing : TriggerState::pending, now);
        break;
      case TriggerState::pending:
        if (now - *breach_since_ >= for_) go(TriggerState::firing, now);
        break;
      case TriggerState::firing: break;
    }
  } else {
    switch (state_) {
      case TriggerState::pending:
      case TriggerState::inconclusive:
        breach_since_.reset();
        go(TriggerState::ok, now);
        break;
      case TriggerState::firing:
        if (!healthy_since_) healthy_since_ = now;
        if (now - *healthy_since_ >= recover_after) {
          healthy_since_.reset();
          breach_since_.reset();
          go(TriggerState::ok, now);
        }
        break;
      case TriggerState::ok: break;
    }
  }
  if (state_ != before) return before;
  return std::nullopt;
}

}  // namespace lastgood::policy
