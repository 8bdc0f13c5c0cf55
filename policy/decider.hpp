#pragma once
// From a firing trigger to a Decision: alert, propose, execute or hold, with the reason and the
// evidence. A pure function of its inputs.
#include <map>
#include <optional>
#include <vector>

#include "policy/deployment.hpp"
#include "policy/types.hpp"

namespace lastgood::policy {

// Rate limits per service: `cooldown` after any acting decision (alert, propose, execute) and
// at most `max_per_day` rollbacks in any 24 h.
class Budget {
 public:
  // Why acting now is not allowed, or nullopt.
  std::optional<std::string> blocked(TimePoint now, Duration cooldown, int max_per_day) const;
  void note_decision(TimePoint now) { last_decision_ = now; }
  void note_rollback(TimePoint now);
  std::optional<TimePoint> last_decision() const { return last_decision_; }
  int rollbacks_last_day(TimePoint now) const;
  // The rollbacks of the last 24 h, oldest first (a ledger snapshot), and back.
  const std::vector<TimePoint>& rollbacks() const { return rollbacks_; }
  void restore(std::optional<TimePoint> last_decision, std::vector<TimePoint> rollbacks) {
    last_decision_ = last_decision;
    rollbacks_ = std::move(rollbacks);
  }

 private:
  std::optional<TimePoint> last_decision_;
  // The rollbacks of the last 24 h, oldest first (a few). Not a std::deque: libstdc++'s allocates
  // a 512-byte block even when empty, 5 MB for 10 000 services that mostly never roll back.
  std::vector<TimePoint> rollbacks_;
};

struct DecideInput {
  std::string service;
  const Trigger* trigger = nullptr;
  Evidence evidence;
  TimePoint now;
  TimePoint breach_started;
  bool watcher_unhealthy = false;
  std::string watcher_detail;               // which reference probe failed and why
  bool has_deployment = false;
  bool shadow = false;                      // the service or the trigger is in shadow mode
  const Rollback* rollback = nullptr;
  const std::map<Severity, Authority>* authority = nullptr;
  const DeploymentTracker* deployment = nullptr;
  const Budget* budget = nullptr;
};

Decision decide(const DecideInput& in);

}  // namespace lastgood::policy
