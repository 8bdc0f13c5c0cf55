#include "watchdog/pipeline/pipeline.hpp"

#include "watchdog/log_fields.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"
#include "watchdog/state/records.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using nlohmann::json;
using policy::DecisionKind;

policy::Sample to_sample(const probes::ProbeResult& r) {
  policy::Sample s;
  s.at = r.started_at;
  s.outcome = r.outcome == probes::Outcome::ok     ? policy::SampleOutcome::ok
              : r.outcome == probes::Outcome::fail ? policy::SampleOutcome::fail
                                                   : policy::SampleOutcome::error;
  s.latency_ms = r.timing.total.count();
  s.latency_known = r.loop_stall_ms <= 0;
  for (const auto& f : r.failures) s.failed_conditions |= policy::condition_bit(f.condition);
  return s;
}

policy::ServiceSpec to_policy(const config::Service& svc, std::shared_ptr<const std::map<policy::Severity, policy::Authority>> authority) {
  policy::ServiceSpec s;
  s.name = svc.name;
  for (const auto& p : svc.probes) s.probes.push_back({p.name, p.reference});
  s.triggers = svc.triggers;
  s.rollback = svc.rollback;
  s.authority = std::move(authority);
  s.has_deployment = svc.deployment.has_value();
  if (svc.deployment) s.migration_releases.insert(svc.deployment->migration_releases.begin(), svc.deployment->migration_releases.end());
  s.shadow = svc.shadow;
  return s;
}

Pipeline::Pipeline(asio::io_context& ioc, const config::Config& cfg, Metrics& metrics, bool dry_run)
    : ioc_(ioc),
      metrics_(metrics),
      dry_run_(dry_run),
      notifier_(ioc, cfg, [this](Event type, const std::string& service, json data) { recording_.record(type, service, std::move(data)); }),
      incidents_(cfg.state_dir + "/incidents"),
      recording_(cfg.state_dir, metrics, incidents_, clock_),
      proposals_(recording_, clock_, cfg.authority, ids_,
                 [this](const std::string& e, const std::string& s, const json& d) { notifier_.notify(e, s, d); }),
      verifier_(recording_, cfg.services.size()),
      rollbacks_(recording_, clock_, metrics, coordinator_, ids_,
                 [this](const std::string& e, const std::string& s, const json& d) { notifier_.notify(e, s, d); }, dry_run),
      watch_(recording_, clock_, stopped_),
      alerts_(cfg, recording_, metrics, [this](const std::string& name) { return service_index(name); }) {
  svcs_.reserve(cfg.services.size());
  authority_ = std::make_shared<const std::map<policy::Severity, policy::Authority>>(cfg.authority);
  for (const auto& svc : cfg.services) svcs_.push_back(make_service(svc));
  silenced_.assign(svcs_.size(), 0);
  silences_.set_maintenance(maintenance_windows(cfg));
  proposals_.on_pending = [this](const std::string& service, int n) { metrics_.proposals_pending(service, n); };
  notifier_.incident_of = [this](const std::string& id) {
    const Incident* inc = incidents_.find(id);
    return inc ? inc->id : id;
  };
  recording_.on_change = [this](bool writable) {
    for (auto& s : svcs_) s->policy->set_can_record(writable);
  };
}

Pipeline::~Pipeline() { stop(); }

std::unique_ptr<Service> Pipeline::make_service(const config::Service& svc) {
  std::vector<std::pair<std::string, std::string>> triggers;
  for (const auto& t : svc.triggers) triggers.emplace_back(t.name, policy::to_string(t.severity));
  metrics_.declare_service(svc.name, svc.deployment ? svc.deployment->kind : "", triggers);
  auto s = std::make_unique<Service>();
  s->policy = std::make_unique<policy::ServicePolicy>(to_policy(svc, authority_));
  s->policy->count_rollbacks_at_start();  // rollback.cpp notes each at its action_started
  s->cfg = &svc;
  if (svc.deployment) {
    s->action = actions::make_action(ioc_.get_executor(), svc.name, *svc.deployment);
    if (s->action) s->observe_timer = std::make_unique<asio::steady_timer>(ioc_);
  }
  for (const auto& t : svc.triggers) metrics_.trigger_state(svc.name, t.name, "inconclusive");
  metrics_.silenced(svc.name, false);
  return s;
}

void Pipeline::start_observing(size_t si) {
  auto& s = *svcs_[si];
  if (!started_ || stopped_ || s.observing || !s.action) return;
  spawn([this, si] { return observe_loop(si); }, "observe", /*restart=*/true);
}

// Every coroutine the pipeline leaves running goes through the supervised spawn: an exception is
// logged and counted (lastgood_internal_errors_total{where}); a loop (observing) is restarted.
void Pipeline::spawn(std::function<asio::awaitable<void>()> make, const char* what, bool restart) {
  net::spawn(ioc_.get_executor(), std::move(make), what, std::string_view(what) == "rollback" ? rollbacks_life_ : life_,
             restart ? net::Restart::yes : net::Restart::no);
}

std::size_t Pipeline::rollbacks_running() const { return rollbacks_life_.running(); }

std::optional<size_t> Pipeline::service_index(const std::string& name) const {
  for (size_t i = 0; i < svcs_.size(); ++i)
    if (svcs_[i]->name() == name && !svcs_[i]->retired) return i;
  return std::nullopt;
}

ServiceFacts Pipeline::facts(const std::string& service) const {
  ServiceFacts f;
  if (auto si = service_index(service)) {
    const auto& s = *svcs_[*si];
    if (const auto* live = s.policy->deployment().live()) f.live = live->id;
    f.escalated = s.escalated;
    f.escalation = s.escalation;
    f.can_act = s.action && !s.acting;
  }
  return f;
}

// ---- start: replay, reconcile, observe ------------------------------------------------------

void Pipeline::release(size_t si, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint at, bool migration) {
  svcs_[si]->policy->on_release(id, deployed_at, at, migration);
}
void Pipeline::verified_good(size_t si, const std::string& id, policy::TimePoint at) { svcs_[si]->policy->replay_verified(id, at); }
void Pipeline::decision(size_t si, DecisionKind kind, policy::TimePoint at) { svcs_[si]->policy->replay_decision(kind, at); }
void Pipeline::rollback_started(size_t si, policy::TimePoint at) { svcs_[si]->policy->note_rollback(at); }
void Pipeline::escalated(size_t si, const std::string& reason) {
  svcs_[si]->escalated = true;
  svcs_[si]->escalation = reason;
}
void Pipeline::cleared(size_t si) {
  svcs_[si]->escalated = false;
  svcs_[si]->escalation.clear();
}

void Pipeline::replay_entry(LedgerEntry&& e) {
  if (!replayer_) replayer_ = std::make_unique<Replayer>(static_cast<ReplayTarget&>(*this), &proposals_);
  ++replayed_;
  if (replayer_->damaged()) return;  // refused in start(): nothing more is read into state
  if (e.type == name(Event::snapshot)) {
    restore_snapshot(e);
    return;
  }
  // An intact entry whose data is not what its type carries (a field of another JSON type: only
  // whoever can rewrite the chain makes one) is damage named by its seq and type, as an unknown
  // type is, never an exception out of the ledger's open with no place named.
  try {
    replayer_->feed(e);
    if (replayer_->damaged()) return;
    // Only collected here: resumed notices are sent, and incident records written, in start().
    notifier_.replay_entry(e);
    incidents_.observe(e);
    recording_.checkpoint().feed(e);
  } catch (const std::exception& ex) {
    replayer_->fail("entry " + std::to_string(e.seq) + " (" + e.type.substr(0, 64) + ") holds data this version cannot replay (" + ex.what() + ")");
  }
}

// The first entry of a segment: the state replay would have rebuilt from every entry before it
// (checkpoint.hpp). A snapshot this version cannot read is damage, as an unknown entry is.
void Pipeline::restore_snapshot(const LedgerEntry& e) {
  try {
    auto services = Checkpoint::load_services(e.data);
    auto carried = Checkpoint::load_carried(e.data);
    incidents_.restore(e.data.at("incidents"));
    notifier_.restore_open(e.data.at("pagerduty"));
    recording_.checkpoint().feed(e);
    for (auto& [name, st] : services) {
      const auto si = service_index(name);
      if (!si) continue;  // no longer in the config (kept in the next snapshot all the same)
      svcs_[*si]->policy->restore(st.deployment.saved(), st.budget);
      svcs_[*si]->escalated = st.escalated.has_value();
      svcs_[*si]->escalation = st.escalated.value_or("");
    }
    // Actions in flight or not verified, proposals, queued notices, silences: replayed as they were.
    for (const auto& c : carried) {
      replayer_->feed(c, true);
      notifier_.replay_entry(c, true);
    }
    spdlog::info("ledger: resumed from the snapshot at entry {} ({} services, {} entries carried forward)", e.seq, services.size(), carried.size());
  } catch (const std::exception& ex) {
    replayer_->fail("entry " + std::to_string(e.seq) + " is a snapshot this version cannot read: " + ex.what());
  }
}

void Pipeline::start(Ledger& ledger) {
  recording_.attach(ledger);
  for (auto& e : ledger.take_loaded()) replay_entry(std::move(e));  // a ledger opened without the sink
  if (!replayer_) replayer_ = std::make_unique<Replayer>(static_cast<ReplayTarget&>(*this), &proposals_);
  metrics_.ledger_entries(ledger.size());
  // A history that cannot be read is refused before anything acts on it (no notice resumed, no
  // incident record rewritten).
  Replayed r = replayer_->finish();
  replayer_.reset();
  if (!r.damage.empty())
    throw std::runtime_error("ledger " + ledger.path() + ": " + r.damage + "; lastgood will not act on a history it cannot read");
  const auto read = ledger.active_entries(), read_from = ledger.first_seq();  // before a rotation at start
  recording_.rotate_if_due();
  notifier_.replay_done();
  if (int w = incidents_.write_changed()) spdlog::info("incidents: wrote {} records that were missing or behind the ledger", w);
  if (ledger.size())
    spdlog::info("ledger: replayed {} entries from {} ({} of them rebuild state){}", read, ledger.path(), replayed_,
                 read_from > 1 ? ", the active segment from its snapshot at entry " + std::to_string(read_from) : std::string());
  // A rollback that finished but was not verified when lastgood stopped: verify it afresh.
  for (const auto& a : r.unverified) begin_verification(a.service, a.data.value("action_id", ""), a.data.value("to", ""), "", fired_of(a.data));
  for (size_t si = 0; si < svcs_.size(); ++si) {
    publish_releases(si);
    if (svcs_[si]->escalated) logf::warn({.service = svcs_[si]->name()}, "service {} is escalated ({}): no automatic action until cleared", svcs_[si]->name(), svcs_[si]->escalation);
  }
  for (auto& a : r.unfinished) spawn([this, si = a.service, data = a.data] { return reconcile(si, data); }, "reconcile");
  // Approved (or executing) and lastgood stopped before the action started: checked again once
  // the live release is read (still `from`: carried out; else stale).
  recheck_ = std::move(r.unstarted_proposals);
  recheck_unstarted();
  started_ = true;
  for (size_t si = 0; si < svcs_.size(); ++si) start_observing(si);
}

void Pipeline::stop() {
  stopped_ = true;
  notifier_.stop();
  for (auto& s : svcs_)
    if (s->observe_timer) s->observe_timer->cancel();
  life_.end();
}

void Pipeline::recheck_unstarted() {
  std::vector<std::string> ids;
  ids.swap(recheck_);
  for (const auto& id : ids)
    if (const auto* p = proposals_.find(id))
      if (auto si = service_index(p->decision.service)) spawn([this, si = *si, id] { return recheck_approved(si, id); }, "reconcile");
}

asio::awaitable<void> Pipeline::reconcile(size_t si, json started) {
  auto& s = *svcs_[si];
  logf::warn({.service = s.name(), .release = started.value("to", ""), .action_id = started.value("action_id", ""), .incident_id = incident_of(s.name())},
             "service {}: action {} (-> {}) was started but never finished: observing instead of running it again", s.name(),
               started.value("action_id", ""), started.value("to", ""));
  co_await observe_once(si);
  if (auto v = rollbacks_.reconciled(s, started)) verifier_.begin(si, std::move(*v));
}

asio::awaitable<void> Pipeline::observe_once(size_t si) {
  auto& s = *svcs_[si];
  auto change = co_await watch_.observe(s);
  if (!change) co_return;
  // Pending proposals whose `from` is no longer live would undo a newer release.
  if (change->new_id) proposals_.mark_stale(s.name(), change->live);
  handle(si, change->events);  // triggers that were pending or firing on the previous release end
  publish_releases(si);
}

asio::awaitable<void> Pipeline::observe_loop(size_t si) {
  auto& s = *svcs_[si];
  if (s.observing) co_return;  // one loop per service (a restart by the supervisor, a reload)
  net::FlagGuard observing(s.observing);
  while (!stopped_ && !s.retired && s.action) {
    co_await observe_once(si);
    if (stopped_ || s.retired || !s.action || !s.cfg->deployment || !s.observe_timer) break;
    s.observe_timer->expires_after(s.cfg->deployment->observe_interval);
    co_await s.observe_timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// After a restart: a proposal approved (or executing) whose action never started. The live
// release is read again; still `from`: carried out now; else stale.
asio::awaitable<void> Pipeline::recheck_approved(size_t si, std::string id) {
  co_await observe_once(si);
  if (stopped_) co_return;
  const Proposal* p = proposals_.find(id);
  if (!p) co_return;
  auto& s = *svcs_[si];
  const auto* live = s.policy->deployment().live();
  if (!live || !p->decision.release_from) {
    logf::warn({.service = s.name(), .proposal_id = id}, "proposal {}: approved before lastgood stopped; the live release cannot be read now ({}): retried", id, s.observe_error);
    recheck_.push_back(id);
    co_return;
  }
  if (live->id != *p->decision.release_from) {
    proposals_.set_state(id, ProposalState::stale);
    logf::warn({.service = s.name(), .release = live->id, .proposal_id = id}, "proposal {}: approved before lastgood stopped, but the live release is now {}: stale, nothing done", id, live->id);
    co_return;
  }
  logf::warn({.service = s.name(), .release = live->id, .proposal_id = id, .incident_id = incident_of(s.name())},
             "proposal {}: approved before lastgood stopped and never started; {} is still on {}: carrying it out", id, s.name(), live->id);
  if (p->state != ProposalState::executing) proposals_.set_state(id, ProposalState::executing);
  const policy::Decision d = p->decision;
  co_await run_action(si, d, "proposal " + id, id);
}

// ---- results, ticks --------------------------------------------------------------------------

policy::Evidence Pipeline::explained(size_t si, policy::Evidence e) const {
  explain(si, e);
  return e;
}

void Pipeline::explain(size_t si, policy::Evidence& e) const {
  const auto& s = *svcs_[si];
  if (!e.detail.empty() || e.probe.empty()) return;
  for (size_t pi = 0; pi < s.cfg->probes.size() && pi < s.last_failure.size(); ++pi)
    if (s.cfg->probes[pi].name == e.probe && !s.last_failure[pi].empty()) e.detail = s.last_failure[pi];
}

void Pipeline::on_result(size_t si, size_t probe, const probes::ProbeResult& r) {
  auto& s = *svcs_[si];
  if (r.outcome != probes::Outcome::ok && !r.reason.empty()) {
    if (s.last_failure.size() <= probe) s.last_failure.resize(s.cfg->probes.size() > probe ? s.cfg->probes.size() : probe + 1);
    s.last_failure[probe] = r.reason.substr(0, 300);
  }
  handle(si, s.policy->on_sample(probe, to_sample(r), /*defer_decisions=*/true));
  if (!recording_.writable() || s.cfg->probes[probe].reference || r.outcome == probes::Outcome::error || !verifier_.find(si)) return;
  verifier_.on_result(si, r.outcome == probes::Outcome::ok);
  check_recovery(si);
}

RecoveryFacts Pipeline::recovery_facts(size_t si) const {
  const auto& s = *svcs_[si];
  RecoveryFacts f;
  if (const auto* live = s.policy->deployment().live()) f.live = live->id;
  if (const auto* v = verifier_.find(si))
    for (const auto& t : v->fired)
      if (auto st = s.policy->trigger_state(t)) f.triggers.emplace_back(t, *st);
  return f;
}

void Pipeline::check_recovery(size_t si) {
  if (!verifier_.find(si) || !recording_.writable()) return;
  auto& s = *svcs_[si];
  auto done = verifier_.check(si, s.name(), recovery_facts(si), clock_.now());
  if (!done) return;
  const auto& v = done->v;
  if (done->result == Verifier::Result::verified) {
    logf::info({.service = s.name(), .release = v.release, .action_id = v.action_id, .proposal_id = v.proposal_id, .incident_id = incident_of(s.name(), v.action_id)},
                "service {}: recovery verified on {}: {}", s.name(), v.release, done->reason);
    proposals_.set_state(v.proposal_id, ProposalState::verified);
    notifier_.notify("verified", s.name(), {{"release_to", v.release}, {"reason", done->reason}, {"conditions", done->conditions}, {"incident_id", v.action_id}});
    return;
  }
  proposals_.set_state(v.proposal_id, ProposalState::escalated);
  rollbacks_.escalate(s, "no recovery within " + config::format_duration(s.cfg->rollback.verify.within) + " after rolling back to " + v.release + " (" + done->reason + ")",
                      v.action_id);
}

void Pipeline::tick(policy::TimePoint t) { tick(t, 0, svcs_.size()); }

void Pipeline::tick(policy::TimePoint t, size_t first, size_t last) {
  if (auto outage = recording_.retry(t)) {
    verifier_.extend(*outage);  // the outage does not count against recovery
    resume_after_outage();
  }
  if (first == 0) recording_.flush_unauthenticated(t);  // the summary of a busy minute
  if (first == 0 && recording_.writable() && !recheck_.empty()) recheck_unstarted();  // once a second
  if (first == 0) {
    follow_silences(t);
    proposals_.remind(t);
  }
  for (size_t si = first; si < std::min(last, svcs_.size()); ++si) {
    auto& s = *svcs_[si];
    if (s.retired) continue;
    handle(si, s.policy->tick(t, true));
    if (!recording_.writable()) continue;
    check_recovery(si);
  }
  proposals_.expire(t);
}

// A breach that began (or went on) while nothing could be recorded was held: decide it again
// now, on the evidence of now.
void Pipeline::resume_after_outage() {
  for (size_t si = 0; si < svcs_.size(); ++si)
    for (const auto& v : svcs_[si]->policy->triggers(clock_.now()))
      if (v.state == policy::TriggerState::firing) spawn([this, si, trigger = v.name] { return decide_after_observing(si, trigger); }, "decide");
}

void Pipeline::set_coordinator(Coordinator& c) { rollbacks_.set_coordinator(c); }

void Pipeline::lost(const std::function<bool(const std::string&)>& mine, const std::string& why) {
  for (auto& s : svcs_)
    if (mine(s->name()) && rollbacks_.cancel(*s, why)) logf::error({.service = s->name(), .incident_id = incident_of(s->name())}, "service {}: the rollback under way is cancelled: {}", s->name(), why);
}

asio::awaitable<void> Pipeline::adopt(size_t si, json started) { co_await reconcile(si, std::move(started)); }

std::chrono::milliseconds Pipeline::step_timeout(size_t si) const {
  const auto& s = *svcs_[si];
  return s.action ? s.action->step_timeout() : std::chrono::milliseconds(0);
}

std::optional<std::string> Pipeline::live_release(size_t si) const {
  if (const auto* l = svcs_[si]->policy->deployment().live()) return l->id;
  return std::nullopt;
}

asio::awaitable<void> Pipeline::retry_refused(size_t si) {
  auto& s = *svcs_[si];
  const int n = std::min(++s.refusals, 6);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::seconds(1 << (n - 1)));
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  if (stopped_ || s.acting) co_return;
  logf::info({.service = s.name(), .incident_id = incident_of(s.name())}, "service {}: the refused rollback is decided again (attempt {})", s.name(), s.refusals + 1);
  decide_again(si);
}

void Pipeline::decide_again(size_t si) {
  for (const auto& v : svcs_[si]->policy->triggers(clock_.now()))
    if (v.state == policy::TriggerState::firing) spawn([this, si, trigger = v.name] { return decide_after_observing(si, trigger); }, "decide");
}

// ---- transitions, decisions ------------------------------------------------------------------

void Pipeline::handle(size_t si, const policy::Events& ev) {
  if (ev.empty()) return;
  const auto& name = svcs_[si]->name();
  for (const auto& tr : ev.transitions) {
    policy::Transition t = tr;
    if (t.to == policy::TriggerState::firing || t.to == policy::TriggerState::pending) explain(si, t.evidence);
    metrics_.trigger_state(name, t.trigger, policy::to_string(t.to));
    if (t.to == policy::TriggerState::firing) metrics_.breach(name, t.trigger, policy::to_string(t.severity));
    recording_.record(Event::transition, name,
                      {{"trigger", t.trigger}, {"severity", policy::to_string(t.severity)}, {"from", policy::to_string(t.from)}, {"to", policy::to_string(t.to)},
                       {"evidence", to_json(t.evidence)}});
    logf::log(t.to == policy::TriggerState::firing ? spdlog::level::warn : spdlog::level::info, {.service = name, .trigger = t.trigger, .incident_id = incident_of(name)},
              "trigger {}/{} ({}): {} -> {}: {}", name, t.trigger, policy::to_string(t.severity), policy::to_string(t.from), policy::to_string(t.to), t.evidence.describe());
    if (t.to == policy::TriggerState::firing) {
      if (const Silence* sl = silences_.active(name, clock_.now()))  // recorded above; no notice while silenced
        logf::info({.service = name, .trigger = t.trigger, .incident_id = incident_of(name)}, "breach {}/{} while silenced ({} until {} by {}): no notice", name, t.trigger,
                   sl->id, format_time(sl->ends_at), sl->by);
      else
        notifier_.notify("breach", name, {{"trigger", t.trigger}, {"severity", policy::to_string(t.severity)}, {"evidence", to_json(t.evidence)},
                                          {"incident_id", incidents_.open_for(name).value_or("")}});
      spawn([this, si, trigger = t.trigger] { return decide_after_observing(si, trigger); }, "decide");
    }
  }
  for (const auto& id : ev.verified_good) {
    recording_.record(Event::release_verified_good, name, {{"release", id}});
    logf::info({.service = name, .release = id}, "service {}: release {} verified good", name, id);
  }
  if (!ev.verified_good.empty()) publish_releases(si);
}

void Pipeline::remember(const policy::Decision& d) {
  recent_.push_back(d);
  if (recent_.size() > 100) recent_.pop_front();
}

// Nothing is decided while nothing can be recorded: the policy's budget is left untouched, and
// the breach is decided again when the ledger takes entries (resume_after_outage).
void Pipeline::hold(size_t si, const std::string& trigger, const std::string& why, bool record) {
  const auto& s = *svcs_[si];
  policy::Decision d;
  d.service = s.name();
  d.trigger = trigger;
  d.kind = DecisionKind::hold;
  d.at = clock_.now();
  if (const auto* l = s.policy->deployment().live()) d.release_from = l->id;
  d.reason = why;
  if (record) recording_.record(Event::decision, s.name(), to_json(d));
  metrics_.decision(s.name(), policy::to_string(d.kind));
  const logf::Fields held{.service = s.name(), .trigger = trigger, .release = d.release_from.value_or(""), .incident_id = incident_of(s.name())};
  logf::log(record ? spdlog::level::warn : spdlog::level::err, held, "decision {}/{}: hold: {}", s.name(), trigger, d.reason);
  remember(d);
}

asio::awaitable<void> Pipeline::decide_after_observing(size_t si, std::string trigger) {
  auto& s = *svcs_[si];
  // A deploy seconds before the breach must be seen: read the live release now.
  co_await observe_once(si);
  if (stopped_) co_return;
  if (!recording_.writable()) {
    hold(si, trigger, "cannot record: " + recording_.error() + " (decided again once the ledger takes entries)");
    co_return;
  }
  // Another replica owns the service (ha.md): it decides; this one holds, and decides again if it
  // takes the service over while the breach still fires (take_over).
  if (const Grant g = rollbacks_.coordinator().may_act(s.name()); !g.granted) {
    hold(si, trigger, "standby: " + g.why, /*record=*/true);
    co_return;
  }
  // Silenced (a person, or a maintenance window): observed and recorded, not acted on; decided
  // again when the silence ends (follow_silences). The policy's cooldown is not spent.
  if (const Silence* sl = silences_.active(s.name(), clock_.now())) {
    hold(si, trigger, "silenced until " + format_time(sl->ends_at) + " by " + sl->by + (sl->comment.empty() ? "" : " (" + sl->comment + ")") + " [" + sl->id + "]",
         /*record=*/true);
    co_return;
  }
  if (auto ti = s.policy->trigger_index(trigger)) {
    if (s.policy->trigger_firing(*ti)) handle_decision(si, s.policy->decide(*ti, clock_.now()));
  } else if (auto d = s.policy->decide_external(trigger, clock_.now())) {
    handle_decision(si, *d);
  }
}

json Pipeline::on_alertmanager(const json& payload, std::string* problem) {
  std::vector<AlertTrigger> taken;
  json counts = alerts_.take(payload, problem, taken);
  for (const auto& a : taken) handle(a.service, svcs_[a.service]->policy->external(a.trigger, a.severity, a.firing, a.evidence, clock_.now()));
  return counts;
}

void Pipeline::handle_decision(size_t si, policy::Decision d) {
  auto& s = *svcs_[si];
  explain(si, d.evidence);
  const auto& name = s.name();
  auto downgrade = [&](std::string why) {
    d.kind = DecisionKind::hold;
    d.reason = std::move(why);
    d.release_to.reset();
  };
  const bool acts = !d.shadow && (d.kind == DecisionKind::execute || d.kind == DecisionKind::propose);
  if (acts && s.escalated)
    downgrade("service is escalated (" + s.escalation + "): no automatic action until a person clears it (POST /api/v1/services/" + name + "/clear)");
  if (!d.shadow && s.acting && d.kind == DecisionKind::execute) downgrade("a rollback of this service is already running");
  // One proposal per breach: a breach decided again (after an outage of the ledger, or a restart)
  // while its proposal still waits or runs is not proposed or executed a second time.
  if (!d.shadow && (d.kind == DecisionKind::execute || d.kind == DecisionKind::propose))
    if (const auto* p = proposals_.open_for(name, d.release_from)) downgrade("proposal " + p->id + " for this breach is already " + std::string(watchdog::name(p->state)));
  // What cannot be recorded is not done: a restart would not know of it.
  if (!recording_.record(Event::decision, name, to_json(d)) && !d.shadow && d.kind != DecisionKind::hold && d.kind != DecisionKind::alert)
    downgrade("cannot record: " + recording_.error() + " (decided again once the ledger takes entries)");
  metrics_.decision(name, policy::to_string(d.kind));
  const char* tag = d.shadow ? " [shadow: detected, not enforced]" : (dry_run_ && d.kind == DecisionKind::execute ? " [dry run]" : "");
  logf::warn({.service = name, .trigger = d.trigger, .release = d.release_from.value_or(""), .incident_id = incident_of(name)}, "decision {}/{}: {}: {}{} | evidence: {}",
             name, d.trigger, policy::to_string(d.kind), d.reason, tag, d.evidence.describe());
  remember(d);
  if (d.shadow) return;
  if (d.kind == DecisionKind::execute) {
    spawn([this, si, d] { return run_action(si, d, "auto"); }, "rollback");
  } else if (d.kind == DecisionKind::propose) {
    const Proposal* p = proposals_.create(d, s.cfg->rollback.approval_timeout);
    if (!p) return;  // not recorded, not proposed: decided again when the ledger takes entries
    json details = to_json(d);
    details["evidence"] = to_json(explained(si, d.evidence));  // with the failing probe's own reason
    details["proposal_id"] = p->id;
    details["decision"] = "propose";
    notifier_.notify("proposed", name, details);
  }
}

// ---- votes, rollbacks, verification, escalation ---------------------------------------------

VoteOutcome Pipeline::vote(const std::string& id, const config::Approver* who, bool approve, const std::string& comment,
                           const std::string& source) {
  VoteOutcome out = proposals_.vote(id, who, approve, comment, source, [this](const std::string& s) { return facts(s); });
  if (out.status == VoteStatus::execute)
    if (auto si = service_index(out.proposal->decision.service))
      spawn([this, si = *si, d = out.proposal->decision, id] { return run_action(si, d, "proposal " + id, id); }, "rollback");
  return out;
}

asio::awaitable<void> Pipeline::run_action(size_t si, policy::Decision d, std::string via, std::string proposal_id) {
  auto& s = *svcs_[si];
  const RunResult r = co_await rollbacks_.run(s, d, via);
  const auto& plan = r.plan;
  switch (r.kind) {
    case RunResult::Kind::skipped:
    case RunResult::Kind::planned:
      co_return;
    case RunResult::Kind::refused:
      proposals_.set_state(proposal_id, ProposalState::stale);
      co_return;
    case RunResult::Kind::not_granted:  // the proposal waits: checked again once a second
      if (!proposal_id.empty()) recheck_.push_back(proposal_id);
      else if (r.retry) spawn([this, si] { return retry_refused(si); }, "decide");
      co_return;
    case RunResult::Kind::not_recorded:  // decided again once the ledger takes entries
      if (!proposal_id.empty()) recheck_.push_back(proposal_id);
      co_return;
    case RunResult::Kind::lost:  // the replica that owns the service now reconciles it
      co_return;
    case RunResult::Kind::refused_by_kind: {
      const std::string live = r.outcome.live_changed.value_or("unknown");
      proposals_.set_state(proposal_id, ProposalState::stale);
      notifier_.notify("stale", s.name(),
                       {{"proposal_id", proposal_id}, {"trigger", d.trigger}, {"release_from", plan.from}, {"live", live}, {"incident_id", r.id},
                        {"reason", "the live release changed to " + live + " since the decision; nothing was changed"}});
      co_await observe_once(si);
      co_return;
    }
    case RunResult::Kind::failed:
    case RunResult::Kind::done:
      break;
  }
  s.refusals = 0;
  const bool ok = r.kind == RunResult::Kind::done;
  proposals_.set_state(proposal_id, ok ? ProposalState::executed : ProposalState::failed);
  notifier_.notify(ok ? "executed" : "failed", s.name(),
                   {{"trigger", d.trigger}, {"severity", policy::to_string(d.severity)}, {"release_from", plan.from}, {"release_to", plan.to},
                    {"reason", d.reason}, {"error", r.outcome.error}, {"proposal_id", proposal_id}, {"incident_id", r.id}});
  if (!ok) {
    rollbacks_.escalate(s, "rollback to " + plan.to + " failed: " + r.outcome.error, r.id);
    co_return;
  }
  // The release the kind made live (Firebase may fall back or clone under a new id) is the one verified.
  begin_verification(si, r.id, r.outcome.switched_to.value_or(plan.to), proposal_id, r.fired);
  co_await observe_once(si);
}

void Pipeline::begin_verification(size_t si, const std::string& action_id, const std::string& release, const std::string& proposal_id,
                                  std::vector<std::string> fired) {
  const auto& verify = svcs_[si]->cfg->rollback.verify;
  verifier_.begin(si, Verification{action_id, release, proposal_id, clock_.now() + verify.within, verify.healthy_samples, 0, std::move(fired)});
}

// Cleared: a breach still firing is decided again (cooldown and budget still apply), as a
// silence that ends lets an alert fire again.
bool Pipeline::clear(size_t si, const std::string& who, const std::string& source) {
  if (!rollbacks_.clear(*svcs_[si], who, source)) return false;
  notifier_.notify("cleared", svcs_[si]->name(), {{"reason", "escalation cleared by " + who}});
  decide_again(si);
  return true;
}

void Pipeline::adopt_escalation(size_t si, const std::string& why, const std::string& action_id, const std::string& from_replica) {
  auto& s = *svcs_[si];
  if (s.escalated) return;
  s.escalated = true;
  s.escalation = why;
  nlohmann::json d{{"reason", why}, {"adopted_from", from_replica}};
  if (!action_id.empty()) d["action_id"] = action_id;
  recording_.record(Event::escalated, s.name(), d);
  logf::error({.service = s.name(), .incident_id = incident_of(s.name())}, "service {} is ESCALATED (by replica {}: {}); no automatic action until a person clears it",
              s.name(), from_replica, why);
}

void Pipeline::publish_releases(size_t si) {
  const auto& sp = *svcs_[si]->policy;
  if (const auto* l = sp.deployment().live()) metrics_.release(sp.spec().name, "live", l->id);
  if (const auto* g = sp.deployment().last_good()) metrics_.release(sp.spec().name, "last_good", g->id);
}

}  // namespace lastgood::watchdog
