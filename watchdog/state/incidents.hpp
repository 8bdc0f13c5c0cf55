#pragma once
// Incident records: one per breach (or person's request), from the moment it fires, written to
// state_dir/incidents/<id>.json and <id>.md. A breach that ends held, alert-only, expired,
// rejected or recovered on its own has its record as much as one that is rolled back. The id is
// "i<ms>-<service>" of the breach that opened it; an incident is also found by the id of its
// action (what notices link to), and an action with no open incident (after a restart, a take-over)
// opens one under the action's id. A record is a view derived from the ledger alone: the
// builder reads ledger entries in order (live, and again on replay after a restart), so the
// record after a restart is the record before it, and a missing file is simply written again.
// The .md's follow-up review section is for people: lastgood never overwrites what is there.
//
// A record holds the timeline (breach, decision, proposal and approvals, action with its output,
// verification or escalation, clearing), the evidence, the releases involved, and the follow-up
// review with the date the root-cause analysis is due (24 h after a P0, 48 h after P1 and P2).
//
// Building is pure (no I/O); write() and write_missing() are the only functions that touch disk.
#include <deque>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "watchdog/state/events.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

struct Incident {
  struct Event {
    long long at_ms = 0;
    std::string event;   // breach | decision | proposed | approval | rejection | action_started | action_finished | ...
    std::string detail;  // one readable line
  };
  std::string id;         // "i<ms>-<service>", or the action id when the action opened it
  std::string action_id;  // its rollback, once one started
  long long last_ms = 0;  // the last entry that touched it
  std::string service, trigger, severity, via, proposal_id, kind;
  std::string release_from, release_to;
  // firing | held | alert_only | proposed | requested | expired | rejected | stale | recovered (no
  // rollback) | rolling_back | verifying | verified | failed | refused | escalated | interrupted
  std::string status = "rolling_back";
  long long opened_ms = 0;              // when the breach began (or the action started, when no breach is on record)
  long long review_due_ms = 0;
  nlohmann::json breach;        // {at, severity, evidence} of the trigger's firing transition, or null
  nlohmann::json decision;      // the decision entry, or null
  nlohmann::json approvals = nlohmann::json::array();
  nlohmann::json action;        // kind, steps, started_at, finished_at, ok, output, error, seconds
  nlohmann::json outcome;       // verification or escalation
  std::vector<Event> timeline;
};

class Incidents {
 public:
  // dir: where the files go (state_dir + "/incidents"); empty: keep records in memory only.
  explicit Incidents(std::string dir = "") : dir_(std::move(dir)) {}

  // Feeds one ledger entry (in ledger order). Returns the id of the incident it changed.
  std::optional<std::string> observe(Event type, const std::string& service, long long ts_ms, const nlohmann::json& data);
  // The same for an entry read back from the ledger (a type this version does not know: nothing).
  std::optional<std::string> observe(const LedgerEntry& e);

  const Incident* find(const std::string& id) const;
  // Every record kept (the last 500), oldest first.
  const std::deque<Incident>& all() const { return incidents_; }
  // Summaries, newest first (for the API and the page).
  nlohmann::json list() const;
  // A breach still firing this long after its incident's last entry opens a new incident.
  static constexpr long long kStaleMs = 3600LL * 1000;
  // The open (not yet verified or escalated) incident of a service, if any.
  std::optional<std::string> open_for(const std::string& service) const;

  // Everything this builder holds, and back (a ledger snapshot: the builder restored from it and
  // fed the entries after it holds what it would after being fed every entry). restore() throws
  // std::runtime_error naming what is malformed.
  nlohmann::json save() const;
  void restore(const nlohmann::json& saved);

  static nlohmann::json to_json(const Incident& i);
  static std::string to_markdown(const Incident& i);

  // Writes <id>.json and <id>.md atomically (temporary file, then rename); a rewrite keeps the
  // existing .md's follow-up review section, which people fill in. Returns an error message,
  // empty on success.
  std::string write(const std::string& id) const;
  // After a replay: writes the records whose files are missing or behind the ledger (a crash
  // between the ledger entry and the file). Returns how many were written.
  int write_changed() const;
  const std::string& dir() const { return dir_; }

 private:
  std::optional<std::string> open_incident(const std::string& service, long long at, const nlohmann::json& started, const std::string& note);
  struct Pending {
    long long at_ms = 0;
    nlohmann::json data;
  };
  Incident* get(const std::string& id);

  std::string dir_;
  std::deque<Incident> incidents_;  // the last 500
  // service -> trigger -> the last firing transition / actionable decision
  std::map<std::string, std::map<std::string, Pending>> breaches_, decisions_;
  // proposal id -> its creation and votes
  std::map<std::string, std::pair<Pending, nlohmann::json>> proposals_;
  std::map<std::string, std::string> open_;  // service -> open incident id
  std::map<std::string, std::string> proposal_of_;  // proposal id -> the incident it belongs to
  Incident* open_incident_of(const std::string& service);
  std::optional<std::string> opened(Incident inc);
};

// UTC, ISO 8601 with milliseconds: 2026-11-26T03:04:05.678Z
std::string iso8601(long long ms_since_epoch);

}  // namespace lastgood::watchdog
