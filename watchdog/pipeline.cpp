#include "watchdog/pipeline.hpp"

#include "watchdog/alert_payload.hpp"
#include "watchdog/json_text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <set>

#include <sys/statvfs.h>

#include "net/supervise.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using nlohmann::json;
using policy::DecisionKind;

namespace {

long long ms(policy::TimePoint t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count(); }
policy::TimePoint from_ms(long long v) { return policy::TimePoint(std::chrono::milliseconds(v)); }
policy::TimePoint now() { return std::chrono::system_clock::now(); }

}  // namespace

policy::Sample to_sample(const probes::ProbeResult& r) {
  policy::Sample s;
  s.at = r.started_at;
  s.outcome = r.outcome == probes::Outcome::ok     ? policy::SampleOutcome::ok
              : r.outcome == probes::Outcome::fail ? policy::SampleOutcome::fail
                                                   : policy::SampleOutcome::error;
  s.latency_ms = r.timing.total.count();
  for (const auto& f : r.failures) s.failed_conditions |= policy::condition_bit(f.condition);
  return s;
}

policy::ServiceSpec to_policy(const config::Service& svc,
                              std::shared_ptr<const std::map<policy::Severity, policy::Authority>> authority) {
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

json to_json(const policy::Evidence& e) {
  json j{{"measure", e.measure},          {"value", e.value},     {"threshold", e.threshold},
         {"window_ms", e.window.count()}, {"samples", e.samples}, {"errors", e.errors},
         {"impact", {{"probes_failing", e.probes_failing}, {"probes_watched", e.probes_watched}}}};
  if (!e.probe.empty()) j["probe"] = e.probe;
  if (!e.detail.empty()) j["detail"] = e.detail;
  return j;
}

json to_json(const policy::Decision& d) {
  json j{{"service", d.service},
         {"trigger", d.trigger},
         {"severity", policy::to_string(d.severity)},
         {"kind", policy::to_string(d.kind)},
         {"reason", d.reason},
         {"evidence", to_json(d.evidence)},
         {"shadow", d.shadow},
         {"at", ms(d.at)}};
  j["release_from"] = d.release_from ? json(*d.release_from) : json();
  j["release_to"] = d.release_to ? json(*d.release_to) : json();
  return j;
}

json Proposal::to_json() const {
  auto votes = [](const std::vector<Vote>& v) {
    json out = json::array();
    for (const auto& x : v) out.push_back({{"approver", x.approver}, {"role", x.role}, {"comment", x.comment}, {"at", ms(x.at)}});
    return out;
  };
  return {{"id", id},
          {"decision", watchdog::to_json(decision)},
          {"created_at", ms(created_at)},
          {"expires_at", ms(expires_at)},
          {"state", state},
          {"quorum", quorum},
          {"approvals", votes(approvals)},
          {"rejections", votes(rejections)}};
}

Pipeline::Pipeline(asio::io_context& ioc, const config::Config& cfg, Metrics& metrics, bool dry_run)
    : ioc_(ioc), cfg_(cfg), metrics_(metrics), dry_run_(dry_run),
      notifier_(ioc, cfg, [this](const std::string& type, const std::string& service, json data) { record(type, service, std::move(data)); }),
      incidents_(cfg.state_dir + "/incidents") {
  svcs_.reserve(cfg.services.size());
  const auto authority = std::make_shared<const std::map<policy::Severity, policy::Authority>>(cfg.authority);
  for (const auto& svc : cfg.services) {
    auto s = std::make_unique<Svc>();
    s->policy = std::make_unique<policy::ServicePolicy>(to_policy(svc, authority));
    s->cfg = &svc;
    if (svc.deployment) {
      s->action = actions::make_action(ioc.get_executor(), svc.name, *svc.deployment);
      if (s->action) s->observe_timer = std::make_unique<asio::steady_timer>(ioc);
      if (!s->action)
        spdlog::warn("service {}: deployment kind {} is not built yet: it is validated but neither observed nor rolled back", svc.name,
                     svc.deployment->kind);
    }
    for (const auto& t : svc.triggers) metrics_.trigger_state(svc.name, t.name, "inconclusive");
    svcs_.push_back(std::move(s));
  }
}

Pipeline::~Pipeline() { stop(); }

// Every coroutine the pipeline leaves running goes through the supervised spawn: an exception is
// logged and counted (lastgood_internal_errors_total{where}); a loop (observing) is restarted.
void Pipeline::spawn(std::function<asio::awaitable<void>()> make, const char* what, bool restart) {
  net::spawn(ioc_.get_executor(), std::move(make), what, restart ? net::Restart::yes : net::Restart::no, alive_);
}

std::optional<size_t> Pipeline::service_index(const std::string& name) const {
  for (size_t i = 0; i < svcs_.size(); ++i)
    if (svcs_[i]->cfg->name == name) return i;
  return std::nullopt;
}

bool Pipeline::record(const std::string& type, const std::string& service, json data) {
  if (!ledger_) return false;
  // Transitions are evidence and come in volume (10 000 services start at once): they are synced
  // with the next durable entry instead of one fdatasync each. Everything acted on is durable.
  const auto sync = type == "transition" ? Ledger::Sync::deferred : Ledger::Sync::now;
  auto r = ledger_->try_append(type, service, std::move(data), ms(now()), sync);
  if (!r) {
    ++dropped_;
    if (writable_) {
      writable_ = false;
      ledger_error_ = r.error;
      unwritable_since_ = last_retry_ = now();
      metrics_.ledger_writable(false);
      metrics_.internal_error("ledger");
      for (auto& s : svcs_) s->policy->set_can_record(false);
      spdlog::error("cannot record: {}; lastgood holds every action and verification until the ledger takes entries again "
                    "(probing goes on; /readyz answers 503; retried every second)",
                    r.error);
    }
    return false;
  }
  const auto& e = *r.entry;
  metrics_.ledger_entries(1);
  if (auto id = incidents_.observe(e.type, e.service, e.ts_ms, e.data))
    if (auto err = incidents_.write(*id); !err.empty()) spdlog::error("incident {}: {}", *id, err);
  return true;
}

// While the ledger cannot be written, one entry a second is tried: the first that goes in says
// how long recording stopped and how many entries were lost, and lastgood acts again.
void Pipeline::retry_ledger(policy::TimePoint t) {
  if (!ledger_ || t - last_retry_ < std::chrono::seconds(1)) return;
  last_retry_ = t;
  // A full disk is found before an append fails: an append may still fit in the slack of the
  // file's last block, and the next one (the action's start, or its end) not. Below the reserve,
  // lastgood holds as if the ledger had failed.
  std::string low;
  struct statvfs st {};
  if (::statvfs(cfg_.state_dir.c_str(), &st) == 0) {
    const auto free_bytes = static_cast<unsigned long long>(st.f_bavail) * st.f_frsize;
    if (free_bytes < kDiskReserve)
      low = "state_dir " + cfg_.state_dir + " has " + std::to_string(free_bytes) + " bytes free (lastgood keeps " +
            std::to_string(kDiskReserve / 1024) + " KiB for what it must record)";
  }
  if (!low.empty()) {
    if (writable_) {
      writable_ = false;
      ledger_error_ = low;
      unwritable_since_ = t;
      metrics_.ledger_writable(false);
      for (auto& s : svcs_) s->policy->set_can_record(false);
      spdlog::error("cannot record: {}; lastgood holds every action and verification until there is room again "
                    "(probing goes on; /readyz answers 503; checked every second)",
                    low);
    } else {
      ledger_error_ = low;
    }
    return;
  }
  if (writable_) return;
  const auto lost = dropped_;
  auto r = ledger_->try_append("ledger_writable", "",
                               {{"unwritable_since", ms(unwritable_since_)}, {"entries_lost", lost}, {"error", ledger_error_}}, ms(t));
  if (!r) {
    ledger_error_ = r.error;
    return;
  }
  metrics_.ledger_entries(1);
  writable_ = true;
  dropped_ = 0;
  metrics_.ledger_writable(true);
  for (auto& s : svcs_) {
    s->policy->set_can_record(true);
    if (s->verifying) s->verifying->deadline += t - unwritable_since_;  // the outage does not count against recovery
  }
  spdlog::warn("ledger writable again after {:.1f}s ({} entries could not be recorded meanwhile); lastgood acts again",
               std::chrono::duration<double>(t - unwritable_since_).count(), lost);
  ledger_error_.clear();
  resume_after_outage();
}

// A breach that began (or went on) while nothing could be recorded was held: decide it again
// now, on the evidence of now.
void Pipeline::resume_after_outage() {
  for (size_t si = 0; si < svcs_.size(); ++si) {
    auto& s = *svcs_[si];
    for (const auto& v : s.policy->triggers(now()))
      if (v.state == policy::TriggerState::firing) {
        const std::string trigger = v.name;
        spawn([this, si, trigger] { return decide_after_observing(si, trigger); }, "decide");
      }
  }
}

// ---- start: replay, reconcile, observe ------------------------------------------------------

void Pipeline::replay(std::vector<LedgerEntry> entries, std::vector<std::pair<size_t, json>>& open_actions) {
  std::map<std::string, std::pair<size_t, json>> open;     // action id -> (service, action_started data)
  std::map<std::string, std::pair<size_t, json>> unverified;  // finished ok, not yet verified
  std::set<std::string> started_proposals;                     // proposals whose action_started is in the ledger
  for (auto& e : entries) {
    auto si = service_index(e.service);
    const auto at = from_ms(e.ts_ms);
    if (e.type == "proposal_state") {
      for (auto& p : proposals_)
        if (p.id == e.data.value("id", "")) p.state = e.data.value("state", p.state);
      continue;
    }
    if (e.type == "proposal_vote") {
      for (auto& p : proposals_)
        if (p.id == e.data.value("id", "")) {
          Proposal::Vote v{e.data.value("approver", ""), e.data.value("role", ""), e.data.value("comment", ""), at};
          (e.data.value("approve", true) ? p.approvals : p.rejections).push_back(v);
        }
      continue;
    }
    if (e.type == "proposal_created" || e.type == "proposal_expired") {
      if (e.type == "proposal_created") {
        Proposal p;
        p.id = e.data.value("id", "");
        p.created_at = at;
        p.expires_at = from_ms(e.data.value("expires_at", 0LL));
        p.decision.service = e.service;
        p.decision.trigger = e.data["decision"].value("trigger", "");
        p.decision.reason = e.data["decision"].value("reason", "");
        p.decision.kind = DecisionKind::propose;
        p.quorum = e.data.value("quorum", 1);
        p.decision.severity = e.data["decision"].value("severity", "P1") == "P0"   ? policy::Severity::P0
                              : e.data["decision"].value("severity", "P1") == "P2" ? policy::Severity::P2
                                                                                   : policy::Severity::P1;
        if (e.data["decision"]["release_from"].is_string()) p.decision.release_from = e.data["decision"]["release_from"].get<std::string>();
        if (e.data["decision"]["release_to"].is_string()) p.decision.release_to = e.data["decision"]["release_to"].get<std::string>();
        proposals_.push_back(p);
      } else {
        for (auto& p : proposals_)
          if (p.id == e.data.value("id", "")) p.state = "expired";
      }
      continue;
    }
    if (!si) continue;  // a service no longer in the config
    auto& s = *svcs_[*si];
    if (e.type == "release_observed") {
      const auto dep = e.data.contains("deployed_at") && e.data["deployed_at"].is_number()
                           ? std::optional<policy::TimePoint>(from_ms(e.data["deployed_at"].get<long long>()))
                           : std::nullopt;
      s.policy->on_release(e.data.value("release", ""), dep, at, e.data.value("migration", false));
    } else if (e.type == "release_verified_good") {
      s.policy->replay_verified(e.data.value("release", ""), at);
    } else if (e.type == "decision") {
      // An execute decision counts against cooldown and budget only once its action_started is
      // in the ledger: a crash between the two must not cost a whole cooldown (the breach is
      // decided again on fresh evidence).
      if (!e.data.value("shadow", false) && e.data.value("kind", "hold") != "execute") {
        const std::string k = e.data.value("kind", "hold");
        s.policy->replay_decision(k == "execute" ? DecisionKind::execute : k == "hold" ? DecisionKind::hold : DecisionKind::propose, at);
      }
    } else if (e.type == "action_started") {
      open[e.data.value("action_id", "")] = {*si, e.data};
      s.policy->note_rollback(at);  // cooldown and budget count from action_started
      const std::string via = e.data.value("via", "");
      if (via.rfind("proposal ", 0) == 0) started_proposals.insert(via.substr(9));
    } else if (e.type == "action_finished") {
      const std::string id = e.data.value("action_id", "");
      if (e.data.value("ok", false) && open.count(id)) unverified[id] = open[id];
      open.erase(id);
    } else if (e.type == "action_reconciled") {
      open.erase(e.data.value("action_id", ""));
      if (e.data.value("switched", false)) unverified[e.data.value("action_id", "")] = {*si, e.data};
    } else if (e.type == "verification") {
      unverified.erase(e.data.value("action_id", ""));
    } else if (e.type == "escalated") {
      s.escalated = true;
      s.escalation = e.data.value("reason", "");
      unverified.erase(e.data.value("action_id", ""));
    } else if (e.type == "cleared") {
      s.escalated = false;
      s.escalation.clear();
    }
  }
  // Approved (or executing) and lastgood stopped before the action started: checked again once the
  // live release is read (still `from`: carried out; else stale), never failed for the next approver.
  for (auto& p : proposals_)
    if ((p.state == "approved" || p.state == "executing") && !started_proposals.count(p.id)) recheck_.push_back(p.id);
  for (auto& [id, v] : open) open_actions.push_back(v);
  // A rollback that finished but was not verified when lastgood stopped: verify it afresh.
  for (auto& [id, v] : unverified) {
    auto& s = *svcs_[v.first];
    s.verifying = std::make_unique<Verification>(Verification{id, v.second.value("to", ""), "", now() + s.cfg->rollback.verify.within, s.cfg->rollback.verify.healthy_samples, 0});
  }
  while (proposals_.size() > 200) proposals_.pop_front();
}

void Pipeline::start(Ledger& ledger) {
  ledger_ = &ledger;
  auto entries = ledger.take_loaded();
  metrics_.ledger_entries(entries.size());
  std::vector<std::pair<size_t, json>> open_actions;
  const size_t n = entries.size();
  notifier_.replay(entries);
  for (const auto& e : entries) incidents_.observe(e.type, e.service, e.ts_ms, e.data);
  if (int w = incidents_.write_changed()) spdlog::info("incidents: wrote {} records that were missing or behind the ledger", w);
  replay(std::move(entries), open_actions);
  if (n) spdlog::info("ledger: replayed {} entries from {}", n, ledger.path());
  for (size_t si = 0; si < svcs_.size(); ++si) {
    publish_releases(si);
    if (svcs_[si]->escalated) spdlog::warn("service {} is escalated ({}): no automatic action until cleared", svcs_[si]->cfg->name, svcs_[si]->escalation);
  }
  publish_proposals();
  for (auto& [si, data] : open_actions) spawn([this, si = si, data = data] { return reconcile(si, data); }, "reconcile");
  for (const auto& id : recheck_)
    for (const auto& p : proposals_)
      if (p.id == id)
        if (auto si = service_index(p.decision.service)) spawn([this, si = *si, id] { return recheck_approved(si, id); }, "reconcile");
  recheck_.clear();
  for (size_t si = 0; si < svcs_.size(); ++si)
    if (svcs_[si]->action) spawn([this, si] { return observe_loop(si); }, "observe", /*restart=*/true);
}

void Pipeline::stop() {
  stopped_ = true;
  notifier_.stop();
  for (auto& s : svcs_)
    if (s->observe_timer) s->observe_timer->cancel();
}

asio::awaitable<void> Pipeline::reconcile(size_t si, json started) {
  auto& s = *svcs_[si];
  const std::string id = started.value("action_id", "");
  const std::string target = started.value("to", "");
  spdlog::warn("service {}: action {} (-> {}) was started but never finished: observing instead of running it again", s.cfg->name, id, target);
  co_await observe_once(si);
  const auto* live = s.policy->deployment().live();
  const std::string found = live ? live->id : "";
  const bool switched = !found.empty() && found == target;
  record("action_reconciled", s.cfg->name,
         {{"action_id", id}, {"to", target}, {"live", found}, {"switched", switched}, {"error", s.observe_error}});
  if (switched) {
    spdlog::info("service {}: the interrupted rollback had switched to {}; verifying recovery", s.cfg->name, target);
    s.verifying = std::make_unique<Verification>(Verification{id, target, "", now() + s.cfg->rollback.verify.within, s.cfg->rollback.verify.healthy_samples, 0});
  } else {
    escalate(si, "rollback " + id + " to " + target + " was interrupted and the live release is " + (found.empty() ? "unknown" : found), id);
  }
}

asio::awaitable<void> Pipeline::observe_once(size_t si) {
  auto& s = *svcs_[si];
  if (!s.action) co_return;
  actions::Observation o = co_await s.action->observe();
  if (stopped_) co_return;
  if (!o.error.empty() || !o.live) {
    const std::string err = o.error.empty() ? "no live release found" : o.error;
    if (err != s.observe_error) spdlog::warn("service {}: cannot observe the deployment: {}", s.cfg->name, err);
    s.observe_error = err;
    co_return;
  }
  if (!s.observe_error.empty()) spdlog::info("service {}: deployment readable again", s.cfg->name);
  s.observe_error.clear();
  const auto* before = s.policy->deployment().live();
  if (before && before->id == o.live->id && before->migration == o.live->migration) co_return;
  if (!before || before->id != o.live->id) mark_stale(si, o.live->id);
  const std::string was = before ? before->id : "";
  const auto t = now();
  const policy::Events ev = s.policy->on_release(o.live->id, o.live->deployed_at, t, o.live->migration);
  json d{{"release", o.live->id}, {"previous", was.empty() ? json() : json(was)}, {"migration", o.live->migration}};
  if (o.live->deployed_at) d["deployed_at"] = ms(*o.live->deployed_at);
  record("release_observed", s.cfg->name, d);
  handle(si, ev);  // triggers that were pending or firing on the previous release end
  spdlog::info("service {}: live release {} -> {}{}", s.cfg->name, was.empty() ? "(unknown)" : was, o.live->id,
               o.live->migration ? " (carries a data migration)" : "");
  publish_releases(si);
}

asio::awaitable<void> Pipeline::observe_loop(size_t si) {
  auto& s = *svcs_[si];
  while (!stopped_) {
    co_await observe_once(si);
    if (stopped_) break;
    s.observe_timer->expires_after(s.cfg->deployment->observe_interval);
    co_await s.observe_timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// ---- results, transitions, decisions --------------------------------------------------------

void Pipeline::on_result(size_t si, size_t probe, const probes::ProbeResult& r) {
  auto& s = *svcs_[si];
  handle(si, s.policy->on_sample(probe, to_sample(r), /*defer_decisions=*/true));
  if (s.verifying && writable_ && !s.cfg->probes[probe].reference && r.outcome != probes::Outcome::error) {
    auto& v = *s.verifying;
    v.seen = r.outcome == probes::Outcome::ok ? v.seen + 1 : 0;
    if (v.seen >= v.needed) {
      // Not recorded, not verified: the next healthy result after the ledger comes back says it.
      if (!record("verification", s.cfg->name,
                  {{"action_id", v.action_id}, {"release", v.release}, {"outcome", "verified"}, {"healthy_samples", v.seen}}))
        return;
      spdlog::info("service {}: recovery verified on {} ({} healthy results in a row)", s.cfg->name, v.release, v.seen);
      set_proposal_state(v.proposal_id, "verified");
      notifier_.notify("verified", s.cfg->name,
                       {{"release_to", v.release}, {"reason", "recovered: " + std::to_string(v.seen) + " healthy results in a row"}, {"incident_id", v.action_id}});
      s.verifying.reset();
    }
  }
}

void Pipeline::flush_unauthenticated(long long minute) {
  if (minute == unauth_.minute) return;
  if (unauth_.dropped && writable_)
    record("unauthenticated_dropped", "",
           {{"minute_start", unauth_.minute * 60'000}, {"dropped", unauth_.dropped}, {"clients", unauth_.per_client.size()},
            {"why", "more than " + std::to_string(kUnauthPerMinute) + " a minute, or " + std::to_string(kUnauthPerClient) +
                        " from one client, without a valid token: counted, not recorded one by one"}});
  unauth_ = UnauthBudget{minute, 0, {}, 0};
}

bool Pipeline::record_unauthenticated(const std::string& type, const std::string& service, const std::string& client, json data) {
  flush_unauthenticated(ms(now()) / 60'000);
  auto it = unauth_.per_client.find(client);
  if (unauth_.total >= kUnauthPerMinute || (it != unauth_.per_client.end() && it->second >= kUnauthPerClient) ||
      (it == unauth_.per_client.end() && unauth_.per_client.size() >= 4096)) {
    ++unauth_.dropped;
    return false;
  }
  ++unauth_.per_client[client];
  ++unauth_.total;
  data["source"] = client;
  return record(type, service, std::move(data));
}

void Pipeline::tick(policy::TimePoint t) { tick(t, 0, svcs_.size()); }

void Pipeline::tick(policy::TimePoint t, size_t first, size_t last) {
  retry_ledger(t);
  if (first == 0 && unauth_.dropped) flush_unauthenticated(ms(t) / 60'000);  // the summary of a busy minute
  if (first == 0 && writable_ && !recheck_.empty()) {  // once a second: approved proposals not yet started
    std::vector<std::string> ids;
    ids.swap(recheck_);
    for (const auto& id : ids)
      for (const auto& p : proposals_)
        if (p.id == id)
          if (auto si = service_index(p.decision.service)) spawn([this, si = *si, id] { return recheck_approved(si, id); }, "reconcile");
  }
  for (size_t si = first; si < std::min(last, svcs_.size()); ++si) {
    auto& s = *svcs_[si];
    handle(si, s.policy->tick(t, true));
    if (s.verifying && writable_ && t >= s.verifying->deadline) {
      const Verification v = std::move(*s.verifying);
      s.verifying.reset();
      record("verification", s.cfg->name, {{"action_id", v.action_id}, {"release", v.release}, {"outcome", "not_recovered"}, {"healthy_samples", v.seen}});
      set_proposal_state(v.proposal_id, "escalated");
      escalate(si, "no recovery within " + config::format_duration(s.cfg->rollback.verify.within) + " after rolling back to " + v.release,
               v.action_id);
    }
  }
  bool changed = false;
  for (auto& p : proposals_) {
    if (p.state == "pending" && t >= p.expires_at && writable_) {
      p.state = "expired";
      changed = true;
      record("proposal_expired", p.decision.service, {{"id", p.id}});
      notifier_.notify("expired", p.decision.service, {{"proposal_id", p.id}, {"trigger", p.decision.trigger}, {"reason", "no approval in time"}});
      spdlog::warn("proposal {} for {} expired without approval: nothing was done", p.id, p.decision.service);
    }
  }
  if (changed) publish_proposals();
}

void Pipeline::handle(size_t si, const policy::Events& ev) {
  if (ev.empty()) return;
  auto& s = *svcs_[si];
  const auto& name = s.cfg->name;
  for (const auto& t : ev.transitions) {
    metrics_.trigger_state(name, t.trigger, policy::to_string(t.to));
    if (t.to == policy::TriggerState::firing) metrics_.breach(name, t.trigger, policy::to_string(t.severity));
    record("transition", name,
           {{"trigger", t.trigger}, {"severity", policy::to_string(t.severity)}, {"from", policy::to_string(t.from)}, {"to", policy::to_string(t.to)},
            {"evidence", to_json(t.evidence)}});
    spdlog::log(t.to == policy::TriggerState::firing ? spdlog::level::warn : spdlog::level::info, "trigger {}/{} ({}): {} -> {}: {}", name,
                t.trigger, policy::to_string(t.severity), policy::to_string(t.from), policy::to_string(t.to), t.evidence.describe());
    if (t.to == policy::TriggerState::firing) {
      notifier_.notify("breach", name, {{"trigger", t.trigger}, {"severity", policy::to_string(t.severity)}, {"evidence", to_json(t.evidence)}});
      spawn([this, si, trigger = t.trigger] { return decide_after_observing(si, trigger); }, "decide");
    }
  }
  for (const auto& id : ev.verified_good) {
    record("release_verified_good", name, {{"release", id}});
    spdlog::info("service {}: release {} verified good", name, id);
  }
  if (!ev.verified_good.empty()) publish_releases(si);
}

asio::awaitable<void> Pipeline::decide_after_observing(size_t si, std::string trigger) {
  auto& s = *svcs_[si];
  // A deploy seconds before the breach must be seen: read the live release now.
  co_await observe_once(si);
  if (stopped_) co_return;
  if (!writable_) {
    // Nothing is decided while nothing can be recorded: the policy's budget is left untouched, and
    // the breach is decided again when the ledger takes entries (resume_after_outage).
    policy::Decision d;
    d.service = s.cfg->name;
    d.trigger = trigger;
    d.kind = DecisionKind::hold;
    d.at = now();
    if (const auto* l = s.policy->deployment().live()) d.release_from = l->id;
    d.reason = "cannot record: " + ledger_error_ + " (decided again once the ledger takes entries)";
    metrics_.decision(s.cfg->name, policy::to_string(d.kind));
    spdlog::error("decision {}/{}: hold: {}", s.cfg->name, trigger, d.reason);
    recent_.push_back(d);
    if (recent_.size() > 100) recent_.pop_front();
    co_return;
  }
  if (auto ti = s.policy->trigger_index(trigger)) {
    if (s.policy->trigger_firing(*ti)) handle_decision(si, s.policy->decide(*ti, now()));
  } else if (auto d = s.policy->decide_external(trigger, now())) {
    handle_decision(si, *d);
  }
}

namespace {

std::string str(const json& o, const char* key, const std::string& fallback = "") {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : fallback;
}

}  // namespace

json Pipeline::on_alertmanager(const json& payload, std::string* problem) {
  json counts = json::object();
  auto count = [&](const std::string& outcome) {
    counts[outcome] = counts.value(outcome, 0) + 1;
    metrics_.alert(outcome);
  };
  if (!cfg_.alertmanager) {
    count("bad_payload");
    return counts;
  }
  if (auto why = alert_payload_problem(payload); !why.empty()) {
    count("bad_payload");
    if (problem) *problem = why;
    return counts;
  }
  const auto& am = *cfg_.alertmanager;
  for (const auto& a : payload["alerts"]) {
    const auto& labels = a["labels"];
    const std::string status = str(a, "status", str(payload, "status"));
    const std::string fingerprint = str(a, "fingerprint", json_text(labels));
    // A redelivery of the same notice is the same (fingerprint, status, startsAt); an alert that
    // fires again after resolving has a new startsAt, and its keys are forgotten once it resolves.
    const std::string key = fingerprint + "|" + status + "|" + str(a, "startsAt");
    if (alert_seen_.count(key)) {
      count("duplicate");
      continue;
    }
    auto si = service_index(str(labels, am.service_label.c_str()));
    if (!si) {
      count("unknown_service");
      continue;
    }
    auto sev = am.severity_map.find(str(labels, am.severity_label.c_str()));
    if (sev == am.severity_map.end()) {
      count("unknown_severity");
      continue;
    }
    if (status == "resolved") {  // forget what was seen of this alert: a later firing is new
      for (auto it = alert_order_.begin(); it != alert_order_.end();)
        if (it->rfind(fingerprint + "|", 0) == 0) {
          alert_seen_.erase(*it);
          it = alert_order_.erase(it);
        } else {
          ++it;
        }
    }
    alert_seen_.insert(key);
    alert_order_.push_back(key);
    while (alert_order_.size() > 10'000) {
      alert_seen_.erase(alert_order_.front());
      alert_order_.pop_front();
    }
    policy::Evidence ev;
    ev.measure = "alertmanager";
    ev.value = status == "firing" ? 1 : 0;
    ev.threshold = 1;
    const std::string alertname = str(labels, "alertname", "alert");
    ev.detail = alertname;
    if (a.contains("annotations")) {
      if (const std::string summary = str(a["annotations"], "summary"); !summary.empty()) ev.detail += ": " + summary.substr(0, 500);
    }
    const std::string name = "alertmanager:" + alertname;
    record("alert_received", svcs_[*si]->cfg->name,
           {{"trigger", name}, {"status", status}, {"severity", policy::to_string(sev->second)}, {"fingerprint", fingerprint.substr(0, 128)},
            {"starts_at", str(a, "startsAt").substr(0, 64)}, {"labels", labels}});
    handle(*si, svcs_[*si]->policy->external(name, sev->second, status == "firing", ev, now()));
    count("accepted");
  }
  return counts;
}

void Pipeline::handle_decision(size_t si, policy::Decision d) {
  auto& s = *svcs_[si];
  const auto& name = s.cfg->name;
  if (!d.shadow && s.escalated && (d.kind == DecisionKind::execute || d.kind == DecisionKind::propose)) {
    d.kind = DecisionKind::hold;
    d.reason = "service is escalated (" + s.escalation + "): no automatic action until a person clears it (POST /api/v1/services/" + name + "/clear)";
    d.release_to.reset();
  }
  if (!d.shadow && s.acting && d.kind == DecisionKind::execute) {
    d.kind = DecisionKind::hold;
    d.reason = "a rollback of this service is already running";
    d.release_to.reset();
  }
  if (!d.shadow && (d.kind == DecisionKind::propose || d.kind == DecisionKind::execute)) {
    // One proposal per breach: a breach decided again (after an outage of the ledger, or a
    // restart) while its proposal still waits or runs is not proposed or executed a second time.
    for (const auto& p : proposals_)
      if (p.decision.service == name && p.decision.release_from == d.release_from &&
          (p.state == "pending" || p.state == "approved" || p.state == "executing")) {
        d.kind = DecisionKind::hold;
        d.reason = "proposal " + p.id + " for this breach is already " + p.state;
        d.release_to.reset();
        break;
      }
  }
  if (!record("decision", name, to_json(d)) && !d.shadow && d.kind != DecisionKind::hold && d.kind != DecisionKind::alert) {
    // What cannot be recorded is not done: a restart would not know of it.
    d.kind = DecisionKind::hold;
    d.reason = "cannot record: " + ledger_error_ + " (decided again once the ledger takes entries)";
    d.release_to.reset();
  }
  metrics_.decision(name, policy::to_string(d.kind));
  const char* tag = d.shadow ? " [shadow: detected, not enforced]" : (dry_run_ && d.kind == DecisionKind::execute ? " [dry run]" : "");
  spdlog::warn("decision {}/{}: {}: {}{} | evidence: {}", name, d.trigger, policy::to_string(d.kind), d.reason, tag, d.evidence.describe());
  recent_.push_back(d);
  if (recent_.size() > 100) recent_.pop_front();
  if (d.shadow) return;
  if (d.kind == DecisionKind::execute) {
    spawn([this, si, d] { return run_action(si, d, "auto"); }, "rollback");
  } else if (d.kind == DecisionKind::propose) {
    Proposal p;
    p.id = "p" + std::to_string(ms(d.at)) + "-" + std::to_string(next_id_++);
    p.decision = d;
    p.created_at = d.at;
    p.expires_at = d.at + s.cfg->rollback.approval_timeout;
    if (auto a = cfg_.authority.find(d.severity); a != cfg_.authority.end()) p.quorum = a->second.quorum;
    if (!record("proposal_created", name, {{"id", p.id}, {"decision", to_json(d)}, {"expires_at", ms(p.expires_at)}, {"quorum", p.quorum}}))
      return;  // not recorded, not proposed: decided again when the ledger takes entries
    spdlog::warn("proposal {}: roll back {} {} -> {} awaits approval until {}s from now", p.id, name, d.release_from.value_or("?"),
                 d.release_to.value_or("?"), s.cfg->rollback.approval_timeout.count() / 1000);
    json details = to_json(d);
    details["proposal_id"] = p.id;
    details["decision"] = "propose";
    proposals_.push_back(std::move(p));
    while (proposals_.size() > 200 && proposals_.front().state != "pending") proposals_.pop_front();
    publish_proposals();
    notifier_.notify("proposed", name, details);
  }
}

// ---- actions, verification, escalation -------------------------------------------------------

void Pipeline::set_proposal_state(const std::string& id, const std::string& state) {
  if (id.empty()) return;
  for (auto& p : proposals_)
    if (p.id == id) {
      p.state = state;
      record("proposal_state", p.decision.service, {{"id", id}, {"state", state}});
    }
  publish_proposals();
}

asio::awaitable<void> Pipeline::run_action(size_t si, policy::Decision d, std::string via, std::string proposal_id) {
  auto& s = *svcs_[si];
  const auto& name = s.cfg->name;
  if (!s.action || !d.release_to || !d.release_from) co_return;
  actions::Context ctx{name, d.trigger, d.reason};
  {
    std::vector<const policy::Release*> good;
    for (const auto& r : s.policy->deployment().history())
      if (r.last_good_at && r.id != *d.release_from && r.id != *d.release_to) good.push_back(&r);
    std::sort(good.begin(), good.end(), [](const auto* a, const auto* b) { return *a->last_good_at > *b->last_good_at; });
    for (const auto* r : good) ctx.fallbacks.push_back(r->id);
  }
  const actions::Plan plan = s.action->plan(*d.release_from, *d.release_to, ctx);
  json steps = plan.steps;
  if (dry_run_) {
    record("action_planned", name, {{"trigger", d.trigger}, {"from", plan.from}, {"to", plan.to}, {"steps", steps}, {"dry_run", true}});
    spdlog::warn("dry run: would roll back {} {} -> {}: {}", name, plan.from, plan.to, json_text(steps));
    co_return;
  }
  if (s.acting) co_return;  // one rollback of a service at a time
  net::FlagGuard acting(s.acting);  // cleared however this coroutine ends (a throw included)
  const std::string id = "a" + std::to_string(ms(now())) + "-" + std::to_string(next_id_++);
  // The live release must still be `from`: a person may have deployed since the decision.
  if (const auto* live = s.policy->deployment().live(); !live || live->id != plan.from) {
    const std::string found = live ? live->id : "unknown";
    record("action_refused", name, {{"action_id", id}, {"from", plan.from}, {"to", plan.to}, {"live", found}, {"via", via},
                                    {"why", "the live release is no longer " + plan.from}});
    spdlog::warn("rollback of {} {} -> {} refused: the live release is now {}", name, plan.from, plan.to, found);
    if (!proposal_id.empty()) set_proposal_state(proposal_id, "stale");
    co_return;
  }
  // Durable before anything changes: a crash from here on is reconciled, never re-run. Not
  // recorded, not done.
  if (!record("action_started", name,
              {{"action_id", id}, {"kind", s.action->kind()}, {"trigger", d.trigger}, {"from", plan.from}, {"to", plan.to}, {"steps", steps}, {"via", via}})) {
    spdlog::error("rollback of {} {} -> {} not started: it cannot be recorded ({})", name, plan.from, plan.to, ledger_error_);
    if (!proposal_id.empty()) recheck_.push_back(proposal_id);
    co_return;
  }
  s.policy->note_rollback(now());  // cooldown and budget count from action_started
  spdlog::warn("rollback {}: {} {} -> {} ({})", id, name, plan.from, plan.to, s.action->kind());
  const auto t0 = std::chrono::steady_clock::now();
  actions::Outcome out = co_await s.action->execute(plan);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  test_crash_point("action_executed");  // crash-safety tests: the switch happened, action_finished did not
  json finished{{"action_id", id}, {"ok", out.ok}, {"output", out.output}, {"error", out.error}, {"seconds", secs}};
  if (out.live_changed) finished["refused_live"] = *out.live_changed;
  record("action_finished", name, finished);
  if (out.live_changed) {
    // The kind read the live release just before its switch and it was no longer `from` (a
    // person deployed since): nothing changed. Not a failure, nothing to escalate: the new live
    // release is watched and judged on its own.
    metrics_.rollback(name, s.action->kind(), "refused", secs);
    spdlog::warn("rollback {} of {} {} -> {} refused by {}: the live release is now {}; nothing was changed", id, name, plan.from, plan.to,
                 s.action->kind(), *out.live_changed);
    if (!proposal_id.empty()) set_proposal_state(proposal_id, "stale");
    notifier_.notify("stale", name,
                     {{"proposal_id", proposal_id}, {"trigger", d.trigger}, {"release_from", plan.from}, {"live", *out.live_changed},
                      {"incident_id", id}, {"reason", "the live release changed to " + *out.live_changed + " since the decision; nothing was changed"}});
    co_await observe_once(si);
    co_return;
  }
  metrics_.rollback(name, s.action->kind(), out.ok ? "ok" : "failed", secs);
  set_proposal_state(proposal_id, out.ok ? "executed" : "failed");
  notifier_.notify(out.ok ? "executed" : "failed", name,
                   {{"trigger", d.trigger}, {"severity", policy::to_string(d.severity)}, {"release_from", plan.from}, {"release_to", plan.to},
                    {"reason", d.reason}, {"error", out.error}, {"proposal_id", proposal_id}, {"incident_id", id}});
  if (!out.ok) {
    spdlog::error("rollback {} of {} failed: {}", id, name, out.error);
    escalate(si, "rollback to " + plan.to + " failed: " + out.error, id);
    co_return;
  }
  spdlog::warn("rollback {}: {} is now on {} ({:.1f} ms); verifying recovery", id, name, plan.to, secs * 1000);
  s.verifying = std::make_unique<Verification>(Verification{id, plan.to, proposal_id, now() + s.cfg->rollback.verify.within, s.cfg->rollback.verify.healthy_samples, 0});
  co_await observe_once(si);
}

// Pending proposals of the service whose `from` is no longer live would undo a newer release:
// they become stale (ledger, page, notice) and approvals answer 409.
void Pipeline::mark_stale(size_t si, const std::string& live) {
  const auto& name = svcs_[si]->cfg->name;
  for (auto& p : proposals_) {
    if (p.decision.service != name || p.state != "pending" || !p.decision.release_from || *p.decision.release_from == live) continue;
    set_proposal_state(p.id, "stale");
    spdlog::warn("proposal {} is stale: it would roll {} back from {}, but the live release is now {}", p.id, name, *p.decision.release_from, live);
    notifier_.notify("stale", name,
                     {{"proposal_id", p.id}, {"trigger", p.decision.trigger}, {"release_from", *p.decision.release_from}, {"live", live},
                      {"reason", "the live release changed to " + live + " since the proposal; it will not be carried out"}});
  }
}

// After a restart: a proposal approved (or executing) whose action never started. The live
// release is read again; still `from`: carried out now; else stale.
asio::awaitable<void> Pipeline::recheck_approved(size_t si, std::string id) {
  co_await observe_once(si);
  if (stopped_) co_return;
  Proposal* p = nullptr;
  for (auto& x : proposals_)
    if (x.id == id) p = &x;
  if (!p) co_return;
  auto& s = *svcs_[si];
  const auto* live = s.policy->deployment().live();
  if (!live || !p->decision.release_from) {
    spdlog::warn("proposal {}: approved before lastgood stopped; the live release cannot be read now ({}): retried", id, s.observe_error);
    recheck_.push_back(id);
    co_return;
  }
  if (live->id != *p->decision.release_from) {
    set_proposal_state(id, "stale");
    spdlog::warn("proposal {}: approved before lastgood stopped, but the live release is now {}: stale, nothing done", id, live->id);
    co_return;
  }
  spdlog::warn("proposal {}: approved before lastgood stopped and never started; {} is still on {}: carrying it out", id, s.cfg->name, live->id);
  if (p->state != "executing") set_proposal_state(id, "executing");
  co_await run_action(si, p->decision, "proposal " + id, id);
}

void Pipeline::escalate(size_t si, const std::string& why, const std::string& action_id) {
  auto& s = *svcs_[si];
  s.escalated = true;
  s.escalation = why;
  metrics_.escalation(s.cfg->name);
  json d{{"reason", why}};
  if (!action_id.empty()) d["action_id"] = action_id;
  record("escalated", s.cfg->name, d);
  notifier_.notify("escalated", s.cfg->name, {{"reason", why}, {"incident_id", action_id}});
  spdlog::error("service {} ESCALATED: {}; no automatic action until a person clears it (POST /api/v1/services/{}/clear)", s.cfg->name, why,
                s.cfg->name);
}

VoteResult Pipeline::vote(const std::string& id, const config::Approver* who, bool approve, const std::string& comment,
                          const std::string& source) {
  const std::string verb = approve ? "approve" : "reject";
  auto attempt = [&](const std::string& service, const std::string& outcome, const std::string& role = "") {
    if (!who) {  // without a valid token: bounded, and never the request's body
      record_unauthenticated("approval_attempt", service, source, {{"proposal", id.substr(0, 64)}, {"action", verb}, {"approver", json()}, {"outcome", outcome}});
      return;
    }
    record("approval_attempt", service,
           {{"proposal", id.substr(0, 64)}, {"action", verb}, {"approver", who->name}, {"role", role}, {"source", source}, {"outcome", outcome},
            {"comment", comment.substr(0, 500)}});
  };
  Proposal* p = nullptr;
  for (auto& x : proposals_)
    if (x.id == id) p = &x;
  if (!writable_) return {503, {{"error", "lastgood cannot record now (" + ledger_error_ + "): no vote is taken; try again later"}}};
  if (!who) {
    attempt(p ? p->decision.service : "", "unauthorized");
    return {401, {{"error", "a valid approver token is required (Authorization: Bearer TOKEN)"}}};
  }
  if (!p) {
    attempt("", "unknown_proposal");
    return {404, {{"error", "no proposal " + id}}};
  }
  const std::string& service = p->decision.service;
  auto auth = cfg_.authority.find(p->decision.severity);
  std::string role;
  if (auth != cfg_.authority.end())
    for (const auto& r : who->roles)
      if (role.empty() && std::find(auth->second.roles.begin(), auth->second.roles.end(), r) != auth->second.roles.end()) role = r;
  if (role.empty()) {
    attempt(service, "forbidden");
    return {403, {{"error", who->name + " holds no role allowed to decide on " + policy::to_string(p->decision.severity) + " proposals"}}};
  }
  if (p->state == "pending") {
    // The release it would roll back from must still be live (a deploy may have come since).
    if (auto si = service_index(service)) {
      const auto* live = svcs_[*si]->policy->deployment().live();
      if (live && p->decision.release_from && live->id != *p->decision.release_from) mark_stale(*si, live->id);
    }
  }
  if (p->state == "pending" && approve) {
    // An escalated service waits for a person to look and clear it: a proposal made before the
    // escalation is not carried out behind it.
    if (auto si = service_index(service); si && svcs_[*si]->escalated) {
      attempt(service, "escalated", role);
      return {409, {{"error", "service " + service + " is escalated (" + svcs_[*si]->escalation + "): clear it first (POST /api/v1/services/" + service +
                                  "/clear); nothing will be done"}}};
    }
  }
  if (p->state != "pending") {
    attempt(service, "not_pending", role);
    std::string why = "proposal " + id + " is " + p->state;
    if (p->state == "stale") why += ": the live release is no longer " + p->decision.release_from.value_or("?") + "; nothing will be done";
    return {409, {{"error", why}}};
  }
  const Proposal::Vote v{who->name, role, comment.substr(0, 500), now()};
  if (!approve) {
    p->rejections.push_back(v);
    record("proposal_vote", service, {{"id", id}, {"approve", false}, {"approver", v.approver}, {"role", role}, {"comment", v.comment}});
    attempt(service, "rejected", role);
    set_proposal_state(id, "rejected");
    notifier_.notify("rejected", service, {{"proposal_id", id}, {"trigger", p->decision.trigger}, {"reason", "rejected by " + who->name}});
    spdlog::warn("proposal {} rejected by {} ({}): nothing will be done", id, who->name, role);
    return {200, p->to_json()};
  }
  for (const auto& a : p->approvals)
    if (a.approver == who->name) {
      attempt(service, "duplicate", role);
      return {200, p->to_json()};  // the same approver twice counts once
    }
  p->approvals.push_back(v);
  record("proposal_vote", service, {{"id", id}, {"approve", true}, {"approver", v.approver}, {"role", role}, {"comment", v.comment}});
  attempt(service, "counted", role);
  spdlog::warn("proposal {}: approved by {} ({}), {}/{}", id, who->name, role, p->approvals.size(), p->quorum);
  if (static_cast<int>(p->approvals.size()) < p->quorum) return {200, p->to_json()};
  set_proposal_state(id, "approved");
  notifier_.notify("approved", service, {{"proposal_id", id}, {"trigger", p->decision.trigger}, {"reason", "approved by a quorum of " + std::to_string(p->quorum)}});
  auto si = service_index(service);
  if (!si || !svcs_[*si]->action || svcs_[*si]->acting) {
    set_proposal_state(id, "failed");
    return {409, {{"error", "approved, but the service cannot be rolled back now (no action or one already running)"}}};
  }
  set_proposal_state(id, "executing");  // (cooldown and budget count from its action_started, in run_action)
  spawn([this, si = *si, d = p->decision, id] { return run_action(si, d, "proposal " + id, id); }, "rollback");
  return {202, p->to_json()};
}

bool Pipeline::clear(size_t si, const std::string& who, const std::string& source) {
  auto& s = *svcs_[si];
  if (!s.escalated) return false;
  record("cleared", s.cfg->name, {{"by", who}, {"source", source}, {"was", s.escalation}});
  spdlog::info("service {}: escalation cleared by {}", s.cfg->name, who);
  s.escalated = false;
  s.escalation.clear();
  return true;
}

void Pipeline::publish_releases(size_t si) {
  const auto& sp = *svcs_[si]->policy;
  if (const auto* l = sp.deployment().live()) metrics_.release(sp.spec().name, "live", l->id);
  if (const auto* g = sp.deployment().last_good()) metrics_.release(sp.spec().name, "last_good", g->id);
}

void Pipeline::publish_proposals() {
  int n = 0;
  for (const auto& p : proposals_) n += p.state == "pending";
  metrics_.proposals_pending(n);
}

// ---- views -----------------------------------------------------------------------------------

json Pipeline::proposals_json() const {
  json out = json::array();
  for (const auto& p : proposals_) out.push_back(p.to_json());
  return out;
}

json Pipeline::service_json(size_t si, policy::TimePoint t) const {
  const auto& s = *svcs_[si];
  const auto& sp = *s.policy;
  json j;
  auto rel = [](const policy::Release* r) -> json {
    if (!r) return nullptr;
    json x{{"id", r->id}, {"deployed_at", ms(r->deployed_at)}, {"deployed_at_from_source", r->deployed_at_from_source}, {"migration", r->migration}};
    if (r->verified_at) x["verified_good_at"] = ms(*r->verified_at);
    return x;
  };
  j["live_release"] = rel(sp.deployment().live());
  j["last_good_release"] = rel(sp.deployment().last_good());
  j["rollback_target"] = rel(sp.deployment().rollback_target());
  j["watcher_healthy"] = !sp.watcher_unhealthy();
  j["escalated"] = s.escalated;
  if (s.escalated) j["escalation"] = s.escalation;
  if (!s.observe_error.empty()) j["observe_error"] = s.observe_error;
  if (s.verifying) j["verifying"] = {{"action_id", s.verifying->action_id}, {"release", s.verifying->release}, {"healthy_so_far", s.verifying->seen},
                                     {"needed", s.verifying->needed}, {"deadline", ms(s.verifying->deadline)}};
  json ts = json::array();
  for (const auto& v : sp.triggers(t)) {
    ts.push_back({{"name", v.name},
                  {"severity", policy::to_string(v.severity)},
                  {"rule", v.rule},
                  {"state", policy::to_string(v.state)},
                  {"since", ms(v.since)},
                  {"shadow", v.shadow},
                  {"evidence", to_json(v.evidence)}});
  }
  j["triggers"] = ts;
  json props = json::array();
  for (const auto& p : proposals_)
    if (p.decision.service == s.cfg->name && p.state == "pending") props.push_back(p.to_json());
  j["pending_proposals"] = props;
  return j;
}

}  // namespace lastgood::watchdog
