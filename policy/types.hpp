#pragma once
// Plain types of the policy engine (design.md "Core types"). policy/ is pure C++: no sockets,
// no Asio, no clocks of its own; time is always an argument.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/spec.hpp"

namespace lastgood::policy {

using TimePoint = std::chrono::system_clock::time_point;

enum class SampleOutcome : std::uint8_t { ok, fail, error };

// Conditions a probe can report as failed, as bits (see condition_bit()).
std::uint32_t condition_bit(const std::string& name);  // 0 for an unknown name

// What the policy sees of one probe run.
struct Sample {
  TimePoint at;
  SampleOutcome outcome = SampleOutcome::ok;
  double latency_ms = 0;
  std::uint32_t failed_conditions = 0;  // condition_bit() of each failed expectation
  bool latency_known = true;  // false: the watcher's own stall is in latency_ms (left out of latency rules)
};

enum class TriggerState { ok, pending, firing, inconclusive };
const char* to_string(TriggerState s);

enum class DecisionKind { alert, propose, execute, hold };
const char* to_string(DecisionKind k);

// What was measured, against what: every transition and decision carries one.
struct Evidence {
  std::string probe;        // the probe that breached ("" for service-wide rules)
  std::string measure;      // "consecutive_failures", "error_rate", "p95_latency_ms", "burn_rate_1h", ...
  double value = 0;         // measured
  double threshold = 0;     // the rule's limit
  Duration window{0};       // the window it was measured over (0 when count-based)
  int samples = 0;          // results counted
  int errors = 0;           // of which the probe could not judge
  std::string detail;       // e.g. the failed condition's reason, or both burn windows
  int probes_failing = 0;   // impact scope: probes whose last result failed ...
  int probes_watched = 0;   // ... out of the service's probes (reference probes excluded)
  std::string describe() const;
};

struct Decision {
  std::string service;
  std::string trigger;
  Severity severity = Severity::P1;
  DecisionKind kind = DecisionKind::hold;
  std::string reason;
  Evidence evidence;
  std::optional<std::string> release_from, release_to;
  bool shadow = false;  // detected only: never enforced
  TimePoint at;
  // Who asked: the policy on a breach, or a person (a manual rollback, a release marked bad).
  std::string origin = "policy";  // policy | manual | mark_bad
  std::string requested_by;       // the person, for manual and mark_bad
  // The target was never verified good here (a fresh install: the deployment's own older
  // release): only ever proposed.
  bool unverified_target = false;
};

struct Transition {
  std::string service;
  std::string trigger;
  Severity severity = Severity::P1;
  TriggerState from = TriggerState::inconclusive, to = TriggerState::inconclusive;
  TimePoint at;
  Evidence evidence;
};

}  // namespace lastgood::policy
