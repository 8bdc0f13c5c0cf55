#pragma once
// The policy of one service: probe results and observed releases in, trigger transitions and
// decisions out. Pure and deterministic: every call takes the time; nothing here does I/O.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "policy/decider.hpp"
#include "policy/deployment.hpp"
#include "policy/rules.hpp"
#include "policy/trigger.hpp"

namespace lastgood::policy {

struct ProbeSpec {
  std::string name;
  bool reference = false;  // checks the watcher's own reach; never part of a trigger by default
};

struct ServiceSpec {
  std::string name;
  std::vector<ProbeSpec> probes;
  TriggerList triggers;  // shared with the config's service (to_policy)
  Rollback rollback;
  // Shared by every service (it is config-wide): a copy per service was 10 kB per 40 services.
  std::shared_ptr<const std::map<Severity, Authority>> authority;  // null: no severity may act alone
  bool has_deployment = false;
  std::set<std::string> migration_releases;  // from config; a release folder marker also counts
  bool shadow = false;
};

// What happened in one call, in order.
struct Events {
  std::vector<Transition> transitions;
  std::vector<Decision> decisions;
  std::vector<std::string> verified_good;  // releases that just became verified good
  bool empty() const { return transitions.empty() && decisions.empty() && verified_good.empty(); }
};

struct TriggerView {
  std::string name;
  Severity severity;
  std::string rule;
  TriggerState state;
  TimePoint since;
  Evidence evidence;  // the latest verdict's
  bool shadow;
};

class ServicePolicy {
 public:
  explicit ServicePolicy(ServiceSpec spec);

  // One probe result. Decisions for triggers that began firing are made at once unless
  // `defer_decisions` is set (the pipeline then re-reads the live release and calls decide()).
  Events on_sample(size_t probe_index, const Sample& s, bool defer_decisions = false);
  // Time passes: windows slide, `for` and `recover_after` run out, releases become good.
  Events tick(TimePoint now, bool defer_decisions = false);
  // The deployment's live release as read now. When it changed, every trigger starts over (its
  // windows, counts and state: evidence is of the live release only), and a trigger that was
  // pending or firing ends with a transition to inconclusive.
  Events on_release(const std::string& id, std::optional<TimePoint> deployed_at, TimePoint now, bool migration = false);
  // The decision for a trigger that is firing now.
  Decision decide(size_t trigger_index, TimePoint now);
  // External triggers (an Alertmanager alert): firing or resolved, severity given by the source.
  // A repeated state is no transition (redeliveries change nothing).
  Events external(const std::string& name, Severity severity, bool firing, const Evidence& evidence, TimePoint now);
  std::optional<Decision> decide_external(const std::string& name, TimePoint now);
  // Whether what happens can be written down now (the pipeline's ledger). While it cannot, no
  // release is verified good: lastgood does not take as done what it cannot record.
  void set_can_record(bool can) { can_record_ = can; }
  // A rollback was carried out (counts against max_per_day and starts the cooldown).
  void note_rollback(TimePoint now) { budget_.note_rollback(now); }
  // The caller reports each rollback it starts with note_rollback (the pipeline, at
  // action_started): an execute decision then costs no cooldown or budget by itself, so that one
  // that is not carried out (held as escalated, by a standby, not recorded) costs nothing and
  // one that is counts once.
  void count_rollbacks_at_start() { counts_at_start_ = true; }
  // Replay from the ledger after a restart.
  void replay_verified(const std::string& id, TimePoint at) { deployment_.mark_good(id, at); }
  // The deployment's own list of releases, as read now (cold start: DeploymentTracker::offer).
  void offer(std::vector<Offered> releases) { deployment_.offer(std::move(releases)); }
  // A person marked a release bad (live, replay): never a rollback target again.
  void mark_bad(const std::string& id, BadMark mark) { deployment_.mark_bad(id, std::move(mark)); }
  void replay_decision(DecisionKind k, TimePoint at) {
    // An execute decision counts from its action_started (note_rollback), not from the decision.
    if (k != DecisionKind::propose) return;
    budget_.note_decision(at);
  }
  // Replay from a ledger snapshot (watchdog/pipeline/checkpoint.hpp): the releases and the
  // budget as the ledger up to it says, as if every entry before it had been replayed. A release
  // the config names as a migration is one, as on_release would have said.
  void restore(DeploymentTracker::Saved releases, const Budget& budget) {
    deployment_.restore(std::move(releases));
    for (const auto& id : spec_.migration_releases) deployment_.mark_migration(id);
    budget_ = budget;
  }
  // A reload that left the probes and triggers as they were: the rest of the spec (rollback,
  // authority, deployment) is applied, the windows and trigger states are kept.
  void respec(const ServiceSpec& spec) {
    spec_.rollback = spec.rollback;
    spec_.authority = spec.authority;
    spec_.has_deployment = spec.has_deployment;
    spec_.migration_releases = spec.migration_releases;
  }
  // A reload that changed the probes or triggers: this (new) policy starts its windows afresh and
  // takes over what is known of the releases and the budget from the old one.
  void take_history(const ServicePolicy& old) {
    deployment_ = old.deployment_;
    budget_ = old.budget_;
    can_record_ = old.can_record_;
    counts_at_start_ = old.counts_at_start_;
  }
  bool trigger_firing(size_t ti) const { return triggers_[ti].machine.state() == TriggerState::firing; }
  // The state of a trigger (config or external) by name; nullopt when there is none.
  std::optional<TriggerState> trigger_state(const std::string& name) const;
  // The names of the triggers firing now.
  std::vector<std::string> firing() const;

  const ServiceSpec& spec() const { return spec_; }
  const DeploymentTracker& deployment() const { return deployment_; }
  const Budget& budget() const { return budget_; }
  std::vector<TriggerView> triggers(TimePoint now) const;
  bool watcher_unhealthy() const;
  std::optional<size_t> trigger_index(const std::string& name) const;
  size_t samples_held(size_t probe_index) const { return probes_[probe_index].window.size(); }

 private:
  bool can_record_ = true;
  bool counts_at_start_ = false;
  struct PerProbe {
    SampleWindow window;
    Duration lookback{0};
    std::optional<SampleOutcome> last;
  };
  struct PerTrigger {
    std::vector<size_t> probes;                 // which probes it watches
    std::vector<std::unique_ptr<RuleState>> rules;  // one per watched probe (none for spread)
    std::vector<Verdict> per_probe;                 // the latest verdict of each
    TriggerMachine machine;
    Verdict last;
    int last_pick = -1;                             // which per_probe verdict `last` came from
    bool spread = false;                            // a spread rule (service-wide), fixed at construction
    // The verdict depends on the samples only, not on time (a count-based rule), and every sample
    // that can change it or its impact figures re-judges it: a tick then changes nothing while the
    // trigger is ok or inconclusive (no `for` or `recover_after` running), so it is skipped.
    bool time_free = false;
    bool judged = false;  // evaluated at least once
  };

  Verdict evaluate(PerTrigger& t, const Trigger& spec, TimePoint now, std::optional<size_t> only_probe);
  Decision decide_for(const Trigger& spec, const Evidence& evidence, TimePoint breach_started, TimePoint now);
  struct External {
    Trigger spec;
    TriggerState state = TriggerState::ok;
    TimePoint since{}, breach_started{};
    Evidence evidence;
  };
  std::map<std::string, External> externals_;
  void build();
  void step(size_t ti, const Verdict& v, TimePoint now, bool defer, Events& out);
  void after(TimePoint now, Events& out);
  // Names and details for a trigger's latest evidence (off the per-sample path).
  Evidence described(size_t ti, TimePoint now) const;
  std::pair<int, int> impact() const;

  ServiceSpec spec_;
  std::vector<PerProbe> probes_;
  std::vector<PerTrigger> triggers_;
  DeploymentTracker deployment_;
  Budget budget_;
};

}  // namespace lastgood::policy
