#include "policy/engine.hpp"

#include <algorithm>
#include <limits>

namespace lastgood::policy {

ServicePolicy::ServicePolicy(ServiceSpec spec) : spec_(std::move(spec)) { build(); }

// Windows, rule states and trigger machines, empty: at construction and when the live release
// changes (evidence is of the live release only).
void ServicePolicy::build() {
  probes_.clear();
  triggers_.clear();
  probes_.resize(spec_.probes.size());
  triggers_.resize(spec_.triggers.size());
  for (size_t ti = 0; ti < spec_.triggers.size(); ++ti) {
    const Trigger& t = spec_.triggers[ti];
    auto& pt = triggers_[ti];
    for (size_t pi = 0; pi < spec_.probes.size(); ++pi) {
      const bool watched = t.probe ? *t.probe == spec_.probes[pi].name : !spec_.probes[pi].reference;
      if (watched) pt.probes.push_back(pi);
    }
    const auto kind = RuleState::kind_of(t.rule.kind);
    pt.spread = kind == RuleState::Kind::spread;
    bool covers_all = true;  // every probe that counts for impact is watched, so its samples re-judge
    for (size_t pi = 0; pi < spec_.probes.size(); ++pi)
      if (!spec_.probes[pi].reference && std::find(pt.probes.begin(), pt.probes.end(), pi) == pt.probes.end()) covers_all = false;
    pt.time_free = covers_all && (kind == RuleState::Kind::consecutive_failures || kind == RuleState::Kind::x_of_y ||
                                  kind == RuleState::Kind::condition);
    if (!pt.spread) {
      for (size_t pi : pt.probes) {
        pt.rules.push_back(std::make_unique<RuleState>(spec_.triggers[ti].rule, probes_[pi].window));
        pt.per_probe.push_back(Verdict{true, false, {}});
        probes_[pi].lookback = std::max(probes_[pi].lookback, pt.rules.back()->lookback());
      }
    }
  }
}

std::optional<size_t> ServicePolicy::trigger_index(const std::string& name) const {
  for (size_t i = 0; i < spec_.triggers.size(); ++i)
    if (spec_.triggers[i].name == name) return i;
  return std::nullopt;
}

bool ServicePolicy::watcher_unhealthy() const {
  for (size_t i = 0; i < probes_.size(); ++i)
    if (spec_.probes[i].reference && probes_[i].last && *probes_[i].last != SampleOutcome::ok) return true;
  return false;
}

std::pair<int, int> ServicePolicy::impact() const {
  int failing = 0, watched = 0;
  for (size_t i = 0; i < probes_.size(); ++i) {
    if (spec_.probes[i].reference) continue;
    ++watched;
    if (probes_[i].last == SampleOutcome::fail) ++failing;
  }
  return {failing, watched};
}

Verdict ServicePolicy::evaluate(PerTrigger& t, const Trigger& spec, TimePoint now, std::optional<size_t> only_probe) {
  auto [failing, watched] = impact();
  if (t.spread) {
    Verdict v;
    int known = 0, fails = 0;
    for (size_t pi : t.probes) {
      if (!probes_[pi].last) continue;
      ++known;
      fails += *probes_[pi].last == SampleOutcome::fail;
    }
    v.evidence.threshold = spec.rule.min_share;
    v.evidence.samples = known;
    v.evidence.value = t.probes.empty() ? 0.0 : static_cast<double>(fails) / static_cast<double>(t.probes.size());
    v.evidence.probes_failing = failing;
    v.evidence.probes_watched = watched;
    v.inconclusive = known == 0;
    v.breached = !v.inconclusive && v.evidence.value >= spec.rule.min_share;
    return v;
  }
  // Per-probe rules: each probe's verdict is kept; a sample re-judges only its own probe (ticks
  // re-judge all). Breached when any watched probe breaches; inconclusive only when all are.
  for (size_t k = 0; k < t.rules.size(); ++k) {
    if (only_probe && t.probes[k] != *only_probe) continue;
    t.per_probe[k] = t.rules[k]->evaluate(probes_[t.probes[k]].window, now);
  }
  int pick = -1;
  for (size_t k = 0; k < t.per_probe.size(); ++k) {
    const auto& v = t.per_probe[k];
    if (v.breached) {
      pick = static_cast<int>(k);
      break;
    }
    if (pick < 0 || (t.per_probe[static_cast<size_t>(pick)].inconclusive && !v.inconclusive)) pick = static_cast<int>(k);
  }
  t.last_pick = pick;
  Verdict combined = pick >= 0 ? t.per_probe[static_cast<size_t>(pick)] : Verdict{true, false, {}};
  combined.evidence.probes_failing = failing;
  combined.evidence.probes_watched = watched;
  return combined;
}

void ServicePolicy::step(size_t ti, const Verdict& v, TimePoint now, bool defer, Events& out) {
  auto& t = triggers_[ti];
  const Trigger& spec = spec_.triggers[ti];
  t.last = v;
  t.judged = true;
  auto prev = t.machine.step(v, now, spec.for_, spec.recover_after);
  if (!prev) return;
  // Entering or leaving `firing` starts count-based rules over: a flapping target needs a full
  // new window to fire again (monit's rule). pending -> firing keeps the count that got it there.
  if (t.machine.state() == TriggerState::firing || *prev == TriggerState::firing)
    for (auto& r : t.rules) r->reset();
  out.transitions.push_back(Transition{spec_.name, spec.name, spec.severity, *prev, t.machine.state(), now, described(ti, now)});
  if (t.machine.state() == TriggerState::firing && !defer) out.decisions.push_back(decide(ti, now));
}

Decision ServicePolicy::decide(size_t ti, TimePoint now) {
  auto& t = triggers_[ti];
  return decide_for(spec_.triggers[ti], described(ti, now), t.machine.breach_started().value_or(now), now);
}

Events ServicePolicy::external(const std::string& name, Severity severity, bool firing, const Evidence& evidence, TimePoint now) {
  Events out;
  auto [it, fresh] = externals_.try_emplace(name);
  auto& x = it->second;
  if (fresh) {
    x.spec.name = name;
    x.spec.rule.kind = "external";
  }
  x.spec.severity = severity;
  const TriggerState before = x.state;
  const TriggerState after = firing ? TriggerState::firing : TriggerState::ok;
  if (before == after) return out;  // redelivered: nothing changed
  x.state = after;
  x.since = now;
  x.evidence = evidence;
  auto [failing, watched] = impact();
  x.evidence.probes_failing = failing;
  x.evidence.probes_watched = watched;
  if (firing) x.breach_started = now;
  out.transitions.push_back(Transition{spec_.name, name, severity, before, after, now, x.evidence});
  return out;
}

std::optional<Decision> ServicePolicy::decide_external(const std::string& name, TimePoint now) {
  auto it = externals_.find(name);
  if (it == externals_.end() || it->second.state != TriggerState::firing) return std::nullopt;
  return decide_for(it->second.spec, it->second.evidence, it->second.breach_started, now);
}

Decision ServicePolicy::decide_for(const Trigger& spec, const Evidence& evidence, TimePoint breach_started, TimePoint now) {
  DecideInput in;
  in.service = spec_.name;
  in.trigger = &spec;
  in.evidence = evidence;
  in.now = now;
  in.breach_started = breach_started;
  in.watcher_unhealthy = watcher_unhealthy();
  if (in.watcher_unhealthy) {
    for (size_t i = 0; i < probes_.size(); ++i)
      if (spec_.probes[i].reference && probes_[i].last && *probes_[i].last != SampleOutcome::ok)
        in.watcher_detail = "reference probe " + spec_.probes[i].name + " is " + (*probes_[i].last == SampleOutcome::fail ? "failing" : "erroring");
  }
  in.has_deployment = spec_.has_deployment;
  in.shadow = spec_.shadow || spec.shadow;
  in.rollback = &spec_.rollback;
  static const std::map<Severity, Authority> kNone;
  in.authority = spec_.authority ? spec_.authority.get() : &kNone;
  in.deployment = &deployment_;
  in.budget = &budget_;
  Decision d = policy::decide(in);
  if (!d.shadow && d.kind != DecisionKind::hold) {
    if (d.kind == DecisionKind::execute && counts_at_start_) return d;  // counted by note_rollback when it starts
    budget_.note_decision(now);
    if (d.kind == DecisionKind::execute) budget_.note_rollback(now);
  }
  return d;
}

Evidence ServicePolicy::described(size_t ti, TimePoint now) const {
  const auto& t = triggers_[ti];
  Evidence e = t.last.evidence;
  if (t.spread) {
    e.measure = "failing_share";
  } else if (t.last_pick >= 0) {
    const size_t k = static_cast<size_t>(t.last_pick);
    e.probe = spec_.probes[t.probes[k]].name;
    t.rules[k]->describe(e, probes_[t.probes[k]].window, now);
  } else {
    e.measure = spec_.triggers[ti].rule.kind;
  }
  return e;
}

void ServicePolicy::after(TimePoint now, Events& out) {
  bool healthy = true;
  for (const auto& t : triggers_)
    if (t.machine.state() == TriggerState::pending || t.machine.state() == TriggerState::firing) healthy = false;
  if (triggers_.empty()) {
    for (size_t i = 0; i < probes_.size(); ++i)
      if (!spec_.probes[i].reference && probes_[i].last == SampleOutcome::fail) healthy = false;
  }
  // While lastgood cannot write a verification down, health is still followed (the evidence is
  // real) but no release is verified: a verification that is not in the ledger did not happen.
  if (deployment_.health(healthy, now, spec_.rollback.good_after, spec_.rollback.verify.healthy_samples, can_record_))
    out.verified_good.push_back(deployment_.live()->id);
}

Events ServicePolicy::on_sample(size_t pi, const Sample& s, bool defer) {
  Events out;
  auto& p = probes_[pi];
  p.window.push(s);
  p.last = s.outcome;
  if (!spec_.probes[pi].reference) deployment_.sample(s.outcome);
  for (auto& t : triggers_) {
    for (size_t k = 0; k < t.rules.size(); ++k)  // rules[k] watches probes[k]; spread has none
      if (t.probes[k] == pi) t.rules[k]->add(s);
  }
  for (size_t ti = 0; ti < triggers_.size(); ++ti) {
    auto& t = triggers_[ti];
    const bool watches = std::find(t.probes.begin(), t.probes.end(), pi) != t.probes.end();
    if (!watches && !t.spread) continue;
    step(ti, evaluate(t, spec_.triggers[ti], s.at, t.spread ? std::nullopt : std::optional<size_t>(pi)), s.at, defer, out);
  }
  // Keep only what the longest rule of this probe still needs.
  std::uint64_t keep_from = p.window.end_seq();
  for (auto& t : triggers_)
    for (size_t k = 0; k < t.rules.size(); ++k)
      if (t.probes[k] == pi) keep_from = t.rules[k]->oldest_needed(keep_from);
  p.window.prune(s.at - p.lookback, keep_from);
  after(s.at, out);
  return out;
}

Events ServicePolicy::tick(TimePoint now, bool defer) {
  Events out;
  for (size_t ti = 0; ti < triggers_.size(); ++ti) {
    const auto& t = triggers_[ti];
    if (t.time_free && t.judged && (t.machine.state() == TriggerState::ok || t.machine.state() == TriggerState::inconclusive)) continue;
    step(ti, evaluate(triggers_[ti], spec_.triggers[ti], now, std::nullopt), now, defer, out);
  }
  after(now, out);
  return out;
}

Events ServicePolicy::on_release(const std::string& id, std::optional<TimePoint> deployed_at, TimePoint now, bool migration) {
  Events out;
  if (!deployment_.observe(id, deployed_at, now, migration || spec_.migration_releases.count(id) > 0)) return out;
  // A trigger's evidence must be of the release it would roll back: results taken before this
  // release was seen live belong to another one (a person may just have deployed the fix for the
  // release that was failing). Every trigger starts over; one that was pending or firing ends,
  // said as a transition to inconclusive. The cost: a breach that a deploy itself caused seconds
  // before lastgood saw it is detected on the new release's own results (count or window again).
  std::vector<TriggerState> before;
  for (const auto& t : triggers_) before.push_back(t.machine.state());
  build();
  for (size_t ti = 0; ti < triggers_.size(); ++ti) {
    if (before[ti] != TriggerState::pending && before[ti] != TriggerState::firing) continue;
    Evidence e;
    e.measure = "release_changed";
    e.detail = "the live release is now " + id + ": the evidence so far was of another release";
    out.transitions.push_back(Transition{spec_.name, spec_.triggers[ti].name, spec_.triggers[ti].severity, before[ti], TriggerState::inconclusive, now, e});
  }
  return out;
}

std::vector<TriggerView> ServicePolicy::triggers(TimePoint now) const {
  std::vector<TriggerView> out;
  for (size_t ti = 0; ti < triggers_.size(); ++ti) {
    const auto& t = triggers_[ti];
    const auto& spec = spec_.triggers[ti];
    out.push_back(TriggerView{spec.name, spec.severity, spec.rule.kind, t.machine.state(), t.machine.since(), described(ti, now),
                              spec.shadow || spec_.shadow});
  }
  for (const auto& [name, x] : externals_)
    out.push_back(TriggerView{name, x.spec.severity, "external", x.state, x.since, x.evidence, spec_.shadow});
  return out;
}

std::optional<TriggerState> ServicePolicy::trigger_state(const std::string& name) const {
  if (auto ti = trigger_index(name)) return triggers_[*ti].machine.state();
  if (auto it = externals_.find(name); it != externals_.end()) return it->second.state;
  return std::nullopt;
}

std::vector<std::string> ServicePolicy::firing() const {
  std::vector<std::string> out;
  for (size_t ti = 0; ti < triggers_.size(); ++ti)
    if (triggers_[ti].machine.state() == TriggerState::firing) out.push_back(spec_.triggers[ti].name);
  for (const auto& [name, x] : externals_)
    if (x.state == TriggerState::firing) out.push_back(name);
  return out;
}

}  // namespace lastgood::policy
