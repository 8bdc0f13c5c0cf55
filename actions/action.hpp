#pragma once
// The action interface (design.md "Deployment kinds"): a deployment kind observes the live
// release and rolls back. Kinds arrive with the rollback-execution issue; this header fixes the
// shape so the pipeline can be written against it.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace lastgood::actions {

struct ObservedRelease {
  std::string id;
  std::optional<std::chrono::system_clock::time_point> deployed_at;  // when the source says so
};

struct Observation {
  std::optional<ObservedRelease> live;
  std::vector<ObservedRelease> history;
  std::string error;  // non-empty when the deployment could not be read
};

struct Plan {
  std::string from, to;
  std::vector<std::string> steps;  // human-readable, exactly what execute() will do
};

struct Outcome {
  bool ok = false;
  std::string output;  // capped
  std::string error;
};

class Action {
 public:
  virtual ~Action() = default;
  virtual boost::asio::awaitable<Observation> observe() = 0;
  virtual Plan plan(const std::string& from, const std::string& to) const = 0;
  virtual boost::asio::awaitable<Outcome> execute(const Plan& plan) = 0;
};

}  // namespace lastgood::actions
