#pragma once
// Where the pipeline's parts write what happened (the ledger, through Recording; a list in unit
// tests). Not recorded, not done: a part that cannot record an entry it acts on does not act.
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "watchdog/state/events.hpp"

namespace lastgood::watchdog {

class Recorder {
 public:
  virtual ~Recorder() = default;
  // Appends one entry; false when it could not be made.
  virtual bool record(Event type, const std::string& service, nlohmann::json data) = 0;
  // An entry on behalf of someone without a valid token: bounded per minute and per client, so
  // that nobody without a token can grow the ledger at will; false when dropped or not made.
  virtual bool record_unauthenticated(Event type, const std::string& service, const std::string& client, nlohmann::json data) = 0;
  // Whether entries can be made now, and why not.
  virtual bool writable() const = 0;
  virtual const std::string& error() const = 0;
};

// A notice for the people (notifier.hpp): event, service, details.
using Notify = std::function<void(const std::string& event, const std::string& service, const nlohmann::json& details)>;

}  // namespace lastgood::watchdog
