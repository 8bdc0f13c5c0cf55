#pragma once
// Plain types of the policy engine (design.md "Core types"). policy/ is pure C++: no sockets,
// no Asio, no clocks of its own; time is always an argument.
#include <chrono>
#include <optional>
#include <string>

namespace lastgood::policy {

using TimePoint = std::chrono::system_clock::time_point;

enum class SampleOutcome { ok, fail, error };

// What the policy sees of one probe run.
struct Sample {
  TimePoint at;
  SampleOutcome outcome = SampleOutcome::ok;
  double latency_ms = 0;
};

enum class TriggerState { ok, pending, firing, inconclusive };
const char* to_string(TriggerState s);

enum class DecisionKind { alert, propose, execute, hold };
const char* to_string(DecisionKind k);

}  // namespace lastgood::policy
