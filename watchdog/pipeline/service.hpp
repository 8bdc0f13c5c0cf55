#pragma once
// What the pipeline keeps per watched service. At 10 000 services every byte here is 10 kB:
// what only a service with a deployment needs is held behind a pointer.
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "policy/engine.hpp"

namespace lastgood::watchdog {

struct Service {
  const config::Service* cfg = nullptr;
  std::unique_ptr<policy::ServicePolicy> policy;
  std::unique_ptr<actions::Action> action;                   // with a deployment
  std::unique_ptr<boost::asio::steady_timer> observe_timer;  // with an action
  std::string observe_error;  // the last observation error, logged once per change
  bool escalated = false;     // no automatic action until a person clears it
  std::string escalation;     // why
  bool acting = false;        // a rollback of this service is running
  int refusals = 0;           // automatic rollbacks refused by the coordinator in a row (retried with backoff)
  bool retired = false;       // removed from the config by a reload (its slot stays: indices are stable)
  bool observing = false;     // its observe loop runs
  // Per probe, the reason of its last result that was not ok ("status: got 500"): what a person
  // reads as the evidence's why. Sized on the first failure.
  std::vector<std::string> last_failure;
  const std::string& name() const { return cfg->name; }
};

}  // namespace lastgood::watchdog
