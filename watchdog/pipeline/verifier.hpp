#pragma once
// Verification after a rollback (design.md, Core types). Recovery is verified when, before the
// deadline, all three hold at once:
//   - the live release, as read from the deployment, is the target;
//   - `needed` ok results of the service's (non-reference) probes came in a row (a fail starts
//     the count again, an error neither counts nor breaks it);
//   - every trigger that had fired when the rollback began is back to ok (not pending, firing or
//     inconclusive: a trigger that lacks samples has not shown recovery).
// Past the deadline it is not recovered, and what did not recover is said. Either outcome is
// recorded and returned; the pipeline notifies and escalates.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/types.hpp"
#include "watchdog/pipeline/recorder.hpp"

namespace lastgood::watchdog {

struct Verification {
  std::string action_id, release, proposal_id;
  policy::TimePoint deadline;
  int needed = 3, seen = 0;
  std::vector<std::string> fired{};  // the triggers that fired: each must be back to ok
};

// What the service shows now, read by the caller from its policy.
struct RecoveryFacts {
  std::optional<std::string> live;                                     // unknown when not read
  std::vector<std::pair<std::string, policy::TriggerState>> triggers{};  // state of each fired trigger (missing: gone from config)
};

class Verifier {
 public:
  Verifier(Recorder& rec, std::size_t services) : rec_(rec), by_service_(services) {}

  void resize(std::size_t services) { by_service_.resize(services); }  // a reload added services
  void begin(std::size_t service, Verification v) { by_service_[service] = std::make_unique<Verification>(std::move(v)); }
  const Verification* find(std::size_t service) const { return by_service_[service].get(); }

  enum class Result { verified, not_recovered };
  struct Done {
    Result result;
    Verification v;
    std::string reason;      // a sentence: what held, or what did not recover
    nlohmann::json conditions;  // live, healthy_samples, triggers: each condition and whether it held
  };
  // A probe result of the service: ok counts, fail restarts the count (the caller leaves out
  // errors, reference probes and what arrives while nothing can be recorded).
  void on_result(std::size_t service, bool ok);
  // Whether recovery is complete now, or past its deadline: recorded and returned (verified,
  // not_recovered). Verified but not recorded is not verified: asked again on the next call.
  std::optional<Done> check(std::size_t service, const std::string& name, const RecoveryFacts& facts, policy::TimePoint now);
  // An outage of the ledger does not count against recovery: every deadline moves by its length.
  void extend(policy::Duration by);

  // The conditions of `v` given `facts`: {"live": {...}, "healthy_samples": {...}, "triggers": [...]}
  // and the list of those that do not hold, as phrases.
  static nlohmann::json conditions(const Verification& v, const RecoveryFacts& facts, std::vector<std::string>* missing);

 private:
  Recorder& rec_;
  std::vector<std::unique_ptr<Verification>> by_service_;  // only services being verified hold one
};

}  // namespace lastgood::watchdog
