#include "policy/decider.hpp"

namespace lastgood::policy {

namespace {
constexpr Duration kDay{24LL * 3600 * 1000};

std::string human(Duration d) {
  auto s = d.count() / 1000;
  if (s >= 3600) return std::to_string(s / 3600) + "h" + (s % 3600 ? std::to_string((s % 3600) / 60) + "m" : "");
  if (s >= 60) return std::to_string(s / 60) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  return std::to_string(s) + "s";
}
}  // namespace

int Budget::rollbacks_last_day(TimePoint now) const {
  int n = 0;
  for (auto t : rollbacks_)
    if (now - t < kDay) ++n;
  return n;
}

void Budget::note_rollback(TimePoint now) {
  rollbacks_.push_back(now);
  last_decision_ = now;
  std::erase_if(rollbacks_, [&](TimePoint t) { return now - t >= kDay; });
}

std::optional<std::string> Budget::blocked(TimePoint now, Duration cooldown, int max_per_day) const {
  if (last_decision_ && now - *last_decision_ < cooldown)
    return "cooldown: the last action on this service was " + human(std::chrono::duration_cast<Duration>(now - *last_decision_)) +
           " ago (cooldown " + human(cooldown) + ")";
  const int n = rollbacks_last_day(now);
  if (n >= max_per_day)
    return "rollback budget spent: " + std::to_string(n) + " rollback(s) in the last 24h (max_per_day " + std::to_string(max_per_day) + ")";
  return std::nullopt;
}

Decision decide(const DecideInput& in) {
  Decision d;
  d.service = in.service;
  d.trigger = in.trigger->name;
  d.severity = in.trigger->severity;
  d.evidence = in.evidence;
  d.shadow = in.shadow;
  d.at = in.now;
  const Rollback& rb = *in.rollback;
  const Release* live = in.deployment ? in.deployment->live() : nullptr;
  if (live) d.release_from = live->id;

  auto hold = [&](std::string why) {
    d.kind = DecisionKind::hold;
    d.reason = std::move(why);
    d.release_to.reset();
    return d;
  };

  if (in.watcher_unhealthy) return hold("watcher unhealthy" + (in.watcher_detail.empty() ? "" : ": " + in.watcher_detail));
  if (auto why = in.budget->blocked(in.now, rb.cooldown, rb.mode == "alert" || !in.has_deployment ? 1 << 30 : rb.max_per_day))
    return hold(*why);
  if (rb.mode == "alert" || !in.has_deployment) {
    d.kind = DecisionKind::alert;
    d.reason = !in.has_deployment ? "no deployment to roll back: alert only" : "rollback mode is alert";
    return d;
  }
  if (!live) return hold("live release unknown: the deployment has not been observed yet");
  if (in.breach_started - live->deployed_at > rb.rollback_window)
    return hold("no recent deployment: " + live->id + " went live " +
                human(std::chrono::duration_cast<Duration>(in.breach_started - live->deployed_at)) +
                " before the breach began (rollback_window " + human(rb.rollback_window) + "): rolling back would not help, alert only");
  const Release* target = in.deployment->rollback_target();
  if (!target)
    if (auto u = in.deployment->unverified_target()) {  // cold start: proposed, never executed
      d.release_to = u->id;
      d.unverified_target = true;
      d.kind = DecisionKind::propose;
      d.reason = "roll back " + live->id + " -> " + u->id + " (unverified: no release of this service has been verified good yet; " + u->id +
                 " is the newest older release the deployment lists): a person must decide";
      return d;
    }
  if (!target) return hold("no verified good release to roll back to (none other than " + live->id + " was live and healthy for " +
                           human(rb.good_after) + ")");
  d.release_to = target->id;

  if (live->migration) {
    d.kind = DecisionKind::propose;
    d.reason = "release " + live->id + " carries a data migration: a person must decide on rolling back to " + target->id;
    return d;
  }
  if (rb.mode == "approve") {
    d.kind = DecisionKind::propose;
    d.reason = "roll back " + live->id + " -> " + target->id + ": rollback mode is approve";
    return d;
  }
  auto a = in.authority->find(d.severity);
  if (a != in.authority->end() && a->second.auto_) {
    d.kind = DecisionKind::execute;
    d.reason = "roll back " + live->id + " -> " + target->id + ": " + to_string(d.severity) + " may execute automatically";
    return d;
  }
  d.kind = DecisionKind::propose;
  d.reason = "roll back " + live->id + " -> " + target->id + ": authority for " + to_string(d.severity) + " requires approval";
  return d;
}

}  // namespace lastgood::policy
