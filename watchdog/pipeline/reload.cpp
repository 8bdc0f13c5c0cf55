// Reload (design.md, HTTP surface): services added, removed or changed are applied to the
// running pipeline without losing what it knows. A service's slot never moves (coroutines and
// the scheduler refer to services by index): a removed service is retired in place, and comes
// back to the same slot if a later config names it again.
#include <spdlog/spdlog.h>

#include "watchdog/pipeline/pipeline.hpp"

namespace lastgood::watchdog {

std::vector<Silence> maintenance_windows(const config::Config& cfg) {
  std::vector<Silence> out;
  for (size_t i = 0; i < cfg.maintenance.size(); ++i) {
    const auto& m = cfg.maintenance[i];
    out.push_back(Silence{"maintenance-" + std::to_string(i), m.services, m.start, m.end, "config", m.comment, cfg.source, true, std::nullopt, ""});
  }
  return out;
}

ReloadPlan Pipeline::plan_reload(const config::Config& next) const {
  ReloadPlan plan;
  std::map<std::string, const config::Service*> wanted;
  for (const auto& svc : next.services) wanted[svc.name] = &svc;
  std::set<std::string> known;
  for (const auto& s : svcs_) {
    if (s->retired) continue;
    known.insert(s->name());
    auto it = wanted.find(s->name());
    const bool removed = it == wanted.end();
    const bool changed = !removed && it->second->fingerprint != s->cfg->fingerprint;
    if (!removed && !changed) {
      // Unchanged: its secrets are read again by making its probes and action again, unless its
      // rollback runs (then it keeps what it has until the next reload).
      if (it->second->has_secrets && !s->acting) plan.reread.push_back(s->name());
      else ++plan.unchanged;
      continue;
    }
    (removed ? plan.removed : plan.changed).push_back(s->name());
    if (s->acting && plan.refused.empty())
      plan.refused = "service " + s->name() + " would be " + (removed ? "removed" : "changed") +
                     " while its rollback runs: nothing was changed; reload again once it has finished";
  }
  for (const auto& svc : next.services)
    if (!known.count(svc.name)) plan.added.push_back(svc.name);
  return plan;
}

void Pipeline::reload(const config::Config& next, const ReloadPlan& plan) {
  authority_ = std::make_shared<const std::map<policy::Severity, policy::Authority>>(next.authority);
  proposals_.set_authority(*authority_);
  notifier_.set_config(next);
  alerts_.set_config(next);
  const std::set<std::string> removed(plan.removed.begin(), plan.removed.end());
  const std::set<std::string> reread(plan.reread.begin(), plan.reread.end());
  // Actions replaced by earlier reloads: no observation runs in them any more after minutes.
  const auto now = std::chrono::steady_clock::now();
  while (!replaced_actions_.empty() && now - replaced_actions_.front().first > std::chrono::minutes(10)) replaced_actions_.pop_front();
  std::map<std::string, size_t> slot;  // every slot, retired ones too
  for (size_t si = 0; si < svcs_.size(); ++si) slot[svcs_[si]->name()] = si;
  for (const auto& svc : next.services) {
    auto at = slot.find(svc.name);
    if (at == slot.end()) {  // new
      svcs_.push_back(make_service(svc));
      svcs_.back()->policy->set_can_record(recording_.writable());
      verifier_.resize(svcs_.size());
      start_observing(svcs_.size() - 1);
      continue;
    }
    auto& s = *svcs_[at->second];
    const bool was_retired = s.retired;
    if (!was_retired && svc.fingerprint == s.cfg->fingerprint && !reread.count(svc.name)) {  // unchanged: the same, read from the new config
      s.cfg = &svc;
      continue;
    }
    // Changed (or back after a removal): the new spec, keeping what is known.
    const bool same_evidence = !was_retired && svc.evidence_fingerprint == s.cfg->evidence_fingerprint;
    s.retired = false;
    s.cfg = &svc;
    s.last_failure.clear();
    if (same_evidence) {
      s.policy->respec(to_policy(svc, authority_));
    } else {
      auto fresh = std::make_unique<policy::ServicePolicy>(to_policy(svc, authority_));
      fresh->take_history(*s.policy);
      s.policy = std::move(fresh);
      for (const auto& t : svc.triggers) metrics_.trigger_state(svc.name, t.name, "inconclusive");
    }
    if (s.action) replaced_actions_.emplace_back(now, std::move(s.action));  // an observation may still run in it
    if (svc.deployment) s.action = actions::make_action(ioc_.get_executor(), svc.name, *svc.deployment);
    if (s.action && !s.observe_timer) s.observe_timer = std::make_unique<boost::asio::steady_timer>(ioc_);
    if (!s.action && s.observe_timer) s.observe_timer->cancel();
    start_observing(at->second);
  }
  for (auto& s : svcs_) {
    if (!removed.count(s->name()) || s->retired) continue;
    s->retired = true;
    if (s->observe_timer) s->observe_timer->cancel();
    metrics_.silenced(s->name(), false);
  }
  silences_.set_maintenance(maintenance_windows(next));
  follow_silences(clock_.now());
  for (size_t si = 0; si < svcs_.size(); ++si)
    if (!svcs_[si]->retired) publish_releases(si);
}

}  // namespace lastgood::watchdog
