#pragma once
// The pipeline: the only place that wires probes, policy and actions together, and the only
// caller of its parts (this folder), each of which records what it does and returns what
// follows from it.
//   probe result -> policy sample -> transitions (ledger, metrics) -> verifier
//   trigger fires -> re-read the live release (deployment_watch) -> decision (ledger, metrics)
//   execute -> rollback: action_started (durable) -> action -> action_finished -> verifier -> verified | escalated
//   propose -> proposals: pending -> votes -> execute | rejected | expired | stale
// On start the ledger is replayed (replay): releases, verified-good releases, cooldown and
// budget, proposals, escalations; an action started and not finished is reconciled by
// observing, never re-run.
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "net/supervise.hpp"

#include "config/config.hpp"
#include "policy/engine.hpp"
#include "probes/probe.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/alert_intake.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/coordinator.hpp"
#include "watchdog/pipeline/deployment_watch.hpp"
#include "watchdog/pipeline/notifier.hpp"
#include "watchdog/pipeline/proposals.hpp"
#include "watchdog/pipeline/recording.hpp"
#include "watchdog/pipeline/replay.hpp"
#include "watchdog/pipeline/rollback.hpp"
#include "watchdog/pipeline/service.hpp"
#include "watchdog/pipeline/verifier.hpp"
#include "watchdog/state/incidents.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/state/silences.hpp"

namespace lastgood::watchdog {

policy::Sample to_sample(const probes::ProbeResult& r);
// `authority` is the config's (cfg.authority), made once and shared by every service.
policy::ServiceSpec to_policy(const config::Service& svc, std::shared_ptr<const std::map<policy::Severity, policy::Authority>> authority);

// The config's maintenance windows as silences ("maintenance-<n>").
std::vector<Silence> maintenance_windows(const config::Config& cfg);

// What a reload changes, by service name; `refused` says why it cannot be applied now ("" : it can).
struct ReloadPlan {
  std::vector<std::string> added, removed, changed;
  // Unchanged, but with secrets (*_env, *_file): their probes and action are made again, so that
  // the secrets are read again (a rotated token); their windows and state are kept.
  std::vector<std::string> reread;
  std::size_t unchanged = 0;
  std::string refused;
  nlohmann::json to_json() const {
    return {{"added", added}, {"removed", removed}, {"changed", changed}, {"secrets_read_again", reread}, {"unchanged", unchanged}};
  }
};

// What became of a person's request (a manual rollback, a release marked bad, a silence).
struct Request {
  enum class Status { accepted, refused, forbidden, not_found, cannot_record } status = Status::accepted;
  const Proposal* proposal = nullptr;  // the proposal it opened, if any
  VoteStatus vote = VoteStatus::counted;  // the requester's approval of it
  std::string error;                   // for the refusals
  nlohmann::json body;                 // what to answer with
};

class Pipeline final : private ReplayTarget {
 public:
  Pipeline(boost::asio::io_context& ioc, const config::Config& cfg, Metrics& metrics, bool dry_run);
  ~Pipeline();

  // One entry of the ledger as it is read at open (Ledger's replay sink): state is rebuilt as the
  // file is read, so memory follows state, not history. Nothing acts on it before start().
  void replay_entry(LedgerEntry&& e);
  // Replays the ledger (what replay_entry() was fed, and whatever the ledger still holds),
  // reconciles interrupted actions and starts observing deployments. Throws
  // std::runtime_error when the ledger holds an entry this version cannot replay.
  void start(Ledger& ledger);
  // Stops observing, deciding and notifying (their coroutines are cancelled); rollbacks under way
  // go on to their end (rollbacks_running()).
  void stop();
  std::size_t rollbacks_running() const;

  void on_result(size_t service, size_t probe, const probes::ProbeResult& r);
  void tick(policy::TimePoint now);
  // Ticks services [first, last) (and expires proposals): the watchdog spreads a second's ticks
  // over slices so that 10 000 services do not stall the loop at once.
  void tick(policy::TimePoint now, size_t first, size_t last);
  size_t services() const { return svcs_.size(); }

  // A person approves or rejects a proposal (`approver` null: no valid token). Quorum reached:
  // the rollback is started.
  VoteOutcome vote(const std::string& proposal_id, const config::Approver* approver, bool approve, const std::string& comment,
                   const std::string& source);
  // ---- several replicas (ha.md) ----
  // The coordinator asked before every decision to act and every action (default: a single
  // replica, always yes). Set before start().
  void set_coordinator(Coordinator& c);
  // This replica lost the services for which `mine` is true: their rollbacks under way are cancelled.
  void lost(const std::function<bool(const std::string&)>& mine, const std::string& why);
  // An action another replica started and did not finish (`started`: its intent record, with
  // action_id and to): observed and reconciled, never re-run.
  boost::asio::awaitable<void> adopt(size_t service, nlohmann::json started);
  // Its firing triggers decided again (this replica took the service over).
  void decide_again(size_t service);
  std::chrono::milliseconds step_timeout(size_t service) const;
  std::optional<std::string> live_release(size_t service) const;
  const std::string& service_name(size_t service) const { return svcs_[service]->name(); }
  bool record(Event type, const std::string& service, nlohmann::json data) { return recording_.record(type, service, std::move(data)); }
  void set_replica(const std::string& replica) { ids_.set_tag(replica); }
  bool acting(size_t service) const { return svcs_[service]->acting; }
  // Proposals created or changed (mirrored to etcd), and one made by a previous owner adopted.
  void on_proposal_change(std::function<void(const Proposal&)> f) { proposals_.on_change = std::move(f); }
  const Proposal* adopt_proposal(Proposal p, const std::string& from_replica) { return proposals_.adopt(std::move(p), from_replica); }
  // Several replicas: another replica escalated this service (kept in etcd). Escalated here too,
  // recorded with where it came from; no second notice.
  void adopt_escalation(size_t service, const std::string& why, const std::string& action_id, const std::string& from_replica);

  // An Alertmanager webhook: see AlertIntake::take.
  nlohmann::json on_alertmanager(const nlohmann::json& payload, std::string* problem = nullptr);
  // A person clears an escalation; a breach still firing is decided again. Returns false when
  // the service was not escalated.
  bool clear(size_t service, const std::string& who, const std::string& source);
  // No automatic action on the service until a person clears it (recorded, counted, noticed).
  void escalate(size_t service, const std::string& why, const std::string& action_id) { rollbacks_.escalate(*svcs_[service], why, action_id); }
  // Records what someone without a valid token tried (bounded: Recording).
  bool record_unauthenticated(Event type, const std::string& service, const std::string& client, nlohmann::json data) {
    return recording_.record_unauthenticated(type, service, client, std::move(data));
  }

  // ---- reload (design.md, HTTP surface) ----
  // What applying `next` would change, and whether it can be applied now (a service changed or
  // removed while its rollback runs: not now).
  ReloadPlan plan_reload(const config::Config& next) const;
  // Applies it, keeping every state: windows (unless the service's probes or triggers changed),
  // releases, verified releases, budget, proposals, silences, the ledger. `next` must outlive the
  // pipeline (the watchdog keeps every config it applied). Service indices never move: a removed
  // service keeps its slot, retired.
  void reload(const config::Config& next, const ReloadPlan& plan);
  bool retired(size_t si) const { return svcs_[si]->retired; }

  // ---- people's requests (design.md, HTTP surface) ----
  // A person asks for a rollback of the service (to the last verified good release unless `to`
  // names one). It becomes a proposal with origin `manual` under the authority of `severity`,
  // and the requester's approval counts (quorum 1: it is carried out at once).
  // `approve` false (several replicas): the requester's approval is given through etcd by the caller.
  Request request_rollback(size_t si, const config::Approver& who, std::optional<std::string> to, policy::Severity severity,
                           const std::string& reason, const std::string& source, bool approve = true);
  // A person marks a release bad: never a rollback target again; if it is live, a proposal to
  // roll back from it (origin `mark_bad`) is opened, with the requester's approval.
  // `may_propose` false (another replica owns the service): the mark only.
  Request mark_bad(size_t si, const config::Approver& who, const std::string& release, policy::Severity severity, const std::string& reason,
                   const std::string& source, bool may_propose = true);
  // Several replicas: a release marked bad through another replica (from etcd).
  void shared_bad(size_t si, const std::string& release, const policy::BadMark& mark, const std::string& via);
  // The releases lastgood knows of a service (GET /api/v1/services/{s}/releases).
  nlohmann::json releases(size_t si) const;
  // Silences (design.md): `services` are checked names. 201-style body {id, ends_at}.
  Silence make_silence(std::vector<std::string> services, policy::Duration length, const std::string& who, const std::string& comment,
                       const std::string& source);
  Request add_silence(Silence s);
  // Several replicas: the silences kept in etcd, as read (about once a second).
  void set_shared_silences(std::vector<Silence> shared);
  Request expire_silence(const std::string& id, const std::string& who, const std::string& source);
  const Silences& silences() const { return silences_; }
  // The silence of a service now, if any.
  const Silence* silenced(size_t si) const { return silences_.active(svcs_[si]->name(), clock_.now()); }

  // Adds the failing probe's own reason ("status: got 500") to evidence that names a probe and
  // has no detail of its own.
  void explain(size_t si, policy::Evidence& e) const;
  policy::Evidence explained(size_t si, policy::Evidence e) const;

  std::optional<size_t> service_index(const std::string& name) const override;
  const Service& service(size_t si) const { return *svcs_[si]; }
  const Verification* verifying(size_t si) const { return verifier_.find(si); }
  // What a verification of `si` waits for, as of now: the live release and its fired triggers.
  RecoveryFacts recovery_facts(size_t si) const;
  const Proposals& proposals() const { return proposals_; }
  const policy::ServicePolicy& policy(size_t si) const { return *svcs_[si]->policy; }
  const std::deque<policy::Decision>& recent_decisions() const { return recent_; }
  bool escalated(size_t si) const { return svcs_[si]->escalated; }
  Notifier& notifier() { return notifier_; }
  const Incidents& incidents() const { return incidents_; }
  // The service's open incident's id, else the incident of `action_id`, else "": a field of its
  // log lines (log_fields.hpp).
  std::string incident_of(const std::string& service, const std::string& action_id = "") const {
    if (auto open = incidents_.open_for(service)) return *open;
    const Incident* i = action_id.empty() ? nullptr : incidents_.find(action_id);
    return i ? i->id : "";
  }
  // Whether the ledger takes entries now. While it does not, nothing is acted on or verified
  // (decisions are "hold: cannot record"), probing goes on, and a write is retried every second.
  bool ledger_writable() const { return recording_.writable(); }
  const std::string& ledger_error() const { return recording_.error(); }

 private:
  // ReplayTarget
  void release(size_t si, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint at, bool migration) override;
  void verified_good(size_t si, const std::string& id, policy::TimePoint at) override;
  void decision(size_t si, policy::DecisionKind kind, policy::TimePoint at) override;
  void rollback_started(size_t si, policy::TimePoint at) override;
  void escalated(size_t si, const std::string& reason) override;
  void cleared(size_t si) override;
  void marked_bad(size_t si, const std::string& release, policy::BadMark mark) override;
  void silence(Event type, const LedgerEntry& e) override;
  // Once a second: services whose silence began or ended (lastgood_silenced); an ended one with
  // a breach still firing is decided again.
  void follow_silences(policy::TimePoint now);
  Request open_person_proposal(size_t si, const config::Approver& who, policy::Decision d, const std::string& reason, const std::string& source,
                               bool approve = true);

  ServiceFacts facts(const std::string& service) const;
  void resume_after_outage();
  void handle(size_t si, const policy::Events& ev);
  void handle_decision(size_t si, policy::Decision d);
  void hold(size_t si, const std::string& trigger, const std::string& why, bool record = false);
  boost::asio::awaitable<void> decide_after_observing(size_t si, std::string trigger);
  boost::asio::awaitable<void> observe_once(size_t si);
  boost::asio::awaitable<void> observe_loop(size_t si);
  boost::asio::awaitable<void> run_action(size_t si, policy::Decision d, std::string via, std::string proposal_id = "");
  // An automatic rollback the coordinator refused (etcd away for a moment, the state changed
  // under it): the breach is decided again after 1, 2, 4 ... 32 s while it still fires.
  boost::asio::awaitable<void> retry_refused(size_t si);
  boost::asio::awaitable<void> reconcile(size_t si, nlohmann::json started);
  boost::asio::awaitable<void> recheck_approved(size_t si, std::string proposal_id);
  void recheck_unstarted();
  void begin_verification(size_t si, const std::string& action_id, const std::string& release, const std::string& proposal_id,
                          std::vector<std::string> fired = {});
  // Recovery of a service being verified: complete, or past its deadline (escalated).
  void check_recovery(size_t si);
  void publish_releases(size_t si);
  void remember(const policy::Decision& d);
  void spawn(std::function<boost::asio::awaitable<void>()> make, const char* what, bool restart = false);
  std::unique_ptr<Service> make_service(const config::Service& svc);
  void restore_snapshot(const LedgerEntry& e);
  std::unique_ptr<Replayer> replayer_;  // while the ledger is read at open
  std::uint64_t replayed_ = 0;          // entries fed to it
  void start_observing(size_t si);
  std::shared_ptr<const std::map<policy::Severity, policy::Authority>> authority_;
  // Actions replaced by a reload: kept, since an observation may still run in one.
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::unique_ptr<actions::Action>>> replaced_actions_;
  bool started_ = false;

  boost::asio::io_context& ioc_;
  Metrics& metrics_;
  bool dry_run_;
  bool stopped_ = false;
  SystemClock clock_;
  Ids ids_;
  LocalCoordinator coordinator_;
  std::vector<std::unique_ptr<Service>> svcs_;
  Notifier notifier_;
  Incidents incidents_;
  Recording recording_;
  Proposals proposals_;
  Silences silences_;
  std::vector<char> silenced_;  // per service: silenced at the last follow_silences
  Verifier verifier_;
  Rollbacks rollbacks_;
  DeploymentWatch watch_;
  AlertIntake alerts_;
  std::deque<policy::Decision> recent_;  // the last 100, for the API
  std::vector<std::string> recheck_;     // approved proposals whose action never started
  // What the pipeline runs in the background: observing, deciding, reconciling (ended by stop())
  // and rollbacks (left to finish by stop(), so that a switch under way is completed and recorded
  // rather than abandoned half-done; ended with the pipeline). Last: cancelled first.
  net::Lifetime life_;
  net::Lifetime rollbacks_life_;
};

}  // namespace lastgood::watchdog
