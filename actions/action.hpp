#pragma once
// The action interface (design.md "Deployment kinds"): a deployment kind observes the live
// release and rolls back. It never decides: the pipeline calls it. One file per kind, each with
// its typed config and its row (Kind), listed once in actions/action.cpp.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "config/config.hpp"

namespace lastgood::actions {

struct ObservedRelease {
  std::string id;
  std::optional<std::chrono::system_clock::time_point> deployed_at;  // when the source says so
  bool migration = false;                                            // carries a data migration marker
};

struct Observation {
  std::optional<ObservedRelease> live;
  std::vector<ObservedRelease> history;  // releases available, oldest first when known
  std::string error;                     // non-empty when the deployment could not be read
};

// What the rollback is for: templates may use ${service}, ${from}, ${to}, ${reason}, ${trigger}.
struct Context {
  std::string service, trigger, reason;
  // Other verified-good releases, most recent first (not the live one, not the target): a kind
  // whose target turns out unusable (a Firebase version no longer FINALIZED) may use the first
  // usable one instead, and says so.
  std::vector<std::string> fallbacks = {};
};

// Exactly what execute() will do, for logs, the ledger and --dry-run.
struct Plan {
  std::string from, to;
  Context context;
  std::vector<std::string> steps;
  // Set when it runs: the action's id, and with several replicas its fencing token (ha.md), which
  // a target that can check it compares with the highest it has seen. 0: a single replica.
  std::int64_t fence = 0;
  std::string action_id = {};
};

// Replaces ${service}, ${from}, ${to}, ${reason}, ${trigger}, ${fence}, ${action_id} in `text`; `encode` percent-encodes
// the values (for URLs).
std::string expand(const std::string& text, const Plan& p, bool encode = false);

struct Outcome {
  bool ok = false;
  std::string output;  // capped
  std::string error;   // why it failed; never contains a secret
  // Set when the kind read the live release immediately before its switch and found it is no
  // longer plan.from (a person deployed since the decision): nothing was changed. The value is
  // what is live now ("unknown" when it could not be read).
  std::optional<std::string> live_changed = std::nullopt;
  // What the kind made live, when not plan.to (Firebase: a fallback version, or a version cloned
  // from another site under a new id): verification waits for this release.
  std::optional<std::string> switched_to = std::nullopt;
};

// The outcome of a switch refused because the live release is `live`, not p.from.
Outcome refused_not_from(const Plan& p, const std::string& live);

// Every kind compares the live release with plan.from immediately before its switch, as close
// to it as the deployment allows (local: readlink under flock; ssh: in the same remote command;
// npm: the dist-tag; Firebase: the live channel; http_api and command: their observe), and
// refuses with refused_not_from() when they differ.
class Action {
 public:
  virtual ~Action() = default;
  virtual const char* kind() const = 0;
  virtual boost::asio::awaitable<Observation> observe() = 0;
  virtual Plan plan(const std::string& from, const std::string& to, const Context& ctx) const = 0;
  virtual boost::asio::awaitable<Outcome> execute(const Plan& plan) = 0;
  // The longest one execute() may take: a replica that inherits an unfinished action (ha.md)
  // reconciles it only after this (+ 2 s), when its owner can no longer be in the middle of it.
  virtual std::chrono::milliseconds step_timeout() const { return std::chrono::seconds(30); }
};

// Release names that may be passed to a filesystem or a shell: no '/', no "..", no shell
// metacharacters, not empty, at most 128 characters.
bool valid_release_name(const std::string& name);
// Caps captured output at `max` bytes, saying how much was dropped.
std::string cap_output(std::string s, size_t max = 4096);

// A deployment kind, defined in its own file (actions/<kind>.cpp): the parser of its config keys
// into its typed spec, and the factory that makes the action from them.
struct Kind {
  config::KindParser config;
  std::unique_ptr<Action> (*make)(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);
};

// The parsers of every kind, for config::load (the composition root's lastgood::kinds()).
std::vector<config::KindParser> kind_parsers();
// The action for d.kind. Throws std::logic_error for a kind missing from the table (config/ only
// accepts the table's kinds, so that is lastgood's bug, refused at start).
std::unique_ptr<Action> make_action(boost::asio::any_io_executor ex, const std::string& service, const config::Deployment& d);

}  // namespace lastgood::actions
