#pragma once
// Verification after a rollback: recovery is verified when `needed` ok results of the service's
// (non-reference) probes come in a row before the deadline; a fail starts the count again, an
// error neither counts nor breaks it; past the deadline it is not recovered. Either outcome is
// recorded and returned; the pipeline notifies and escalates.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/types.hpp"
#include "watchdog/pipeline/recorder.hpp"

namespace lastgood::watchdog {

struct Verification {
  std::string action_id, release, proposal_id;
  policy::TimePoint deadline;
  int needed = 3, seen = 0;
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
  };
  // A probe result of the service: ok counts, fail restarts the count, error is ignored (the
  // caller leaves out reference probes and what arrives while nothing can be recorded).
  // Returns the verification when this result completes it and it was recorded.
  std::optional<Done> on_result(std::size_t service, const std::string& name, bool ok);
  // Past its deadline: not recovered (recorded), returned.
  std::optional<Done> on_tick(std::size_t service, const std::string& name, policy::TimePoint now);
  // An outage of the ledger does not count against recovery: every deadline moves by its length.
  void extend(policy::Duration by);

 private:
  Recorder& rec_;
  std::vector<std::unique_ptr<Verification>> by_service_;  // only services being verified hold one
};

}  // namespace lastgood::watchdog
