#pragma once
// Running a rollback, and what surrounds it: the live release checked against `from`, the
// coordinator asked, action_started made durable before anything changes (a crash from there on
// is reconciled, never re-run), the action's outcome recorded; an interrupted action reconciled
// after a restart; escalation and a person's clear. What follows (proposal states, notices,
// verification) is the pipeline's, from the result returned.
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/coordinator.hpp"
#include "watchdog/pipeline/recorder.hpp"
#include "watchdog/pipeline/service.hpp"
#include "watchdog/pipeline/verifier.hpp"

namespace lastgood::watchdog {

struct RunResult {
  enum class Kind {
    skipped,          // nothing to run (no action or target, or one already running)
    planned,          // a dry run: the plan was recorded, nothing changed
    refused,          // the live release is no longer `from`
    not_granted,      // the coordinator says this replica may not act on the service now
    lost,             // started, then this replica lost the service to another (ha): cancelled, the new owner reconciles
    not_recorded,     // action_started could not be recorded: nothing was done
    refused_by_kind,  // the kind found the live release changed just before its switch
    failed,
    done,
  };
  Kind kind = Kind::skipped;
  std::string id;  // the action's id (from `refused` on)
  actions::Plan plan;
  actions::Outcome outcome;
  double seconds = 0;
  std::vector<std::string> fired;  // the triggers firing when it started (verification waits for them)
  bool retry = true;  // not_granted: for a passing reason (asked again with backoff), or not (a shared cooldown or budget)
};

// The triggers an action_started (or action_reconciled) record says had fired.
std::vector<std::string> fired_of(const nlohmann::json& started);

class Rollbacks {
 public:
  Rollbacks(Recorder& rec, const Clock& clock, Metrics& metrics, Coordinator& coordinator, Ids& ids, Notify notify, bool dry_run)
      : rec_(rec), clock_(clock), metrics_(metrics), coordinator_(&coordinator), ids_(ids), notify_(std::move(notify)), dry_run_(dry_run) {}
  void set_coordinator(Coordinator& c) { coordinator_ = &c; }
  Coordinator& coordinator() { return *coordinator_; }

  // Rolls `s` back as `d` says; `via` is "auto" or "proposal <id>". One at a time per service.
  boost::asio::awaitable<RunResult> run(Service& s, policy::Decision d, std::string via);
  // After a restart, an action that was started and never finished, once the live release has
  // been read again: it switched (the verification to start is returned) or it is escalated.
  std::optional<Verification> reconciled(Service& s, const nlohmann::json& started);
  // No automatic action on `s` until a person clears it; recorded, counted and noticed.
  void escalate(Service& s, const std::string& why, const std::string& action_id = "");
  // A person clears the escalation; false when `s` was not escalated.
  bool clear(Service& s, const std::string& who, const std::string& source);
  // Cancels the action running on `s`, if any (this replica lost the service): its I/O is
  // cancelled and its child processes killed; it ends as RunResult::Kind::lost.
  bool cancel(const Service& s, const std::string& why);

 private:
  Recorder& rec_;
  const Clock& clock_;
  Metrics& metrics_;
  Coordinator* coordinator_;
  struct Running {
    std::shared_ptr<boost::asio::cancellation_signal> signal;
    std::string why;  // set when cancelled
  };
  std::map<const Service*, Running> running_;
  Ids& ids_;
  Notify notify_;
  bool dry_run_;
};

}  // namespace lastgood::watchdog
