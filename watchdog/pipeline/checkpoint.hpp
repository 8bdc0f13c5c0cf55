#pragma once
// A ledger snapshot (issue 21): what replaying every entry up to a point rebuilds, written as the
// first entry of the next ledger segment, so that a restart reads that segment only (memory and
// start-up time follow live state, not history).
//
// The checkpoint is fed every entry, as replay reads it (at open, then each entry appended), and
// makes the same fold replay makes, by the same code where it can:
//  - per service (every name the ledger mentions, in the config or not): the releases and the
//    bad marks (policy::DeploymentTracker), the budget (cooldown and the rollbacks of the last
//    24 h), and whether it is escalated;
//  - the incident records (watchdog/state/incidents.hpp) and the incidents PagerDuty knows;
//  - carried forward as the entries themselves, replayed as they were: the actions started and
//    not finished, or finished and not verified, with every entry of their chain (a snapshot that
//    kept an action's start without its end would make a restart reconcile it, and one that kept
//    an approved proposal without the action_started naming it would make a restart run it
//    again); the last Proposals::kKept proposals with every entry of each, and the actions that
//    name them; notices queued and not delivered; silences still listed.
// Pure: no I/O, no clock (times come from the entries).
#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/decider.hpp"
#include "policy/deployment.hpp"
#include "watchdog/pipeline/notifier.hpp"
#include "watchdog/pipeline/replay.hpp"
#include "watchdog/state/incidents.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/state/silences.hpp"

namespace lastgood::watchdog {

class Checkpoint final : private ReplayTarget {
 public:
  Checkpoint();

  // One entry, in ledger order, as replay reads it (replay_reads(): entries replay skips are not
  // fed). A snapshot entry restores this checkpoint from it (the entries after it are then fed).
  void feed(const LedgerEntry& e);
  // The data of the snapshot entry that would follow the last entry fed.
  nlohmann::json snapshot();
  // What is held now: services, carried entries (for tests and the log).
  std::size_t services() const { return states_.size(); }
  std::size_t carried() const;

  // The per-service state a snapshot holds, read back (the pipeline restores its services from
  // it). Throws std::runtime_error naming what is malformed.
  struct ServiceState {
    policy::DeploymentTracker deployment;
    policy::Budget budget;
    std::optional<std::string> escalated;  // the reason, while escalated
  };
  static std::map<std::string, ServiceState> load_services(const nlohmann::json& snapshot);
  // The carried entries of a snapshot, in ledger order.
  static std::vector<LedgerEntry> load_carried(const nlohmann::json& snapshot);

 private:
  // ReplayTarget: the same calls replay makes on the pipeline's services, made on the shadow state.
  std::optional<std::size_t> service_index(const std::string& name) const override;
  void release(std::size_t si, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint at, bool migration) override;
  void verified_good(std::size_t si, const std::string& id, policy::TimePoint at) override;
  void decision(std::size_t si, policy::DecisionKind kind, policy::TimePoint at) override;
  void rollback_started(std::size_t si, policy::TimePoint at) override;
  void escalated(std::size_t si, const std::string& reason) override;
  void cleared(std::size_t si) override;
  void marked_bad(std::size_t si, const std::string& release, policy::BadMark mark) override;
  void silence(Event type, const LedgerEntry& e) override;

  void restore(const nlohmann::json& snapshot);
  void keep(const LedgerEntry& e, Event type);
  std::size_t state_of(const std::string& name);
  void prune();

  std::unique_ptr<Replayer> replayer_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::string> names_;
  std::vector<ServiceState> states_;
  Incidents incidents_;
  Notifier::OpenIncidents pagerduty_;
  Silences silences_;
  // Carried candidates: entries of each action (by id), of each proposal (by id, in order of
  // creation), of queued notices, of silences.
  std::map<std::string, std::vector<LedgerEntry>> actions_;
  std::map<std::string, std::string> action_proposal_;  // action id -> the proposal it carried out
  std::map<std::string, std::vector<LedgerEntry>> proposals_;
  std::deque<std::string> proposal_order_;
  std::map<std::string, LedgerEntry> notices_;
  std::map<std::string, std::vector<LedgerEntry>> silence_entries_;
  std::size_t fed_since_prune_ = 0;
};

}  // namespace lastgood::watchdog
