#pragma once
// The pipeline: the only place that wires probes, policy and actions together.
//   probe result -> policy sample -> transitions (ledger, metrics)
//   trigger fires -> re-read the live release -> decision (ledger, metrics)
//   execute -> action_started (durable) -> action -> action_finished -> verifier -> verified | escalated
//   propose -> pending proposal (listed in the API; approvals arrive with the humans-in-the-loop work) -> expired
// On start the ledger is replayed: releases, verified-good releases, cooldown and budget,
// proposals, escalations; an action started and not finished is reconciled by observing, never re-run.
#include <deque>
#include <set>
#include <list>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "policy/engine.hpp"
#include "probes/probe.hpp"
#include "watchdog/state/incidents.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/notifier.hpp"

namespace lastgood::watchdog {

policy::Sample to_sample(const probes::ProbeResult& r);
// `authority` is the config's (cfg.authority), made once and shared by every service.
policy::ServiceSpec to_policy(const config::Service& svc,
                              std::shared_ptr<const std::map<policy::Severity, policy::Authority>> authority);
nlohmann::json to_json(const policy::Evidence& e);
nlohmann::json to_json(const policy::Decision& d);

struct Proposal {
  struct Vote {
    std::string approver, role, comment;
    policy::TimePoint at;
  };
  std::string id;
  policy::Decision decision;
  policy::TimePoint created_at, expires_at;
  std::string state = "pending";  // pending | expired | approved | rejected | stale | executing | executed | failed | verified | escalated
  int quorum = 1;
  std::vector<Vote> approvals, rejections;
  nlohmann::json to_json() const;
};

// The answer to an approve or reject request: an HTTP status and a JSON body.
struct VoteResult {
  int status = 200;
  nlohmann::json body;
};

class Pipeline {
 public:
  Pipeline(boost::asio::io_context& ioc, const config::Config& cfg, Metrics& metrics, bool dry_run);
  ~Pipeline();

  // Replays the ledger, reconciles interrupted actions and starts observing deployments.
  void start(Ledger& ledger);
  void stop();

  void on_result(size_t service, size_t probe, const probes::ProbeResult& r);
  void tick(policy::TimePoint now);
  // Ticks services [first, last) (and expires proposals): the watchdog spreads a second's ticks
  // over slices so that 10 000 services do not stall the loop at once.
  void tick(policy::TimePoint now, size_t first, size_t last);
  size_t services() const { return svcs_.size(); }
  // A person approves or rejects a proposal. `approver` is null when the token was missing or
  // unknown. Every attempt is recorded in the ledger (names, never tokens).
  VoteResult vote(const std::string& proposal_id, const config::Approver* approver, bool approve, const std::string& comment,
                  const std::string& source);
  // An Alertmanager webhook (version 4): each alert is an external trigger of the service named by
  // its service label. Returns counts by outcome (accepted, duplicate, unknown_service, ...).
  // `problem` is set (and nothing is handled or remembered) when the payload is not Alertmanager's
  // shape: the API answers 400 with it.
  nlohmann::json on_alertmanager(const nlohmann::json& payload, std::string* problem = nullptr);
  // A person clears an escalation. Returns false when the service was not escalated.
  bool clear(size_t service, const std::string& who, const std::string& source);

  std::optional<size_t> service_index(const std::string& name) const;
  nlohmann::json service_json(size_t service, policy::TimePoint now) const;
  nlohmann::json proposals_json() const;
  const policy::ServicePolicy& policy(size_t service) const { return *svcs_[service]->policy; }
  const std::deque<policy::Decision>& recent_decisions() const { return recent_; }
  bool escalated(size_t service) const { return svcs_[service]->escalated; }
  Notifier& notifier() { return notifier_; }
  const Incidents& incidents() const { return incidents_; }
  // Whether the ledger takes entries now. While it does not, nothing is acted on or verified
  // (decisions are "hold: cannot record"), probing goes on, and a write is retried every second.
  bool ledger_writable() const { return writable_; }
  const std::string& ledger_error() const { return ledger_error_; }
  // Records an entry on behalf of the API (e.g. a refused clear). False when it could not be made.
  bool record_api(const std::string& type, const std::string& service, nlohmann::json data) {
    return record(type, service, std::move(data));
  }
  // Records what someone without a valid token tried, within a fixed bound so that nobody without
  // a token can grow the ledger faster than kUnauthPerMinute entries (plus one summary) a minute,
  // at most kUnauthPerClient of them from one client; the rest are counted and summed up in one
  // `unauthenticated_dropped` entry when the minute is over. `data` never holds a request body.
  static constexpr int kUnauthPerMinute = 60, kUnauthPerClient = 10;
  bool record_unauthenticated(const std::string& type, const std::string& service, const std::string& client, nlohmann::json data);

 private:
  struct UnauthBudget {
    long long minute = -1;
    int total = 0;
    std::map<std::string, int> per_client;
    std::uint64_t dropped = 0;
  } unauth_;
  void flush_unauthenticated(long long minute);
  struct Verification {
    std::string action_id, release, proposal_id;
    policy::TimePoint deadline;
    int needed = 3, seen = 0;
  };
  // Per service; at 10 000 services every byte here is 10 kB, so what only a service with a
  // deployment or a rollback in progress needs is held behind a pointer.
  struct Svc {
    std::unique_ptr<policy::ServicePolicy> policy;
    std::unique_ptr<actions::Action> action;
    const config::Service* cfg = nullptr;
    std::unique_ptr<boost::asio::steady_timer> observe_timer;  // with an action
    std::string observe_error;  // the last observation error, logged once per change
    bool escalated = false;
    std::string escalation;
    bool acting = false;
    std::unique_ptr<Verification> verifying;  // after a rollback, until recovery or escalation
  };

  // Appends to the ledger; false (and lastgood stops acting until a write works) when it cannot.
  bool record(const std::string& type, const std::string& service, nlohmann::json data);
  // Once a second: checks the free space of state_dir (below kDiskReserve lastgood holds, as when
  // an append fails) and, while the ledger is not writable, tries an entry.
  void retry_ledger(policy::TimePoint now);
  static constexpr unsigned long long kDiskReserve = 64 * 1024;
  void resume_after_outage();
  boost::asio::awaitable<void> recheck_approved(size_t si, std::string proposal_id);
  void mark_stale(size_t si, const std::string& live);
  void handle(size_t si, const policy::Events& ev);
  void handle_decision(size_t si, policy::Decision d);
  boost::asio::awaitable<void> decide_after_observing(size_t si, std::string trigger);
  boost::asio::awaitable<void> observe_once(size_t si);
  boost::asio::awaitable<void> observe_loop(size_t si);
  boost::asio::awaitable<void> run_action(size_t si, policy::Decision d, std::string via, std::string proposal_id = "");
  void set_proposal_state(const std::string& id, const std::string& state);
  boost::asio::awaitable<void> reconcile(size_t si, nlohmann::json started);
  void escalate(size_t si, const std::string& why, const std::string& action_id = "");
  void publish_releases(size_t si);
  void publish_proposals();
  void replay(std::vector<LedgerEntry> entries, std::vector<std::pair<size_t, nlohmann::json>>& open_actions);
  void spawn(std::function<boost::asio::awaitable<void>()> make, const char* what, bool restart = false);

  boost::asio::io_context& ioc_;
  const config::Config& cfg_;
  Metrics& metrics_;
  bool dry_run_;
  Ledger* ledger_ = nullptr;
  std::vector<std::unique_ptr<Svc>> svcs_;
  std::deque<policy::Decision> recent_;  // the last 100, for the API
  std::deque<Proposal> proposals_;       // pending and the last 100 closed
  std::uint64_t next_id_ = 1;
  bool stopped_ = false;
  Notifier notifier_;
  Incidents incidents_;
  std::set<std::string> alert_seen_;     // fingerprint|status|startsAt already handled (bounded)
  std::list<std::string> alert_order_;   // the same keys, oldest first
  bool writable_ = true;
  std::string ledger_error_;
  std::uint64_t dropped_ = 0;  // entries that could not be recorded during the current outage
  policy::TimePoint unwritable_since_{}, last_retry_{};
  std::vector<std::string> recheck_;  // approved proposals whose action never started (replay)
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // expires with the pipeline: restarted loops check it
};

}  // namespace lastgood::watchdog
