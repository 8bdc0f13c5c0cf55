#pragma once
// Reading the live release from the deployment: the release each service runs is recorded
// when it changes (release_observed) and handed to the policy, whose events (triggers of the
// previous release ending) come back to the pipeline with the change.
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "policy/engine.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/recorder.hpp"
#include "watchdog/pipeline/service.hpp"

namespace lastgood::watchdog {

struct ReleaseChange {
  std::string was;      // "" when unknown before
  std::string live;
  bool new_id = false;  // not only its migration marker changed
  policy::Events events;
};

class DeploymentWatch {
 public:
  DeploymentWatch(Recorder& rec, const Clock& clock, const bool& stopped) : rec_(rec), clock_(clock), stopped_(stopped) {}
  // Reads the live release of `s` once. A read that fails is kept in s.observe_error (logged
  // once per change); nullopt unless the live release changed.
  boost::asio::awaitable<std::optional<ReleaseChange>> observe(Service& s);

 private:
  Recorder& rec_;
  const Clock& clock_;
  const bool& stopped_;
};

}  // namespace lastgood::watchdog
