#include "policy/types.hpp"

namespace lastgood::policy {

const char* to_string(TriggerState s) {
  switch (s) {
    case TriggerState::ok: return "ok";
    case TriggerState::pending: return "pending";
    case TriggerState::firing: return "firing";
    case TriggerState::inconclusive: return "inconclusive";
  }
  return "?";
}

const char* to_string(DecisionKind k) {
  switch (k) {
    case DecisionKind::alert: return "alert";
    case DecisionKind::propose: return "propose";
    case DecisionKind::execute: return "execute";
    case DecisionKind::hold: return "hold";
  }
  return "?";
}

}  // namespace lastgood::policy
