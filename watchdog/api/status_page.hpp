#pragma once
// The public status page (design.md, HTTP API: /status and /api/v1/status): for each service the
// config's status_page lists, operational / degraded / outage / maintenance (or unknown while
// lastgood cannot judge it), and the incidents of the last 30 days in plain sentences.
//
// It is for customers: a service is named only by its public_name, and nothing internal is shown:
// no service or trigger names, severities, evidence, releases, people, incident ids, links or
// tokens. lastgood's own trouble (its reference probes failing, probes that could not judge)
// reads "unknown", never as an outage of the service.
//
// Pure: facts in (gathered by the watchdog from the pipeline), JSON and HTML out; time passed in.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "watchdog/state/incidents.hpp"

namespace lastgood::watchdog::status_page {

// What the watchdog knows of one listed service now.
struct ServiceFacts {
  std::string public_name;
  bool judged = false;           // some probe of the target (not a reference probe) has an ok or fail result
  bool watcher_healthy = true;   // lastgood's own reach is fine (its reference probes pass)
  // The most severe non-shadow trigger firing now: "P0", "P1", "P2"; empty when none fires.
  std::string firing_severity;
  std::optional<long long> maintenance_until_ms;  // in a maintenance window until then
  // The service's open incident, if any: its status (rolling_back, verifying, ...) and when its
  // rollback switched the release (for "we restored ... and are checking").
  std::string open_incident_status;
  std::optional<long long> restored_ms;
};

// One incident as customers may see it (from an Incident record, see from_incident).
struct IncidentFacts {
  std::string public_name;
  std::string severity;          // P0 | P1 | P2: only its impact word is shown
  long long started_ms = 0;
  std::optional<long long> restored_ms = {};  // the rollback's switch, when one succeeded
  std::optional<long long> ended_ms = {};     // verified, recovered, or cleared by people
  std::string how_ended = {};                 // verified | recovered | cleared | "" (not known)
  bool ongoing = false;
  bool rolling_back = false;              // a rollback is running now
};

struct Maintenance {
  std::vector<std::string> public_names;
  long long start_ms = 0, end_ms = 0;
};

struct Facts {
  std::string title;
  long long now_ms = 0;
  long long history_ms = 30LL * 24 * 3600 * 1000;
  std::vector<ServiceFacts> services;
  std::vector<IncidentFacts> incidents;  // any order; those older than history are left out
  std::vector<Maintenance> maintenance;  // any; past windows are left out
};

// An incident record as customers may see it, or nothing when it is not for them: a shadow
// trigger's (`shadow`), or a person's request that changed nothing. `open`: it is the service's
// open incident; `service_affected_now`: the service is degraded or down now (an escalation that
// people have not cleared is then still ongoing).
std::optional<IncidentFacts> from_incident(const Incident& i, const std::string& public_name, bool open, bool shadow, bool service_affected_now);

// The state of one service: operational | degraded | outage | maintenance | unknown.
std::string state_of(const ServiceFacts& s);

// GET /api/v1/status: {title, updated_at, status, summary, services: [{name, status, message?}],
// incidents: [{service, impact, title, started_at, ended_at, ongoing, text}], maintenance: [...]}.
nlohmann::json to_json(const Facts& f);
// GET /status: the same as a page that needs no script and no other site (status.css is ours).
std::string to_html(const nlohmann::json& status, long long now_ms);
const std::string& css();

// "Dec 3, 14:05 UTC" style pieces, for the sentences (exposed for the tests).
std::string day_of(long long ms);          // "Dec 3"
std::string time_of(long long ms);         // "14:05"
std::string span_of(long long ms);         // "16 minutes", "1 hour 35 minutes", "less than a minute"

}  // namespace lastgood::watchdog::status_page
